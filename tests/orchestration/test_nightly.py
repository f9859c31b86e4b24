"""The nightly run of a partitioned pipeline: declarative automation that waits for every
partition of every dependency (orchestration.nightly), and how build_definitions wires it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import LesterIOManager, build_definitions
from lester_dagster.orchestration.definitions import pipeline_resources
from lester_dagster.orchestration.nightly import nightly_condition
from lester_dagster.orchestration.resources import LesterLedger

CRON = "0 3 * * *"
BEFORE = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
AFTER = dt.datetime(2026, 11, 25, 3, 5, tzinfo=dt.UTC)
PARTS = dg.StaticPartitionsDefinition(["b0", "b1"])


def _graph(condition: dg.AutomationCondition[Any]) -> list[dg.AssetsDefinition]:
    """Rows in two partitions (materialised by hand here) and a model reading all of them."""

    @dg.asset(partitions_def=PARTS)
    def rows() -> int:
        return 1

    @dg.asset(
        automation_condition=condition,
        ins={"rows": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    )
    def model(rows: dict[str, int]) -> int:
        return len(rows)

    return [rows, model]


def _model_requested_after(
    condition: dg.AutomationCondition[Any], partitions: list[str]
) -> list[bool]:
    """Whether the model is requested after each of ``partitions`` of its rows is rebuilt
    after the tick (one evaluation per rebuilt partition)."""
    assets = _graph(condition)
    defs = dg.Definitions(assets=assets)
    out = []
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=BEFORE
        )
        for i, partition in enumerate(partitions):
            dg.materialize(assets, selection=["rows"], partition_key=partition, instance=instance)
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=result.cursor,
                evaluation_time=AFTER + dt.timedelta(minutes=i),
            )  # fmt: skip
            out.append(result.get_num_requested(dg.AssetKey("model")) > 0)
    return out


def test_the_model_waits_for_every_partition_it_reads() -> None:
    assert _model_requested_after(nightly_condition(CRON), ["b0", "b1"]) == [False, True]


def test_dagsters_on_cron_would_refit_after_the_first_partition() -> None:
    """Why nightly_condition exists: on_cron is satisfied by one partition of a dependency."""
    assert _model_requested_after(dg.AutomationCondition.on_cron(CRON), ["b0", "b1"]) == [
        True,
        False,
    ]


def test_nothing_is_requested_before_the_tick_and_once_per_tick() -> None:
    assets = _graph(nightly_condition(CRON))
    defs = dg.Definitions(assets=assets)
    with dg.instance_for_test() as instance:
        for partition in ("b0", "b1"):
            dg.materialize(assets, selection=["rows"], partition_key=partition, instance=instance)
        early = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=BEFORE
        )
        assert early.total_requested == 0
        for partition in ("b0", "b1"):
            dg.materialize(assets, selection=["rows"], partition_key=partition, instance=instance)
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=early.cursor, evaluation_time=AFTER
        )
        again = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor,
            evaluation_time=AFTER + dt.timedelta(minutes=10),
        )  # fmt: skip
        assert first.get_num_requested(dg.AssetKey("model")) == 1
        assert again.total_requested == 0


def _materialise(defs: dg.Definitions, resources: Any, instance: Any, wanted: Any) -> None:
    """Materialise the requested (asset, partition) pairs: one run per partition key."""
    assets = [*(defs.assets or ())]
    by_partition: dict[str | None, list[dg.AssetKey]] = {}
    for key, partitions in wanted.items():
        for partition in partitions:
            by_partition.setdefault(partition, []).append(key)
    for partition, keys in by_partition.items():
        result = dg.materialize(
            assets, selection=keys, partition_key=partition, resources=resources,
            instance=instance,
        )  # fmt: skip
        assert result.success


def test_a_partitioned_pipeline_is_rebuilt_in_dependency_order_after_each_tick(
    tmp_path: Path,
) -> None:
    """Every asset and partition is requested once per tick, each only after every partition
    it reads was rebuilt: the sources first, X, y and the model after every train partition."""
    write_complaints(tmp_path / "data", 120, seed=3)
    base = make_pipeline(tmp_path / "data", 120)
    assert base.schedule == CRON
    pipeline = dataclasses.replace(base, partitions=2)
    io, ledger = (
        LesterIOManager(base_path=str(tmp_path / "store")),
        LesterLedger(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
    )
    defs = build_definitions(pipeline, io_manager=io, ledger=ledger)
    sensor = defs.resolve_sensor_def(f"{pipeline.name}_nightly")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert not list(defs.schedules or [])  # no schedule that would run without a partition key
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    assert keys and all(graph.get(k).automation_condition is not None for k in keys)
    resources = pipeline_resources(io, ledger)
    requested: list[dict[dg.AssetKey, set[str | None]]] = []
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=BEFORE
        )
        assert result.total_requested == 0
        for step in range(6):
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=result.cursor,
                evaluation_time=AFTER + dt.timedelta(minutes=step),
            )  # fmt: skip
            wanted = {k: result.get_requested_partitions(k) for k in keys}
            wanted = {k: p for k, p in wanted.items() if p}
            if not wanted:
                break
            requested.append(wanted)
            _materialise(defs, resources, instance, wanted)
    names = [{k.to_user_string() for k in stage} for stage in requested]
    assert names[0] == {"customers", "mails"}
    every: dict[dg.AssetKey, list[str | None]] = {}
    for stage in requested:
        for key, partitions in stage.items():
            every.setdefault(key, []).extend(partitions)
    for key in keys:  # each asset partition exactly once
        partitions = graph.get(key).partitions_def
        expected = sorted(partitions.get_partition_keys()) if partitions else [None]
        assert sorted(every[key], key=str) == expected, key
    train_stage = next(i for i, n in enumerate(names) if "train" in n)
    model_stage = next(i for i, n in enumerate(names) if "model" in n)
    assert model_stage > train_stage


def test_an_unpartitioned_pipeline_keeps_a_plain_schedule(tmp_path: Path) -> None:
    write_complaints(tmp_path / "data", 60, seed=3)
    base = make_pipeline(tmp_path / "data", 60)
    plain = build_definitions(base)
    assert plain.resolve_schedule_def(f"{base.name}_nightly").job_name == f"{base.name}_job"
    graph = plain.resolve_asset_graph()
    assert all(graph.get(k).automation_condition is None for k in graph.get_all_asset_keys())
