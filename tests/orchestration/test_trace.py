"""trace: every place a key reaches, before a deletion (rows located independently through the
stored data columns: customer and mail ids) and after it (nothing), with its ledger status."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from lester_dagster.errors import ArtifactNotFoundError, RequestError
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import build_assets
from lester_dagster.orchestration.forgetting import apply_deletions
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.trace import trace
from lester_dagster.store.ledger import Ledger
from tests.orchestration.conftest import Materialised


@pytest.fixture
def store(run: Materialised, tmp_path: Path) -> tuple[LesterPipeline, LesterIOManager, Ledger]:
    """A copy of the module's materialisation (300 customers, unpartitioned) and a ledger."""
    shutil.copytree(run.base, tmp_path / "store")
    io = LesterIOManager(base_path=str(tmp_path / "store"))
    return run.pipeline, io, Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _rows(io: LesterIOManager, key: str, column: str, value: int) -> list[int]:
    (partition,) = stored_partitions(io, dg.AssetKey(key))
    data = io.load(dg.AssetKey(key), partition).data
    return np.flatnonzero(data[column].to_numpy() == value).tolist()


def _apply(pipeline: LesterPipeline, io: LesterIOManager, ledger: Ledger, ids: list[int]) -> None:
    ledger.claim(ids, "test-run")
    apply_deletions(pipeline, build_assets(pipeline), io, [ledger.get(i) for i in ids],
                    run_id="test-run")  # fmt: skip
    ledger.mark_applied(ids, "test-run", {}, {"ok": True})


def _customer_with_two_training_mails(io: LesterIOManager) -> int:
    train = io.load(dg.AssetKey("train")).data
    counts = train.customer_id.value_counts()
    return int(counts[counts >= 2].index.min())


def test_a_customer_before_and_after_deletion(
    store: tuple[LesterPipeline, LesterIOManager, Ledger],
) -> None:
    pipeline, io, ledger = store
    customer = _customer_with_two_training_mails(io)
    report = trace(pipeline, io, "customers", str(customer), ledger=ledger)  # CLI keys are text
    assert report.key == customer and report.in_source
    assert report.status == "not deleted" and not report.deleted
    places = {r.label: r for r in report.reaches}
    prepared_rows = _rows(io, "complaints", "customer_id", customer)
    train_rows = _rows(io, "train", "customer_id", customer)
    test_rows = _rows(io, "test", "customer_id", customer)
    assert test_rows == []  # the split puts a customer's mails on one side
    expected = {"customers", "complaints", "train", "X_train", "y_train", "model"}
    assert set(places) == expected
    assert list(places["customers"].rows) == _rows(io, "customers", "customer_id", customer)
    assert list(places["complaints"].rows) == prepared_rows
    complaints = io.load(dg.AssetKey("complaints")).data
    assert list(places["complaints"].keys["mails"]) == complaints.mail_id[prepared_rows].tolist()
    assert list(places["train"].rows) == train_rows
    state: TrainingState = io.load(dg.AssetKey("model"))
    model_rows = np.flatnonzero(state.frame.customer_id.to_numpy() == customer).tolist()
    assert list(places["X_train"].rows) == model_rows == list(places["y_train"].rows)
    assert list(places["model"].rows) == model_rows and places["model"].of_rows == len(state.frame)
    # the columns holding customer data: the one-hot country block, as sklearn lays it out
    country = state.encoding.output_indices_["country"]
    (columns,) = places["X_train"].columns
    assert (columns.block, columns.start, columns.stop) == ("country", country.start, country.stop)
    assert columns.source_columns == ("country",)
    text = "\n".join(report.lines())
    assert f"complaints.customers {customer}" in text and "not deleted" in text
    assert f"trained on {len(model_rows)} of its {len(state.frame)} rows" in text

    request = ledger.submit(pipeline.name, "customers", [customer])
    pending = trace(pipeline, io, "customers", customer, ledger=ledger)
    assert pending.status == f"to be deleted by request #{request.id} (pending)"
    assert len(pending.reaches) == len(report.reaches)  # nothing applied yet
    _apply(pipeline, io, ledger, [request.id])
    after = trace(pipeline, io, "customers", customer, ledger=ledger)
    assert after.status == f"deleted by request #{request.id}" and after.deleted
    assert after.reaches == [] and not after.in_source
    assert after.key_id == report.key_id
    assert "reaches nothing" in "\n".join(after.lines())


def test_a_mail_whose_subject_was_deleted_still_reaches_its_rows(
    store: tuple[LesterPipeline, LesterIOManager, Ledger],
) -> None:
    pipeline, io, ledger = store
    train = io.load(dg.AssetKey("train")).data
    mail = int(train.mail_id[train.title.str.len() > 0].min())
    customer = int(train.customer_id[train.mail_id == mail].item())
    request = ledger.submit(pipeline.name, "mails", [mail], kind="value", columns=["subject"])
    _apply(pipeline, io, ledger, [request.id])
    report = trace(pipeline, io, "mails", mail, ledger=ledger)
    assert report.status == f"values of subject deleted by request #{request.id}"
    assert not report.deleted and report.in_source
    places = {r.label: r for r in report.reaches}
    assert {"mails", "complaints", "train", "X_train", "y_train", "model"} == set(places)
    assert list(places["train"].rows) == _rows(io, "train", "mail_id", mail)
    assert list(places["train"].keys["customers"]) == [customer]
    blocks = {c.block: c.source_columns for c in places["X_train"].columns}
    assert blocks == {"title": ("subject",), "text": ("text",), "title_words": ("subject",)}
    doc = report.to_dict()
    assert doc["requests"] == [
        {"id": request.id, "kind": "value", "columns": ["subject"], "status": "applied"}
    ]
    assert doc["key"] == mail and doc["reaches"][0]["asset"] == "mails"


def test_keys_are_coerced_and_checked(
    store: tuple[LesterPipeline, LesterIOManager, Ledger],
) -> None:
    pipeline, io, ledger = store
    assert (
        trace(pipeline, io, "customers", "7").key_id == trace(pipeline, io, "customers", 7).key_id
    )
    assert trace(pipeline, io, "customers", 7).status == "not deleted (no ledger)"
    with pytest.raises(RequestError, match="whose dtype is int64"):
        trace(pipeline, io, "customers", "seven")
    missing = trace(pipeline, io, "customers", 10**9, ledger=ledger)
    assert not missing.in_source and missing.reaches == []
    assert "no such record in the source" in missing.lines()[0]


def test_nothing_stored_is_an_error(pipeline: LesterPipeline, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="materialise it first"):
        trace(pipeline, LesterIOManager(base_path=str(tmp_path)), "customers", 1)
