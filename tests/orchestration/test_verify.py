"""verify: passes after a correct IVM run (instance and value deletions, through the sensor and
the IVM job), and fails with a precise violation for each way data can be left behind: a
stored artifact written back with a deleted record, a source value not missing, a prepared row
or an X row of a record with a deleted value not re-executed / re-encoded, a key index holding a
deleted key, a model keeping removed rows, a model that did not forget.

The expected counts come from the data (customer and mail ids in the stored columns), not from
provenance, so a bug in the provenance lookups cannot hide itself."""

from __future__ import annotations

import dataclasses
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
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import IO_MANAGER_KEY, build_definitions
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.assets import build_assets
from lester_dagster.orchestration.deletions import apply_job_name, sensor_name
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.verify import (
    CHECKS,
    MODEL_CHECK,
    VerifyReport,
    requests_in_effect,
    verify,
    verify_assets,
)
from lester_dagster.store.atomic import collect_garbage, list_versions
from lester_dagster.store.ledger import Ledger

from .test_forgetting import materialise_all

CUSTOMERS = 260
PARTITIONS = 4


@dataclasses.dataclass
class Forgotten:
    """The running example in 4 buckets, materialised (``before``), then after the IVM run of
    three requests (``after``): customers deleted, and the subject of some mails."""

    pipeline: LesterPipeline
    data: Path
    before: Path
    after: Path
    ledger_file: Path
    customers: list[int]  # deleted: 2 training customers and 1 test customer
    train_mails: list[int]  # subject deleted, training rows
    test_mails: list[int]  # subject deleted, test rows
    verification: dict[str, Any]  # what the IVM op recorded in the ledger

    @property
    def mails(self) -> list[int]:
        return self.train_mails + self.test_mails

    def copy(self, tmp: Path, *, store: Path | None = None) -> tuple[LesterIOManager, Ledger]:
        """A writable copy of a store (default: after the IVM run) and of the ledger."""
        target = tmp / "store"
        shutil.copytree(store or self.after, target)
        shutil.copy(self.ledger_file, tmp / "ledger.db")
        return LesterIOManager(base_path=str(target)), Ledger(f"sqlite:///{tmp / 'ledger.db'}")


def _whole(io: LesterIOManager, key: str) -> FrameArtifact:
    from lester_dagster.orchestration.partitions import concat_frames

    parts = [io.load(dg.AssetKey(key), p) for p in stored_partitions(io, dg.AssetKey(key))]
    return concat_frames(parts)


def make_forgotten(tmp: Path) -> Forgotten:
    """Materialise the running example in ``tmp``, file the three requests and run the deletion
    sensor and the IVM job it requests (see :class:`Forgotten`)."""
    write_complaints(tmp / "data", CUSTOMERS, seed=3)
    pipeline = dataclasses.replace(make_pipeline(tmp / "data", CUSTOMERS), partitions=PARTITIONS)
    io = materialise_all(pipeline, tmp / "store")
    shutil.copytree(tmp / "store", tmp / "before")
    train, test = _whole(io, "train").data, _whole(io, "test").data
    titled_train = train[train["title"].str.len() > 0]
    titled_test = test[test["title"].str.len() > 0]
    train_mails = sorted(titled_train["mail_id"])[:2]
    test_mails = sorted(titled_test["mail_id"])[:1]
    keep = set(train[train.mail_id.isin(train_mails)].customer_id) | set(
        test[test.mail_id.isin(test_mails)].customer_id
    )
    customers = [c for c in sorted(set(train.customer_id)) if c not in keep][:2]
    customers += [c for c in sorted(set(test.customer_id)) if c not in keep][:1]

    url = f"sqlite:///{tmp / 'ledger.db'}"
    with Ledger(url) as ledger:
        ledger.submit(pipeline.name, "customers", customers[:2])
        ledger.submit(pipeline.name, "customers", customers[2:])
        ledger.submit(pipeline.name, "mails", train_mails + test_mails, kind="value",
                      columns=["subject"])  # fmt: skip
    defs = build_definitions(pipeline, io_manager=io, ledger=LesterLedger(url=url))
    (tmp / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp / "home"))
    context = dg.build_sensor_context(
        instance=instance,
        definitions=defs,
        resources={IO_MANAGER_KEY: io, LEDGER_KEY: LesterLedger(url=url)},
    )
    (run,) = defs.resolve_sensor_def(sensor_name(pipeline.name)).evaluate_tick(context).run_requests
    job = defs.resolve_job_def(apply_job_name(pipeline.name))
    assert job.execute_in_process(run_config=run.run_config, instance=instance).success
    with Ledger(url) as ledger:
        requests = ledger.all(pipeline.name)
    assert [r.status for r in requests] == ["applied"] * 3
    shutil.copytree(tmp / "store", tmp / "after")
    verification = dict(requests[0].verification or {})
    return Forgotten(pipeline, tmp / "data", tmp / "before", tmp / "after", tmp / "ledger.db",
                     customers, train_mails, test_mails, verification)  # fmt: skip


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Forgotten:
    return make_forgotten(tmp_path_factory.mktemp("verify"))


def _tamper(
    io: LesterIOManager, key: dg.AssetKey, value: Any, partition: str | None = None
) -> None:
    """Write a tampered artifact as the current version, keeping no older one (so that only
    the check aimed at is violated)."""
    io.store(key, value, partition)
    collect_garbage(io.path_for(key, partition))


def _only(report: VerifyReport, check: str) -> list[str]:
    """The violations, asserting they all belong to ``check``."""
    assert not report.ok
    assert {v.check for v in report.findings} == {check}, report.violations
    return report.violations


def _partition_holding(io: LesterIOManager, key: str, column: str, values: list[int]) -> str:
    for partition in stored_partitions(io, dg.AssetKey(key)):
        data = io.load(dg.AssetKey(key), partition).data
        if data[column].isin(values).any():
            return str(partition)
    raise AssertionError(f"no partition of {key} holds {column} in {values}")


# -- after a correct IVM run ---------------------------------------------------------------------


def test_verify_passes_after_the_ivm_run(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    report = verify(forgotten.pipeline, io, ledger, model=True)
    assert report.ok, report.violations
    assert set(report.checks) == set(CHECKS)
    assert report.deleted_records == {"customers": 3}
    assert report.deleted_values == {"mails": {"subject": 3}}
    assert report.request_ids == (1, 2, 3) and report.running == ()
    # every stored artifact, counted on disk: 4 buckets of 5 assets, 5 unpartitioned ones
    on_disk = sum(1 for m in (tmp_path / "store").rglob("manifest.json"))
    assert report.artifacts_checked == on_disk == 4 * 5 + 5
    # the value checks compared the rows of the three mails, wherever they are
    prepared = _whole(io, "complaints").data
    stored_rows = int(prepared.mail_id.isin(forgotten.mails).sum())
    assert stored_rows == 3
    assert report.checks["value_rows_reexecuted"].rows == 2 * stored_rows  # prepared + its side
    assert report.checks["value_rows_reencoded"].rows == 2 * 2 + 1  # X_train, model; X_test
    assert report.model is not None and report.model.rows_equal and report.model.y_equal
    assert report.model.distance <= report.model.tolerance
    assert report.model.x_max_abs_diff <= 1e-9
    # the IVM op recorded the same kind of verification in the ledger
    assert forgotten.verification["ok"] is True
    assert set(forgotten.verification["checks"]) == set(CHECKS) - {MODEL_CHECK}
    assert forgotten.verification["deleted_records"] == {"customers": 3}


def test_verify_before_the_ivm_run_names_every_artifact_and_count(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    """The ledger says applied, the store is as before: every artifact holding a deleted
    customer is named with the number of its rows, counted from the data."""
    io, ledger = forgotten.copy(tmp_path, store=forgotten.before)
    report = verify(forgotten.pipeline, io, ledger)
    found = {str(v).split(":")[0]: v.count for v in report.findings if v.check ==
             "no_deleted_records" and "derived from a deleted record" in v.what}  # fmt: skip
    expected = {}
    for key in ("customers", "complaints", "train", "test"):
        for partition in stored_partitions(io, dg.AssetKey(key)):
            data = io.load(dg.AssetKey(key), partition).data
            n = int(data.customer_id.isin(forgotten.customers).sum())
            if n:
                expected[f"{key}[{partition}]"] = n
    state = io.load(dg.AssetKey("model"))
    n_train = int(state.frame.customer_id.isin(forgotten.customers).sum())
    n_test = int(_whole(io, "test").data.customer_id.isin(forgotten.customers).sum())
    expected.update({"X_train": n_train, "y_train": n_train, "model": n_train})
    expected.update({"X_test": n_test, "y_test": n_test})
    assert found == expected
    assert not report.checks["deleted_values_missing"].ok
    assert not report.checks["value_rows_reexecuted"].ok


# -- (a) deleted records -------------------------------------------------------------------------


def test_a_prepared_partition_written_back_with_a_deleted_customer_fails(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    customer = forgotten.customers[0]
    partition = _partition_holding(before, "complaints", "customer_id", [customer])
    old = before.load(dg.AssetKey("complaints"), partition)
    now = io.load(dg.AssetKey("complaints"), partition)
    rows = np.flatnonzero(old.data.customer_id.to_numpy() == customer)
    # the current rows plus the deleted customer's old rows: only that record is wrong
    tampered = FrameArtifact(
        pd.concat([now.data, old.data.iloc[rows]], ignore_index=True),
        Prov.concat([now.prov, old.prov.take(rows)]),
        now.lineage,
        now.key_indexes,
    )
    _tamper(io, dg.AssetKey("complaints"), tampered, partition)
    report = verify(forgotten.pipeline, io, ledger)
    assert _only(report, "no_deleted_records") == [
        f"complaints[{partition}]: {len(rows)} row(s) derived from a deleted record "
        f"(customers: {len(rows)})"
    ]
    assert report.findings[0].count == len(rows)


def test_a_scope_checks_only_its_artifacts(forgotten: Forgotten, tmp_path: Path) -> None:
    """A deletion run verifies the artifacts its requests reached; one outside the scope is not
    read, one inside is checked as by a full verify."""
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    customer = forgotten.customers[0]
    partition = _partition_holding(before, "complaints", "customer_id", [customer])
    _tamper(io, dg.AssetKey("complaints"), before.load(dg.AssetKey("complaints"), partition),
            partition)  # fmt: skip
    built = build_assets(forgotten.pipeline)
    requests = ledger.all(forgotten.pipeline.name)
    others = [p for p in stored_partitions(io, dg.AssetKey("complaints")) if p != partition]
    outside = {(dg.AssetKey("complaints"), p) for p in others}
    report = verify_assets(built, io, requests, scope=outside)
    assert report.ok, report.violations
    assert report.artifacts_checked == len(others)
    inside = {*outside, (dg.AssetKey("complaints"), partition)}
    report = verify_assets(built, io, requests, scope=inside)
    assert not report.ok
    assert {v.label for v in report.findings} == {f"complaints[{partition}]"}
    # the IVM op recorded the artifacts its verification covered: the reached ones
    scope = forgotten.verification["scope"]
    assert f"complaints[{partition}]" in scope and "model" in scope
    assert len(scope) == forgotten.verification["artifacts_checked"] < 4 * 5 + 5


def test_a_key_index_holding_a_deleted_key_fails(forgotten: Forgotten, tmp_path: Path) -> None:
    """Stored frames, X and y keep only the keys their rows mention; the model artifact keeps
    its resolver's key indexes whole, so the IVM run must prune them."""
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    old: TrainingState = before.load(dg.AssetKey("model"))
    state: TrainingState = io.load(dg.AssetKey("model"))
    assert isinstance(old.features.resolve, KeyResolver)
    old_index = old.features.resolve.indexes["customers"]
    held = int(old_index["customer_id"].isin(forgotten.customers).sum())
    assert held >= 2  # the training customers, at least
    indexes = {**state.features.resolve.indexes, "customers": old_index}  # type: ignore[attr-defined]
    f = state.features
    state.features = FeatureMatrix(f.X, f.prov, f.blocks, KeyResolver(indexes))
    _tamper(io, dg.AssetKey("model"), state)
    report = verify(forgotten.pipeline, io, ledger)
    assert _only(report, "no_deleted_records") == [
        f"model: its key index of 'customers' still holds {held} deleted key(s)"
    ]


def test_a_model_keeping_forgotten_rows_as_tombstones_fails(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    io, ledger = forgotten.copy(tmp_path)
    state: TrainingState = io.load(dg.AssetKey("model"))
    assert state.unlearner._X_all.shape[0] == state.unlearner.n_rows  # the IVM run compacted it
    # a model that forgets one more (undeleted) customer without compacting keeps its rows
    customer = next(c for c in state.frame.customer_id if c not in forgotten.customers)
    rows = np.flatnonzero(state.frame.customer_id.to_numpy() == customer)
    state.unlearner.forget(rows)
    _tamper(io, dg.AssetKey("model"), state)
    report = verify(forgotten.pipeline, io, ledger)
    violations = _only(report, "no_deleted_records")
    assert f"model: its model still stores {len(rows)} removed training row(s)" in violations[-1]


# -- (b) deleted values --------------------------------------------------------------------------


def test_a_source_value_that_is_not_missing_fails(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    mail = forgotten.train_mails[0]
    partition = _partition_holding(io, "mails", "mail_id", [mail])
    now = io.load(dg.AssetKey("mails"), partition)
    assert now.data.loc[now.data.mail_id == mail, "subject"].isna().all()
    original = pd.read_csv(forgotten.data / "mails.csv").set_index("mail_id").subject
    data = now.data.copy()
    data["subject"] = data["subject"].astype(object)
    data.loc[data.mail_id == mail, "subject"] = original[mail]
    _tamper(io, dg.AssetKey("mails"), FrameArtifact(data, now.prov, now.lineage, now.key_indexes),
             partition)  # fmt: skip
    report = verify(forgotten.pipeline, io, ledger)
    assert _only(report, "deleted_values_missing") == [
        f"mails[{partition}]: 1 deleted value(s) of 'subject' still stored"
    ]


def test_a_prepared_row_with_the_old_value_fails(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    mail = forgotten.train_mails[1]
    partition = _partition_holding(io, "train", "mail_id", [mail])
    old = before.load(dg.AssetKey("train"), partition).data.set_index("mail_id")
    now = io.load(dg.AssetKey("train"), partition)
    data = now.data.copy()
    at = data.mail_id == mail
    assert (data.loc[at, "title"] == "").all() and old.loc[mail, "title"] != ""
    data.loc[at, "title"] = old.loc[mail, "title"]
    data.loc[at, "title_words"] = old.loc[mail, "title_words"]
    _tamper(io, dg.AssetKey("train"), FrameArtifact(data, now.prov, now.lineage, now.key_indexes),
             partition)  # fmt: skip
    report = verify(forgotten.pipeline, io, ledger)
    assert _only(report, "value_rows_reexecuted") == [
        f"train[{partition}]: 1 row(s) of records with deleted values differ from a "
        "re-execution of the plan (columns title, title_words)"
    ]


def test_an_x_test_row_with_the_old_encoding_fails(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    (mail,) = forgotten.test_mails
    now: FeatureMatrix = io.load(dg.AssetKey("X_test"))
    old: FeatureMatrix = before.load(dg.AssetKey("X_test"))
    # rows located by the test frames' mail ids (X_test row i is test row i)
    row_now = int(np.flatnonzero(_whole(io, "test").data.mail_id == mail)[0])
    row_old = int(np.flatnonzero(_whole(before, "test").data.mail_id == mail)[0])
    X = sp.lil_matrix(now.X)
    old_row = old.X[row_old].toarray()
    # columns of the title blocks (the subject's): the old encoding of the deleted subject
    title = [b for b in now.blocks if b.name in ("title", "title_words")]
    for block in title:
        X[row_now, block.start : block.stop] = old_row[:, block.start : block.stop]
    assert (X[row_now].toarray() != now.X[row_now].toarray()).any()
    _tamper(io, dg.AssetKey("X_test"), FeatureMatrix(sp.csr_matrix(X), now.prov, now.blocks,
             now.resolve))  # fmt: skip
    report = verify(forgotten.pipeline, io, ledger)
    (violation,) = _only(report, "value_rows_reencoded")
    assert violation.startswith(
        "X_test: 1 X row(s) of records with deleted values differ from their re-executed rows "
        "encoded with the model's fitted encoders (blocks title, title_words; max abs diff"
    )


# -- (c) the model -------------------------------------------------------------------------------


def test_the_old_model_written_back_fails_the_model_check(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    old: TrainingState = before.load(dg.AssetKey("model"))
    _tamper(io, dg.AssetKey("model"), old)
    report = verify(forgotten.pipeline, io, ledger, model=True)
    n_train = len(_whole(io, "train"))
    assert f"model: trained on {len(old.frame)} row(s) that are not the {n_train} stored " \
        "train rows" in report.violations  # fmt: skip
    assert report.model is not None and not report.model.ok and not report.model.rows_equal
    # without model=True: the deleted customers' rows, and the deleted subjects encoded
    # with the old encoders, give it away
    cheap = verify(forgotten.pipeline, io, ledger)
    assert {v.check for v in cheap.findings} == {"no_deleted_records", "value_rows_reencoded"}
    assert {v.asset for v in cheap.findings if v.check == "no_deleted_records"} == {"model"}


def test_a_model_whose_parameters_did_not_forget_fails_with_its_distance(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    """Training data forgotten, parameters not: only the model check can see it, and the
    distance it reports is the parameters' distance to the forgotten model (which equals a
    refit, as the passing test shows)."""
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    old_model = before.load(dg.AssetKey("model")).unlearner.model
    state: TrainingState = io.load(dg.AssetKey("model"))
    forgotten_model = state.unlearner.model
    expected = max(
        float(np.abs(old_model.coef_ - forgotten_model.coef_).max()),
        float(np.abs(old_model.intercept_ - forgotten_model.intercept_).max()),
    )
    forgotten_model.coef_ = old_model.coef_.copy()
    forgotten_model.intercept_ = old_model.intercept_.copy()
    _tamper(io, dg.AssetKey("model"), state)
    assert verify(forgotten.pipeline, io, ledger).ok  # the cheap checks cannot tell
    report = verify(forgotten.pipeline, io, ledger, model=True)
    (violation,) = _only(report, MODEL_CHECK)
    assert report.model is not None
    assert report.model.distance == pytest.approx(expected, rel=1e-6)
    assert report.model.distance > 1e3 * report.model.tolerance
    assert violation.startswith(f"model: its parameters differ from a refit on its training data "
                                f"by {report.model.distance:.3g} (tolerance")  # fmt: skip


# -- the requests in effect ----------------------------------------------------------------------


def test_a_running_request_counts_and_is_flagged(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    train = _whole(io, "train").data
    customer = next(c for c in sorted(set(train.customer_id)))
    request = ledger.submit(forgotten.pipeline.name, "customers", [customer])
    assert verify(forgotten.pipeline, io, ledger).ok  # pending: not in effect yet
    ledger.claim(request.id, "some-run")
    in_effect, running = requests_in_effect(ledger, forgotten.pipeline.name)
    assert [r.id for r in in_effect] == [1, 2, 3, request.id] and running == (request.id,)
    assert requests_in_effect(ledger, forgotten.pipeline.name, run_id="other")[1] == ()
    report = verify(forgotten.pipeline, io, ledger)
    assert report.running == (request.id,)
    assert "still running: #4" in report.lines()[0]
    n = int(train.customer_id.eq(customer).sum())
    assert f"X_train: {n} row(s) derived from a deleted record (customers: {n})" in (
        report.violations
    )


def test_nothing_stored_is_an_error(forgotten: Forgotten, tmp_path: Path) -> None:
    from lester_dagster.errors import ArtifactNotFoundError

    with pytest.raises(ArtifactNotFoundError, match="materialise the pipeline first"):
        verify(forgotten.pipeline, LesterIOManager(base_path=str(tmp_path)), None)


def test_without_a_ledger_nothing_is_deleted(forgotten: Forgotten) -> None:
    report = verify(forgotten.pipeline, LesterIOManager(base_path=str(forgotten.before)), None)
    assert report.ok and report.request_ids == () and report.keys_checked == 0
    assert report.checks["no_deleted_records"].rows > 0


def test_a_request_of_a_source_that_is_not_stored_is_noted(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    """Partly materialised (mails not stored yet): its requests cannot be hashed and nothing
    derives from it yet; the other requests are still checked."""
    io, ledger = forgotten.copy(tmp_path)
    shutil.rmtree(tmp_path / "store" / "mails")
    report = verify(forgotten.pipeline, io, ledger)
    assert report.ok and report.request_ids == (1, 2)
    assert report.notes == [
        "request #3 (mails) not checked: source 'mails' is not stored; materialise it"
    ]
    assert "  note: request #3 (mails) not checked" in "\n".join(report.lines())


def test_an_older_version_left_on_disk_fails(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    # the IVM run removed the previous versions; writing again keeps one (for readers)
    assert all(
        len(list_versions(p.parent)) == 1 for p in (tmp_path / "store").rglob("manifest.json")
    )
    current = io.load(dg.AssetKey("X_train"))
    io.store(dg.AssetKey("X_train"), current)  # the same content, a new version
    report = verify(forgotten.pipeline, io, ledger)
    assert _only(report, "no_stale_versions") == [
        "X_train: 1 older version(s) of the artifact are still on disk and may hold deleted "
        "data; re-run the deletion run or lester_dagster.store.collect_garbage() on it"
    ]
