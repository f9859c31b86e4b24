"""apply_deletions against the oracle: the artifacts after IVM equal a full materialisation of
the pipeline on source files without the deleted records / values."""

from __future__ import annotations

import dataclasses
import gc
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.ivm.frames import row_identity
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import build_assets
from lester_dagster.orchestration.artifacts import FrameArtifact, LabelsArtifact
from lester_dagster.orchestration.definitions import materialize_pipeline
from lester_dagster.orchestration.forgetting import ApplyReport, apply_deletions
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.resources import LesterLedger
from lester_dagster.store.ledger import Ledger
from lester_dagster.store.requests import Request

CUSTOMERS = 240
FRAME_ASSETS = ("customers", "mails", "complaints", "train", "test")


def _copy_sources(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("customers.csv", "mails.csv"):
        shutil.copy(src / name, dst / name)
    return dst


def _load(io: LesterIOManager, key: str) -> Any:
    parts = stored_partitions(io, dg.AssetKey(key))
    values = [io.load(dg.AssetKey(key), p) for p in parts]
    if len(values) == 1:
        return values[0]
    return concat_frames(values)


def _sorted_frame(art: FrameArtifact) -> pd.DataFrame:
    order = np.argsort(row_identity(art.prov), kind="stable")
    return art.data.iloc[order].reset_index(drop=True)


def _dense(m: Any) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def assert_equal_to_oracle(
    ivm: LesterIOManager, oracle: LesterIOManager, frames: tuple[str, ...] | None = None
) -> None:
    for key in frames or FRAME_ASSETS:
        mine, theirs = _load(ivm, key), _load(oracle, key)
        assert len(mine) == len(theirs), key
        pd.testing.assert_frame_equal(
            _sorted_frame(mine), _sorted_frame(theirs), check_dtype=False, obj=key
        )
        for source, index in theirs.key_indexes.items():
            assert set(mine.key_indexes[source].index) == set(index.index), (key, source)
    for x_key, y_key in (("X_train", "y_train"), ("X_test", "y_test")):
        mine_x, theirs_x = _load(ivm, x_key), _load(oracle, x_key)
        assert isinstance(mine_x, FeatureMatrix)
        a, b = np.argsort(row_identity(mine_x.prov)), np.argsort(row_identity(theirs_x.prov))
        assert np.array_equal(row_identity(mine_x.prov)[a], row_identity(theirs_x.prov)[b])
        assert mine_x.shape == theirs_x.shape, x_key
        assert np.abs(_dense(mine_x.X)[a] - _dense(theirs_x.X)[b]).max() < 1e-9, x_key
        mine_y, theirs_y = _load(ivm, y_key), _load(oracle, y_key)
        assert isinstance(mine_y, LabelsArtifact)
        ay = np.argsort(row_identity(mine_y.labels.prov))
        by = np.argsort(row_identity(theirs_y.labels.prov))
        assert np.array_equal(mine_y.y[ay], theirs_y.y[by]), y_key
    mine_m, theirs_m = _load(ivm, "model"), _load(oracle, "model")
    assert isinstance(mine_m, TrainingState)
    reference = theirs_m.unlearner.parameters(theirs_m.model)
    got = mine_m.unlearner.parameters(mine_m.model)
    for name, value in reference.items():
        scale = max(1.0, float(np.abs(value).max()))
        assert np.abs(np.asarray(got[name]) - np.asarray(value)).max() <= 1e-6 * scale, name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    customers, _ = write_complaints(tmp_path_factory.mktemp("data"), CUSTOMERS, seed=11)
    return customers.parent


def materialise_all(
    pipeline: LesterPipeline, base: Path, ledger: LesterLedger | None = None
) -> LesterIOManager:
    """Every asset of ``pipeline``, every partition, into a store at ``base``."""
    manager = LesterIOManager(base_path=str(base))
    materialize_pipeline(pipeline, manager, ledger)
    return manager


def _setup(
    data: Path, tmp: Path, partitions: int = 0, prepare: Any = None
) -> tuple[LesterPipeline, LesterIOManager, Ledger]:
    base = make_pipeline(_copy_sources(data, tmp / "ivm_data"), CUSTOMERS)
    pipeline = dataclasses.replace(base, partitions=partitions, prepare=prepare or base.prepare)
    manager = materialise_all(pipeline, tmp / "ivm_store")
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    return pipeline, manager, ledger


def _oracle(
    pipeline: LesterPipeline,
    data: Path,
    tmp: Path,
    *,
    drop_customers: list[int] = (),  # type: ignore[assignment]
    drop_mails: list[int] = (),  # type: ignore[assignment]
    null_subjects: list[int] = (),  # type: ignore[assignment]
) -> LesterIOManager:
    out = tmp / "oracle_data"
    out.mkdir()
    customers = pd.read_csv(data / "customers.csv")
    mails = pd.read_csv(data / "mails.csv")
    customers = customers[~customers["customer_id"].isin(drop_customers)]
    mails = mails[~mails["mail_id"].isin(drop_mails)]
    mails["subject"] = mails["subject"].astype(object)
    mails.loc[mails["mail_id"].isin(null_subjects), "subject"] = None
    customers.to_csv(out / "customers.csv", index=False)
    mails.to_csv(out / "mails.csv", index=False)
    oracle = dataclasses.replace(
        make_pipeline(out, CUSTOMERS), partitions=pipeline.partitions, prepare=pipeline.prepare
    )
    return materialise_all(oracle, tmp / "oracle_store")


def _apply(pipeline: LesterPipeline, io: LesterIOManager, requests: list[Request]) -> ApplyReport:
    return apply_deletions(pipeline, build_assets(pipeline), io, requests, run_id="test-run")


def _train_customers(io: LesterIOManager, n: int) -> list[int]:
    train = _load(io, "train")
    return sorted(set(train.data["customer_id"].tolist()))[:n]


def _mails_with_subject(io: LesterIOManager, n: int) -> list[int]:
    train = _load(io, "train")
    rows = train.data[train.data["title"].str.len() > 0]
    return sorted(rows["mail_id"].tolist())[:n]


@pytest.mark.parametrize("partitions", [0, 4])
def test_instance_deletion_equals_recompute(data: Path, tmp_path: Path, partitions: int) -> None:
    pipeline, io, ledger = _setup(data, tmp_path, partitions)
    customers = _train_customers(io, 2)
    request = ledger.submit(pipeline.name, "customers", customers)
    report = _apply(pipeline, io, [request])
    assert report.commits, "nothing was committed"
    oracle = _oracle(pipeline, data, tmp_path, drop_customers=customers)
    assert_equal_to_oracle(io, oracle)
    # nothing mentions the customers any more
    for key in FRAME_ASSETS:
        art = _load(io, key)
        assert (
            not set(art.data["customer_id"]) & set(customers) if "customer_id" in art.data else True
        )


@pytest.mark.parametrize("partitions", [0, 4])
def test_value_deletion_equals_recompute(data: Path, tmp_path: Path, partitions: int) -> None:
    pipeline, io, ledger = _setup(data, tmp_path, partitions)
    mails = _mails_with_subject(io, 3)
    request = ledger.submit(pipeline.name, "mails", mails, kind="value", columns=["subject"])
    report = _apply(pipeline, io, [request])
    assert report.commits
    oracle = _oracle(pipeline, data, tmp_path, null_subjects=mails)
    assert_equal_to_oracle(io, oracle)


def _source_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Every (asset, partition) LesterIOManager.load reads from now on, for the sources."""
    seen: list[tuple[str, str | None]] = []
    real = LesterIOManager.load

    def load(self: LesterIOManager, key: dg.AssetKey, partition: str | None = None) -> Any:
        if key.to_user_string() in ("customers", "mails"):
            seen.append((key.to_user_string(), partition))
        return real(self, key, partition)

    monkeypatch.setattr(LesterIOManager, "load", load)
    return seen


def test_a_value_deletion_reads_only_its_records_and_their_partners(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subject feeds no filter or join: the rows keep their records, so re-executing them
    needs only the partitions holding the mails and the customers they joined."""
    pipeline, io, ledger = _setup(data, tmp_path, 4)
    mails = _mails_with_subject(io, 2)
    request = ledger.submit(pipeline.name, "mails", mails, kind="value", columns=["subject"])
    loads = _source_loads(monkeypatch)
    report = _apply(pipeline, io, [request])
    assert report.strategies["value deletion: re-executed with"].startswith("the affected")
    assert 0 < len(loads) < 2 * 4, loads  # not every partition of both sources
    oracle = _oracle(pipeline, data, tmp_path, null_subjects=mails)
    assert_equal_to_oracle(io, oracle)


def _subject_filtered(**frames: Any) -> Any:
    """The running example, keeping only rows with a subject word count of 0 or more (every
    row, but a filter reading the subject)."""
    from lester_dagster.examples.complaints import prepare_frames
    from lester_dagster.frame import col

    return prepare_frames(frames["customers"], frames["mails"]).filter(col("title_words") >= 0)


def test_a_value_deletion_of_a_column_a_filter_reads_reads_every_record(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, io, ledger = _setup(data, tmp_path, 4, prepare=_subject_filtered)
    mails = _mails_with_subject(io, 2)
    request = ledger.submit(pipeline.name, "mails", mails, kind="value", columns=["subject"])
    loads = _source_loads(monkeypatch)
    report = _apply(pipeline, io, [request])
    why = report.strategies["value deletion: re-executed with"]
    assert why.startswith("every source record (Filter") and "mails.subject" in why
    assert len(set(loads)) == 2 * 4  # every partition of both sources
    oracle = _oracle(pipeline, data, tmp_path, null_subjects=mails)
    assert_equal_to_oracle(io, oracle)


def test_mixed_batch_and_rerun_is_a_no_op(data: Path, tmp_path: Path) -> None:
    pipeline, io, ledger = _setup(data, tmp_path)
    customers = _train_customers(io, 1)
    mails = _mails_with_subject(io, 4)[2:]
    requests = [
        ledger.submit(pipeline.name, "customers", customers),
        ledger.submit(pipeline.name, "mails", mails[:1]),
        ledger.submit(pipeline.name, "mails", mails[1:], kind="value", columns=["subject"]),
    ]
    _apply(pipeline, io, requests)
    again = _apply(pipeline, io, requests)
    assert again.commits == []
    oracle = _oracle(
        pipeline, data, tmp_path,
        drop_customers=customers, drop_mails=mails[:1], null_subjects=mails[1:],
    )  # fmt: skip
    assert_equal_to_oracle(io, oracle)


def test_deleting_every_test_row_leaves_empty_test_artifacts(data: Path, tmp_path: Path) -> None:
    pipeline, io, ledger = _setup(data, tmp_path)
    test_customers = sorted(set(_load(io, "test").data["customer_id"].tolist()))
    train_before = len(_load(io, "train"))
    request = ledger.submit(pipeline.name, "customers", test_customers)
    _apply(pipeline, io, [request])
    assert len(_load(io, "test")) == 0
    assert _load(io, "X_test").shape[0] == 0
    assert _load(io, "X_test").shape[1] == _load(io, "X_train").shape[1]
    assert len(_load(io, "y_test")) == 0
    assert len(_load(io, "train")) == train_before  # the split never moves training rows


def test_a_run_leaves_one_version_of_every_artifact(data: Path, tmp_path: Path) -> None:
    """Old versions (they hold the deleted rows) are collected on a background thread, all of
    them before the run returns; so are versions a run that died between a commit and its
    collection left behind on artifacts this run does not write again."""
    from lester_dagster.store.atomic import list_versions

    pipeline, io, ledger = _setup(data, tmp_path, partitions=4)
    (customer,) = _train_customers(io, 1)
    untouched = next(
        p
        for p in stored_partitions(io, dg.AssetKey("complaints"))
        if customer not in set(io.load(dg.AssetKey("complaints"), p).data["customer_id"])
    )
    key = dg.AssetKey("complaints")
    io.store(key, io.load(key, untouched), untouched)  # the store keeps the previous version
    assert len(list_versions(io.path_for(key, untouched))) == 2
    frozen: list[int] = []  # the run's full collections skip what was alive before it
    report = apply_deletions(
        pipeline, build_assets(pipeline), io,
        [ledger.submit(pipeline.name, "customers", [customer])], run_id="test-run",
        on_commit=lambda _: frozen.append(gc.get_freeze_count()),
    )  # fmt: skip
    assert frozen and all(n > 0 for n in frozen) and gc.get_freeze_count() == 0
    assert (key, untouched) not in {(c.asset_key, c.partition) for c in report.commits}
    stored = [
        (k, p)
        for k in (*FRAME_ASSETS, "X_train", "y_train", "model", "X_test", "y_test")
        for p in stored_partitions(io, dg.AssetKey(k))
    ]
    assert len(stored) > 10
    for k, p in stored:
        assert len(list_versions(io.path_for(dg.AssetKey(k), p))) == 1, (k, p)
