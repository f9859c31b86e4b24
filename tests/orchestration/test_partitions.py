"""Key-hash-bucket partitions: the running example with partitions=4, every partition
materialised, compared with the unpartitioned run of the same data (the ``run`` fixture)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import dagster as dg
import numpy as np
import pytest

from lester_dagster.errors import PlanError
from lester_dagster.frame import Frame
from lester_dagster.frame.provenance import mix64
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import IO_MANAGER_KEY, LesterIOManager, build_definitions
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.pipeline import LesterPipeline
from tests.orchestration.conftest import Materialised

N = 4
BUCKETS = ["b00", "b01", "b02", "b03"]
SALT = 0x6C65_7374_6572_4275  # the documented bucket salt (partitions.BUCKET_SALT)
PARTITIONED = ("customers", "mails", "complaints", "train", "test")
UNPARTITIONED = ("X_train", "y_train", "model", "X_test", "y_test")


def expected_bucket(ids: np.ndarray) -> np.ndarray:
    return (mix64(ids.astype(np.uint64), SALT) % np.uint64(N)).astype(np.int64)


def row_set(frame: FrameArtifact) -> Counter[tuple[int, ...]]:
    """The rows as a multiset of their provenance (one key id per source)."""
    sources = sorted(frame.prov.keys)
    return Counter(zip(*(frame.prov.keys[s].tolist() for s in sources), strict=True))


@dataclasses.dataclass
class Partitioned:
    manager: LesterIOManager
    pipeline: LesterPipeline
    results: list[dg.ExecuteInProcessResult]


@pytest.fixture(scope="module")
def partitioned(pipeline: LesterPipeline, tmp_path_factory: pytest.TempPathFactory) -> Partitioned:
    split = dataclasses.replace(pipeline, partitions=N)
    manager = LesterIOManager(base_path=str(tmp_path_factory.mktemp("partitioned")))
    defs = build_definitions(split, io_manager=manager)
    assets: list[Any] = [*(defs.assets or ()), *(defs.asset_checks or ())]
    instance = dg.DagsterInstance.ephemeral()
    results = []
    # every source partition first: prepared[b] reads all partitions of the other sources
    for selection in (PARTITIONED[:2], PARTITIONED[2:]):
        for bucket in BUCKETS:
            results.append(
                dg.materialize(
                    assets,
                    selection=list(selection),
                    partition_key=bucket,
                    resources={IO_MANAGER_KEY: manager},
                    instance=instance,
                )
            )
    results.append(
        dg.materialize(
            assets,
            selection=list(UNPARTITIONED),
            resources={IO_MANAGER_KEY: manager},
            instance=instance,
        )
    )
    return Partitioned(manager, split, results)


def test_source_partitions_hold_their_buckets(partitioned: Partitioned, run: Materialised) -> None:
    for source in ("customers", "mails"):
        whole = run.manager.load(dg.AssetKey(source))
        ids = whole.prov.keys[source]
        buckets = expected_bucket(ids)
        seen = 0
        for i, bucket in enumerate(BUCKETS):
            part = partitioned.manager.load(dg.AssetKey(source), bucket)
            assert set(part.prov.keys[source].tolist()) == set(ids[buckets == i].tolist())
            assert set(part.key_indexes[source].index.tolist()) == set(ids[buckets == i].tolist())
            seen += len(part)
        assert seen == len(whole)


def test_prepared_partitions_union_is_the_unpartitioned_result(
    partitioned: Partitioned, run: Materialised
) -> None:
    whole = run.manager.load(dg.AssetKey("complaints"))
    parts = [partitioned.manager.load(dg.AssetKey("complaints"), b) for b in BUCKETS]
    assert sum(len(p) for p in parts) == len(whole)
    union: Counter[tuple[int, ...]] = Counter()
    for i, part in enumerate(parts):
        assert (expected_bucket(part.prov.keys["customers"]) == i).all()
        union += row_set(part)
    assert union == row_set(whole)
    both = partitioned.manager.load_partitions(dg.AssetKey("complaints"), BUCKETS)
    assert row_set(both) == row_set(whole)


def test_model_trains_on_all_train_rows(partitioned: Partitioned, run: Materialised) -> None:
    train_rows = sum(len(partitioned.manager.load(dg.AssetKey("train"), b)) for b in BUCKETS)
    assert train_rows == len(run.manager.load(dg.AssetKey("train")))
    model = partitioned.manager.load(dg.AssetKey("model"))
    assert isinstance(model, TrainingState)
    assert model.X.shape[0] == train_rows
    x_test = partitioned.manager.load(dg.AssetKey("X_test"))
    test_rows = sum(len(partitioned.manager.load(dg.AssetKey("test"), b)) for b in BUCKETS)
    assert x_test.X.shape[0] == test_rows


def test_checks_pass_on_partitioned_assets(partitioned: Partitioned) -> None:
    evaluations = [c for r in partitioned.results for c in r.get_asset_check_evaluations()]
    assert evaluations
    failed = [(c.asset_key.to_user_string(), c.check_name, c.description) for c in evaluations]
    assert all(c.passed for c in evaluations), failed


def _pipeline_with(pipeline: LesterPipeline, prepare: Any) -> LesterPipeline:
    return dataclasses.replace(pipeline, prepare=prepare, partitions=N)


def test_unpartitionable_plans_raise_at_definition_time(pipeline: LesterPipeline) -> None:
    def deduplicated(customers: Frame, mails: Frame) -> Frame:
        return mails.join(customers, on="email").drop_duplicates(["email"])

    def customers_optional(customers: Frame, mails: Frame) -> Frame:
        return mails.join(customers, on="email", how="left")

    def grouped(customers: Frame, mails: Frame) -> Frame:
        counts = mails.group_by("email").agg(mails=("mail_id", "count"))
        return counts.join(customers, on="email")

    for prepare, words in (
        (deduplicated, "Distinct"),
        (customers_optional, "left join"),
    ):
        with pytest.raises(PlanError, match=words):
            build_definitions(_pipeline_with(pipeline, prepare))
    with pytest.raises(PlanError, match="group_by"):
        build_definitions(_pipeline_with(pipeline, grouped))
    # unpartitioned, the same plans are fine to define
    build_definitions(dataclasses.replace(pipeline, prepare=customers_optional))


def test_partitions_validated(pipeline: LesterPipeline) -> None:
    for bad in (-1, True, 2.5):
        with pytest.raises(PlanError, match="partitions"):
            dataclasses.replace(pipeline, partitions=bad)
