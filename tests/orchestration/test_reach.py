"""Where requests reach: partitions found by probing provenance, or by the key-hash bucket of
the deleted keys, compared with partitions found from the stored data itself."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import build_assets
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import PARTITION_COUNT_KEY, LesterIOManager
from lester_dagster.orchestration.reach import (
    bucket_hint,
    deletions_of,
    key_indexes_for,
    reached_partitions,
    stored_partitions,
)
from lester_dagster.store.requests import Request

from .test_forgetting import materialise_all

CUSTOMERS = 200
BUCKETS = 4
KINDS = ("prepared", "train", "test")


@pytest.fixture(scope="module")
def bucketed(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineAssets, Path]:
    tmp = tmp_path_factory.mktemp("reach")
    write_complaints(tmp / "data", CUSTOMERS, seed=5)
    pipeline = dataclasses.replace(make_pipeline(tmp / "data", CUSTOMERS), partitions=BUCKETS)
    materialise_all(pipeline, tmp / "store")
    return build_assets(pipeline), tmp / "store"


def _request(source: str, keys: list[int], kind: str = "instance") -> Request:
    columns = ("subject",) if kind == "value" else ()
    return Request(
        id=1, pipeline="complaints", source=source, keys=tuple(keys), kind=kind,  # type: ignore[arg-type]
        columns=columns, requested_by=None, reason=None, created_at=datetime.now(UTC),
        status="pending", status_reason=None, run_id=None, applied_at=None, timings={},
        verification=None, fingerprint="",
    )  # fmt: skip


def _holding(io: LesterIOManager, key: dg.AssetKey, column: str, values: list[int]) -> list[str]:
    """The partitions whose stored rows hold one of ``values`` in ``column`` (read from data)."""
    return [
        str(p)
        for p in stored_partitions(io, key)
        if io.load(key, p).data[column].isin(values).any()
    ]


def test_bucket_hints_name_the_bucketed_source(bucketed: tuple[PipelineAssets, Path]) -> None:
    assets, _ = bucketed
    assert bucket_hint(assets, assets.key("source", "customers")) == ("customers", BUCKETS)
    assert bucket_hint(assets, assets.key("source", "mails")) == ("mails", BUCKETS)
    for kind in KINDS:
        assert bucket_hint(assets, assets.key(kind)) == ("customers", BUCKETS)
    assert bucket_hint(assets, assets.key("X_train")) is None


def test_customer_deletions_reach_the_partitions_holding_them(
    bucketed: tuple[PipelineAssets, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assets, store = bucketed
    io = LesterIOManager(base_path=str(store))
    probed: list[object] = []
    real = LesterIOManager.probe
    monkeypatch.setattr(
        LesterIOManager, "probe", lambda self, *a: probed.append(a) or real(self, *a)
    )
    prepared = io.load(assets.key("prepared"), "b00").data
    customers = sorted(set(prepared.customer_id))[:2]
    deletions = deletions_of([_request("customers", customers)], key_indexes_for(
        assets.pipeline, assets, io))  # fmt: skip
    key = assets.key("source", "customers")
    found = reached_partitions(io, assets, key, deletions)
    assert found == _holding(io, key, "customer_id", customers) == ["b00"]
    assert reached_partitions(io, assets, assets.key("source", "mails"), deletions) == []
    for kind in KINDS:
        key = assets.key(kind)
        # the keys' bucket: every partition holding their rows, maybe one holding none of them
        found = reached_partitions(io, assets, key, deletions)
        assert set(_holding(io, key, "customer_id", customers)) <= set(found) == {"b00"}
    assert probed == []  # the buckets of the keys, without reading a partition


def test_mail_deletions_are_found_by_probing(bucketed: tuple[PipelineAssets, Path]) -> None:
    assets, store = bucketed
    io = LesterIOManager(base_path=str(store))
    prepared = io.load(assets.key("prepared"), "b02").data
    mails = sorted(prepared.mail_id)[:1]
    deletions = deletions_of([_request("mails", mails, "value")], key_indexes_for(
        assets.pipeline, assets, io))  # fmt: skip
    for kind in KINDS:
        key = assets.key(kind)
        assert reached_partitions(io, assets, key, deletions) == _holding(io, key, "mail_id", mails)
    key = assets.key("source", "mails")
    assert reached_partitions(io, assets, key, deletions) == _holding(io, key, "mail_id", mails)


def test_a_partition_left_from_another_bucket_count_is_probed(
    bucketed: tuple[PipelineAssets, Path], tmp_path: Path
) -> None:
    assets, store = bucketed
    shutil.copytree(store, tmp_path / "store")
    io = LesterIOManager(base_path=str(tmp_path / "store"))
    key = assets.key("prepared")
    shutil.copytree(io.path_for(key, "b01"), io.path_for(key, "b99"))  # not a bucket of 4
    customers = sorted(set(io.load(key, "b01").data.customer_id))[:1]
    deletions = deletions_of([_request("customers", customers)], key_indexes_for(
        assets.pipeline, assets, io))  # fmt: skip
    assert reached_partitions(io, assets, key, deletions) == ["b01", "b99"]


def test_a_partition_written_under_another_bucket_count_is_probed(
    bucketed: tuple[PipelineAssets, Path], tmp_path: Path
) -> None:
    """Bucket b of 4 holds other records than bucket b of 8: a partition whose manifest records
    another count (or none) is not trusted to be its bucket, it is probed."""
    assets, store = bucketed
    shutil.copytree(store, tmp_path / "store")
    io = LesterIOManager(base_path=str(tmp_path / "store"))
    key = assets.key("prepared")
    assert io.manifest(key, "b02").metadata.get(PARTITION_COUNT_KEY) == BUCKETS
    # b02 rewritten with b01's rows, as if written when the asset had 2 buckets
    io.store(key, io.load(key, "b01"), "b02", metadata={PARTITION_COUNT_KEY: 2})
    customers = sorted(set(io.load(key, "b01").data.customer_id))[:1]
    deletions = deletions_of([_request("customers", customers)], key_indexes_for(
        assets.pipeline, assets, io))  # fmt: skip
    assert reached_partitions(io, assets, key, deletions) == ["b01", "b02"]
    # and one recording no count at all (written before counts were recorded) too
    io.store(key, io.load(key, "b01"), "b03")
    assert reached_partitions(io, assets, key, deletions) == ["b01", "b02", "b03"]


def test_a_deletion_run_keeps_the_bucket_count_of_what_it_commits(
    bucketed: tuple[PipelineAssets, Path], tmp_path: Path
) -> None:
    from lester_dagster.orchestration.forgetting import apply_deletions

    assets, store = bucketed
    shutil.copytree(store, tmp_path / "store")
    io = LesterIOManager(base_path=str(tmp_path / "store"))
    customers = sorted(set(io.load(assets.key("prepared"), "b00").data.customer_id))[:1]
    report = apply_deletions(assets.pipeline, assets, io, [_request("customers", customers)],
                             run_id="t")  # fmt: skip
    committed = [c for c in report.commits if c.partition is not None]
    assert committed
    for c in committed:
        assert io.manifest(c.asset_key, c.partition).metadata[PARTITION_COUNT_KEY] == BUCKETS


def test_stored_partitions_are_the_committed_ones_in_order(
    bucketed: tuple[PipelineAssets, Path], tmp_path: Path
) -> None:
    """A partition counts once its manifest is committed: a directory left by a run that
    died before its first commit, or a stray file, is not a partition."""
    assets, store = bucketed
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    io = LesterIOManager(base_path=str(copy))
    key = assets.key("train")
    expected = [f"b{i:02d}" for i in range(BUCKETS)]
    assert stored_partitions(io, key) == expected
    root = copy / "train"
    (root / "b99").mkdir()  # never committed
    (root / "b98").mkdir()
    (root / "b98" / "v0000000001-00000000").mkdir()
    (root / "notes.txt").write_text("x")
    assert stored_partitions(io, key) == expected
    shutil.copytree(root / "b01", root / "b97")
    assert stored_partitions(io, key) == sorted([*expected, "b97"])
    assert stored_partitions(io, dg.AssetKey("never_materialised")) == []
