"""Filing deletion requests: checked against the source table (stored asset or file), keys
coerced and resolved (also by another column), every rejection writes nothing, no-ops are
recorded, duplicates are idempotent."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.errors import (
    LesterError,
    RequestError,
    SourceError,
    UnknownColumnError,
    UnknownKeyError,
    UnknownSourceError,
)
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.frame.provenance import hash_keys
from lester_dagster.orchestration import (
    LesterIOManager,
    LesterPipeline,
    LesterTranslator,
    SourceSpec,
    build_definitions,
    forget,
    submit_deletion,
)
from lester_dagster.orchestration.definitions import pipeline_resources
from lester_dagster.orchestration.partitions import bucket_keys, bucket_of
from lester_dagster.orchestration.submit import NOOP_RUN_ID, load_source_table
from lester_dagster.store import Ledger

CUSTOMERS = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_complaints(directory, CUSTOMERS, seed=0)
    return directory


@pytest.fixture(scope="module")
def pipeline(data: Path) -> LesterPipeline:
    return make_pipeline(data, CUSTOMERS)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def manager(tmp_path: Path) -> LesterIOManager:
    """An empty artifact root: requests are checked against the source files."""
    return LesterIOManager(base_path=str(tmp_path / "artifacts"))


def _submit(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager, *args: Any, **kw: Any
) -> Any:
    return submit_deletion(pipeline, ledger, *args, io_manager=manager, **kw)


def _materialise(
    pipeline: LesterPipeline,
    manager: LesterIOManager,
    select: list[str],
    partition: str | None = None,
) -> None:
    defs = build_definitions(pipeline, io_manager=manager)
    result = dg.materialize(
        list(defs.assets or ()),
        selection=select,
        partition_key=partition,
        resources=pipeline_resources(manager),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success


# -- filing --------------------------------------------------------------------------------------


def test_an_instance_deletion_is_filed_with_its_keys(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(
        pipeline, ledger, manager, "customers", [17, 3], requested_by="dpo", reason="art. 17"
    )
    assert (request.pipeline, request.source, request.kind) == (
        "complaints",
        "customers",
        "instance",
    )
    assert request.keys == (17, 3) and request.columns == ()
    assert request.status == "pending"
    assert (request.requested_by, request.reason) == ("dpo", "art. 17")
    assert [r.id for r in ledger.all()] == [request.id]


def test_a_value_deletion_names_its_columns(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(pipeline, ledger, manager, "mails", [4], columns=["subject", "text"])
    assert request.kind == "value" and request.columns == ("subject", "text")
    assert request.keys == (4,)


def test_text_keys_are_coerced_to_the_key_columns_dtype(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(pipeline, ledger, manager, "customers", ["17", " 3 ", 5.0, "8.0"])
    assert request.keys == (17, 3, 5, 8)
    assert all(type(k) is int for k in request.keys)


@pytest.mark.parametrize("bad", ["abc", 2.5, "2.5", True])
def test_a_value_that_cannot_be_the_key_dtype_names_column_and_dtype(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager, bad: object
) -> None:
    with pytest.raises(RequestError, match=r"customer_id.*int64"):
        _submit(pipeline, ledger, manager, "customers", [bad])
    assert ledger.all() == []


def test_forget_by_email_reaches_the_customer_with_that_email(
    pipeline: LesterPipeline, data: Path, ledger: Ledger, manager: LesterIOManager
) -> None:
    customers = pd.read_csv(data / "customers.csv")
    email = customers.loc[customers.customer_id == 23, "email"].item()
    request = _submit(pipeline, ledger, manager, "customers", [email], by="email", reason="gdpr")
    assert request.keys == (23,)
    assert request.reason.splitlines() == ["gdpr", f'by email: ["{email}"]']


def test_forget_by_email_reaches_every_mail_with_that_email(
    pipeline: LesterPipeline, data: Path, ledger: Ledger, manager: LesterIOManager
) -> None:
    mails = pd.read_csv(data / "mails.csv")
    email = mails.email.value_counts().index[0]
    expected = set(mails.loc[mails.email == email, "mail_id"])
    assert len(expected) > 1
    request = _submit(pipeline, ledger, manager, "mails", [email], by="email", columns=["text"])
    assert set(request.keys) == expected and request.kind == "value"


def test_forget_by_a_numeric_column_coerces_the_values(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(pipeline, ledger, manager, "customers", ["12"], by="customer_id")
    assert request.keys == (12,)


def test_duplicates_are_idempotent(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    first = _submit(pipeline, ledger, manager, "customers", [17, 3])
    again = _submit(pipeline, ledger, manager, "customers", ["3", "17"], reason="again")
    assert again.id == first.id and len(ledger.all()) == 1
    assert again.reason is None  # the earlier request, unchanged


# -- rejections ----------------------------------------------------------------------------------

REJECTIONS: list[tuple[str, dict[str, Any], type[LesterError], str]] = [
    ("unknown source", {"source": "nope", "keys": [1]}, UnknownSourceError, "'customers', 'mails'"),
    ("no keys", {"keys": []}, RequestError, "no keys"),
    ("a string as keys", {"keys": "17"}, RequestError, "list of key values"),
    ("a dict key", {"keys": [{"id": 1}]}, RequestError, "JSON scalars"),
    ("a NaN key", {"keys": [float("nan")]}, RequestError, "finite"),
    ("mixed shapes", {"keys": [1, [1, 2]]}, RequestError, "mix shapes"),
    ("a composite key", {"keys": [[1, 2]]}, RequestError, r"\['customer_id'\]"),
    ("unknown column", {"keys": [1], "columns": ["nope"]}, UnknownColumnError, "'email'"),
    ("unknown by", {"keys": [1], "by": "nope"}, UnknownColumnError, "'customer_id', 'email'"),
    ("a key column", {"keys": [1], "columns": ["customer_id"]}, RequestError, "delete the record"),
    ("a missing key", {"keys": [17, 999]}, UnknownKeyError, "no record with key 999"),
    ("a missing by value", {"keys": ["x@y"], "by": "email"}, UnknownKeyError, "email = 'x@y'"),
    ("by with a composite", {"keys": [["a", "b"]], "by": "email"}, RequestError, "one value"),
    ("bad on_missing", {"keys": [1], "on_missing": "skip"}, RequestError, "'noop'"),
]


@pytest.mark.parametrize(
    ("what", "kwargs", "error", "message"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_bad_requests_are_rejected_and_write_nothing(
    pipeline: LesterPipeline,
    ledger: Ledger,
    manager: LesterIOManager,
    what: str,
    kwargs: dict[str, Any],
    error: type[LesterError],
    message: str,
) -> None:
    kwargs = {"source": "customers", **kwargs}
    with pytest.raises(error, match=message):
        _submit(pipeline, ledger, manager, kwargs.pop("source"), kwargs.pop("keys"), **kwargs)
    assert ledger.all() == [] and ledger.events() == []


def test_a_missing_key_names_the_request_that_already_deleted_it(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    earlier = ledger.submit("complaints", "customers", [999])
    with pytest.raises(
        UnknownKeyError, match=rf"request #{earlier.id} \(pending\) already deletes 999"
    ):
        _submit(pipeline, ledger, manager, "customers", ["999"])
    by_mail = ledger.submit("complaints", "customers", [5], reason='by email: ["gone@x.org"]')
    with pytest.raises(
        UnknownKeyError, match=rf"request #{by_mail.id} \(pending\) already deletes 'gone@x"
    ):
        _submit(pipeline, ledger, manager, "customers", ["gone@x.org"], by="email")
    assert len(ledger.all()) == 2


def test_a_missing_source_file_is_never_generated(
    tmp_path: Path, ledger: Ledger, manager: LesterIOManager
) -> None:
    missing = tmp_path / "nothing-here"
    pipeline = make_pipeline(missing, 30)
    with pytest.raises(SourceError, match="materialise its asset"):
        _submit(pipeline, ledger, manager, "customers", [1])
    assert not missing.exists() and ledger.all() == []


# -- no-ops --------------------------------------------------------------------------------------


def test_noop_files_only_the_present_keys(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(pipeline, ledger, manager, "customers", [3, 999], on_missing="noop")
    assert request.keys == (3,) and request.status == "pending"
    assert "not in the source (ignored): [999]" in request.reason


def test_noop_with_no_present_key_is_recorded_as_applied(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    request = _submit(pipeline, ledger, manager, "customers", [998, "999"], on_missing="noop")
    assert request.keys == (998, 999)
    assert (request.status, request.run_id) == ("applied", NOOP_RUN_ID)
    assert request.verification is not None and request.verification["noop"] is True
    assert "no record with key 998, 999" in request.verification["reason"]
    history = [(e.from_status, e.to_status) for e in ledger.events(request.id)]
    assert history == [(None, "pending"), ("pending", "running"), ("running", "applied")]
    again = _submit(pipeline, ledger, manager, "customers", [999, 998], on_missing="noop")
    assert again.id == request.id and len(ledger.all()) == 1
    assert len(ledger.events(request.id)) == 3


def test_noop_by_a_value_no_record_has_files_nothing(
    pipeline: LesterPipeline, ledger: Ledger, manager: LesterIOManager
) -> None:
    with pytest.raises(UnknownKeyError, match="stable keys"):
        _submit(pipeline, ledger, manager, "customers", ["x@y"], by="email", on_missing="noop")
    assert ledger.all() == []


# -- the stored source table ---------------------------------------------------------------------


def test_the_stored_source_asset_is_what_requests_are_checked_against(
    tmp_path: Path, ledger: Ledger
) -> None:
    directory = tmp_path / "data"
    write_complaints(directory, 30, seed=1)
    pipeline = make_pipeline(directory, 30)
    manager = LesterIOManager(base_path=str(tmp_path / "stored"))
    _materialise(pipeline, manager, ["customers"])
    write_complaints(directory, 50, seed=1)  # the file grows after the materialisation
    with pytest.raises(UnknownKeyError, match=r"key 45 \(checked in the stored asset 'customers'"):
        _submit(pipeline, ledger, manager, "customers", [45])
    (directory / "customers.csv").unlink()  # the stored records suffice
    assert _submit(pipeline, ledger, manager, "customers", [7]).keys == (7,)
    assert not (directory / "customers.csv").exists()
    (directory / "mails.csv").unlink()  # neither stored nor on disk
    with pytest.raises(SourceError, match="not materialised"):
        _submit(pipeline, ledger, manager, "mails", [1])
    assert not (directory / "mails.csv").exists()


def test_a_translators_key_prefix_locates_the_stored_asset(tmp_path: Path, ledger: Ledger) -> None:
    directory = tmp_path / "data"
    write_complaints(directory, 20, seed=2)
    pipeline = make_pipeline(directory, 20)
    manager = LesterIOManager(base_path=str(tmp_path / "stored"))
    translator = LesterTranslator(key_prefix="ml")
    defs = build_definitions(pipeline, translator, io_manager=manager)
    dg.materialize(
        list(defs.assets or ()),
        selection=["ml/customers"],
        resources=pipeline_resources(manager),
        instance=dg.DagsterInstance.ephemeral(),
    )
    table = load_source_table(pipeline, "customers", io_manager=manager, translator=translator)
    assert "stored asset 'ml/customers'" in table.origin and len(table.rows) == 20


def test_every_stored_partition_of_a_partitioned_source_is_read(
    tmp_path: Path, ledger: Ledger
) -> None:
    directory = tmp_path / "data"
    write_complaints(directory, 40, seed=3)
    pipeline = dataclasses.replace(make_pipeline(directory, 40), partitions=2)
    manager = LesterIOManager(base_path=str(tmp_path / "stored"))
    customers = pd.read_csv(directory / "customers.csv")
    buckets = bucket_of(hash_keys(customers, ["customer_id"]), 2)
    first, second = bucket_keys(2)
    in_second = int(customers.customer_id[buckets == 1].iloc[0])
    in_first = int(customers.customer_id[buckets == 0].iloc[0])

    _materialise(pipeline, manager, ["customers"], partition=first)
    table = load_source_table(pipeline, "customers", io_manager=manager)
    assert "1 partition: 'b00'" in table.origin
    assert np.array_equal(
        np.sort(table.rows.data.customer_id), np.sort(customers.customer_id[buckets == 0])
    )
    with pytest.raises(UnknownKeyError, match=f"key {in_second} "):
        _submit(pipeline, ledger, manager, "customers", [in_second])

    _materialise(pipeline, manager, ["customers"], partition=second)
    table = load_source_table(pipeline, "customers", io_manager=manager)
    assert len(table.rows) == 40 and "2 partitions" in table.origin
    request = _submit(pipeline, ledger, manager, "customers", [in_second, in_first])
    assert request.keys == (in_second, in_first)


def test_a_multi_file_source_reads_every_file_or_stored_partition(
    tmp_path: Path, ledger: Ledger
) -> None:
    directory = tmp_path / "data"
    write_complaints(directory, 20, seed=4)
    mails = pd.read_csv(directory / "mails.csv")
    parts = directory / "mails"
    parts.mkdir()
    mails.iloc[:30].to_csv(parts / "mails-a.csv", index=False)
    mails.iloc[30:].to_csv(parts / "mails-b.csv", index=False)
    base = make_pipeline(directory, 20)
    pipeline = dataclasses.replace(
        base, sources={**base.sources, "mails": SourceSpec(parts / "mails-*.csv", key="mail_id")}
    )
    manager = LesterIOManager(base_path=str(tmp_path / "stored"))
    last = int(mails.mail_id.iloc[-1])
    table = load_source_table(pipeline, "mails", io_manager=manager)
    assert len(table.rows) == len(mails) and "the 2 file(s) of" in table.origin
    assert _submit(pipeline, ledger, manager, "mails", [last]).keys == (last,)

    _materialise(pipeline, manager, ["mails"], partition="mails-a")
    table = load_source_table(pipeline, "mails", io_manager=manager)
    assert len(table.rows) == 30 and "1 partition: 'mails-a'" in table.origin
    with pytest.raises(UnknownKeyError, match=f"key {last} "):
        _submit(pipeline, ledger, manager, "mails", [last], columns=["subject"])


# -- forget() ------------------------------------------------------------------------------------


def test_forget_takes_a_pipeline_and_a_ledger_url(pipeline: LesterPipeline, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'forget.db'}"
    request = forget(
        "customers",
        ["c000002@example.org"],
        by="email",
        pipeline=pipeline,
        ledger_url=url,
        artifacts=tmp_path / "artifacts",
    )
    assert request.keys == (2,)
    with Ledger(url) as ledger:
        assert [r.id for r in ledger.all("complaints")] == [request.id]


def test_forget_defaults_to_the_ledger_under_dagster_home(
    pipeline: LesterPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    request = forget("customers", [1], pipeline=pipeline)
    assert (tmp_path / "lester" / "ledger.db").exists()
    with Ledger() as ledger:
        assert ledger.get(request.id).keys == (1,)
