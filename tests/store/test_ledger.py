"""The deletion ledger: round trips, idempotency, validation, the state machine, audit events,
persistence and a two-process claim race."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lester_dagster.errors import (
    LedgerError,
    LedgerStateError,
    RequestError,
    UnknownRequestError,
)
from lester_dagster.store import Ledger, Request, default_ledger_path
from lester_dagster.store.requests import fingerprint


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sub' / 'ledger.db'}"


@pytest.fixture
def ledger(db: str) -> Ledger:
    return Ledger(db)


def rows(db: str, table: str = "lester_requests") -> int:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_submit_get_round_trip_of_every_field(ledger: Ledger) -> None:
    before = datetime.now(UTC)
    made = ledger.submit(
        "complaints", "customers", [3, "c1", 2.5], requested_by="dpo", reason="art. 17"
    )
    got = ledger.get(made.id)
    assert got == made
    assert got.id == 1
    assert (got.pipeline, got.source, got.kind) == ("complaints", "customers", "instance")
    assert got.keys == (3, "c1", 2.5)
    assert got.columns == ()
    assert (got.requested_by, got.reason) == ("dpo", "art. 17")
    assert before - timedelta(seconds=1) <= got.created_at <= datetime.now(UTC)
    assert got.created_at.tzinfo is UTC
    assert (got.status, got.status_reason, got.run_id, got.applied_at) == (
        "pending",
        None,
        None,
        None,
    )
    assert got.timings == {} and got.verification is None
    assert got.fingerprint == fingerprint("complaints", "customers", "instance", [], [2.5, "c1", 3])

    value = ledger.submit(
        "complaints", "mails", [("m", 1), ["m", 2]], kind="value", columns=["mail_subject"]
    )
    got = ledger.get(value.id)
    assert got.id == 2 and got.kind == "value"
    assert got.keys == (("m", 1), ("m", 2)) and got.columns == ("mail_subject",)


def test_numpy_keys_become_python_values(ledger: Ledger) -> None:
    request = ledger.submit("p", "s", np.array([1, 2], dtype=np.int64))
    assert request.keys == (1, 2) and all(type(k) is int for k in request.keys)


def test_duplicates_are_idempotent_unless_rejected(ledger: Ledger, db: str) -> None:
    first = ledger.submit("p", "s", [1, 2], requested_by="a")
    again = ledger.submit("p", "s", [2, 1, 1], requested_by="b", reason="again")
    assert again == first and rows(db) == 1
    ledger.claim([first.id], "r1")
    assert ledger.submit("p", "s", [1, 2]).id == first.id  # running: still the same request
    ledger.mark_applied([first.id], "r1", {})
    assert ledger.submit("p", "s", [1, 2]).id == first.id  # applied: nothing left to do
    # a different pipeline, source, kind or column set is a different request
    assert ledger.submit("q", "s", [1, 2]).id != first.id
    assert ledger.submit("p", "t", [1, 2]).id != first.id
    v1 = ledger.submit("p", "s", [1, 2], kind="value", columns=["a", "b"])
    assert ledger.submit("p", "s", [2, 1], kind="value", columns=["b", "a"]).id == v1.id
    assert ledger.submit("p", "s", [1, 2], kind="value", columns=["a"]).id != v1.id
    # a rejected request may be filed again
    ledger.reject(v1.id, "wrong columns")
    refiled = ledger.submit("p", "s", [1, 2], kind="value", columns=["a", "b"])
    assert refiled.id != v1.id and refiled.status == "pending"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keys": []}, "has no keys"),
        ({"keys": "c17"}, "list of key values"),
        ({"keys": 17}, "list of key values"),
        ({"keys": {"a": 1}}, "list of key values"),
        ({"keys": [1], "kind": "record"}, "unknown request kind 'record'"),
        ({"keys": [1], "kind": "value"}, "needs the columns"),
        ({"keys": [1], "columns": ["email"]}, "takes no columns"),
        ({"keys": [1], "kind": "value", "columns": [""]}, "non-empty strings"),
        ({"keys": [object()]}, "JSON scalars"),
        ({"keys": [None]}, "JSON scalars"),
        ({"keys": [float("nan")]}, "not a JSON value"),
        ({"keys": [[1, [2]]]}, "JSON scalars"),
        ({"keys": [[]]}, "empty composite key"),
        ({"keys": [1, [1, 2]]}, "mix shapes"),
        ({"keys": [1], "pipeline": ""}, "pipeline must be a non-empty string"),
        ({"keys": [1], "source": None}, "source must be a non-empty string"),
        ({"keys": [1], "requested_by": 5}, "requested_by"),
    ],
)
def test_bad_requests_are_rejected_and_nothing_is_written(
    ledger: Ledger, db: str, kwargs: dict[str, Any], message: str
) -> None:
    ledger.submit("p", "s", [0])  # so the database exists
    args = {"pipeline": "p", "source": "s", **kwargs}
    with pytest.raises(RequestError, match=message) as info:
        ledger.submit(args.pop("pipeline"), args.pop("source"), args.pop("keys"), **args)
    assert isinstance(info.value, ValueError)
    assert rows(db) == 1 and rows(db, "lester_request_events") == 1


def test_transitions_and_events(ledger: Ledger) -> None:
    a = ledger.submit("p", "s", [1], reason="filed")
    b = ledger.submit("p", "s", [2])
    c = ledger.submit("p", "s", [3])
    assert [r.id for r in ledger.pending("p")] == [a.id, b.id, c.id]
    assert ledger.pending("other") == []

    claimed = ledger.claim([a.id, b.id], "run-1")
    assert [(r.status, r.run_id) for r in claimed] == [("running", "run-1")] * 2
    assert [r.id for r in ledger.pending()] == [c.id]

    with pytest.raises(LedgerStateError, match=r"request 1 is 'running' and cannot become"):
        ledger.claim([c.id, a.id], "run-2")  # all or nothing: c stays pending
    assert ledger.get(c.id).status == "pending"
    with pytest.raises(UnknownRequestError, match="99"):
        ledger.claim([c.id, 99], "run-2")
    assert ledger.get(c.id).status == "pending"

    with pytest.raises(LedgerStateError, match="under run 'run-1', not 'run-2'"):
        ledger.mark_applied([a.id], "run-2", {})
    applied = ledger.mark_applied([a.id], "run-1", {"X_train": 0.012}, {"verified": True})
    assert applied[0].status == "applied" and applied[0].timings == {"X_train": 0.012}
    assert applied[0].verification == {"verified": True} and applied[0].applied_at is not None

    released = ledger.release([b.id], "run-1", "run failed: disk full")
    assert released[0].status == "pending" and released[0].run_id is None
    assert released[0].status_reason == "run failed: disk full"
    rejected = ledger.reject(c.id, "unknown source")
    assert (rejected.status, rejected.status_reason) == ("rejected", "unknown source")

    for bad in (
        lambda: ledger.reject(a.id, "late"),  # applied is final
        lambda: ledger.claim([c.id], "run-3"),  # rejected is final
        lambda: ledger.mark_applied([b.id], "run-1", {}),  # pending cannot be applied
        lambda: ledger.release([b.id], "run-1", "x"),  # pending cannot be released
    ):
        with pytest.raises(LedgerStateError) as info:
            bad()
        assert isinstance(info.value, RuntimeError)

    assert [(e.from_status, e.to_status, e.run_id, e.reason) for e in ledger.events(a.id)] == [
        (None, "pending", None, "filed"),
        ("pending", "running", "run-1", None),
        ("running", "applied", "run-1", None),
    ]
    assert [(e.from_status, e.to_status, e.run_id) for e in ledger.events(b.id)] == [
        (None, "pending", None),
        ("pending", "running", "run-1"),
        ("running", "pending", "run-1"),
    ]
    assert [e.to_status for e in ledger.events(c.id)] == ["pending", "rejected"]
    assert len(ledger.events()) == 8
    assert [r.id for r in ledger.all(status="rejected")] == [c.id]
    with pytest.raises(RequestError, match="unknown status"):
        ledger.all(status="done")  # type: ignore[arg-type]
    with pytest.raises(UnknownRequestError, match="no deletion request with id 42"):
        ledger.get(42)


def test_non_json_timings_change_nothing(ledger: Ledger) -> None:
    request = ledger.submit("p", "s", [1])
    ledger.claim(request.id, "r")
    with pytest.raises(RequestError, match="timings must be JSON"):
        ledger.mark_applied([request.id], "r", {"t": {1, 2}})
    assert ledger.get(request.id).status == "running"


def test_ledger_is_append_only(ledger: Ledger, db: str) -> None:
    ledger.submit("p", "s", [1])
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        for sql in (
            "DELETE FROM lester_requests",
            "DELETE FROM lester_request_events",
            "UPDATE lester_request_events SET reason = 'x'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)


def test_watermark_and_deleted_keys_and_values(ledger: Ledger) -> None:
    assert ledger.watermark("p") == 0
    a = ledger.submit("p", "customers", [1, 2])
    b = ledger.submit("p", "customers", [2, 3])
    c = ledger.submit("p", "customers", [4])
    v = ledger.submit("p", "mails", [["m", 1]], kind="value", columns=["subject", "body"])
    w = ledger.submit("p", "mails", [["m", 2]], kind="value", columns=["subject"])
    ledger.submit("q", "customers", [9])
    assert ledger.deleted_keys("p", "customers") == []  # pending requests are not in effect
    ledger.claim([a.id, b.id, v.id, w.id], "r")
    assert ledger.deleted_keys("p", "customers") == [1, 2, 3]  # running ones are
    ledger.mark_applied([a.id, v.id], "r", {})
    ledger.release([b.id], "r", "failed")
    assert ledger.deleted_keys("p", "customers") == [1, 2]
    assert ledger.deleted_values("p", "mails") == {
        "subject": [("m", 1), ("m", 2)],
        "body": [("m", 1)],
    }
    assert ledger.deleted_values("p", "customers") == {}
    assert ledger.watermark("p") == v.id
    ledger.claim([c.id], "r2")
    ledger.mark_applied([c.id], "r2", {})
    assert ledger.watermark("p") == v.id  # the highest applied id, not the latest applied
    assert ledger.watermark("q") == 0


def test_reopening_keeps_everything(db: str) -> None:
    first = Ledger(db)
    made = first.submit("p", "s", [("a", 1)], requested_by="x")
    first.claim([made.id], "r")
    first.close()
    again = Ledger(db)
    assert again.get(made.id) == first.get(made.id)
    assert again.get(made.id).status == "running"
    assert len(again.events(made.id)) == 2
    assert again.submit("p", "s", [["a", 1]]).id == made.id  # idempotent across objects
    assert again.submit("p", "s", [5]).id == made.id + 1


def test_urls_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert default_ledger_path() == tmp_path / "dh" / "lester" / "ledger.db"
    assert Ledger().url == f"sqlite:///{tmp_path / 'dh' / 'lester' / 'ledger.db'}"
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("LESTER_HOME", str(tmp_path / "lh"))
    assert default_ledger_path() == tmp_path / "lh" / "ledger.db"
    pg = Ledger("postgresql+psycopg2://user:secret@db.example/ledger")  # accepted, not opened
    assert "secret" not in repr(pg) and pg.url.startswith("postgresql+psycopg2://user:")
    with pytest.raises(LedgerError, match="cannot use 'nosuchdb://x'"):
        Ledger("nosuchdb://x")
    with pytest.raises(LedgerError, match="cannot use"):
        Ledger("not a url")
    memory = Ledger("sqlite://")
    assert memory.submit("p", "s", [1]).id == 1 and memory.get(1).keys == (1,)


def _claim_all(db: str, ids: list[int], run_id: str, start: Any, out: Any) -> None:
    ledger = Ledger(db)
    won: list[int] = []
    start.wait()
    for request_id in ids:
        try:
            ledger.claim([request_id], run_id)
            won.append(request_id)
        except LedgerStateError:
            pass
    ledger.submit("p", "race", [1, 2, 3])  # both file the same request: one row
    out.put((run_id, won))


def test_two_processes_racing_to_claim_never_double_claim(ledger: Ledger, db: str) -> None:
    ids = [ledger.submit("p", "s", [i]).id for i in range(40)]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    out = context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(db, ids[::step], f"run-{n}", start, out))
        for n, step in ((1, 1), (2, -1))  # one claims in id order, the other in reverse
    ]
    for worker in workers:
        worker.start()
    start.set()
    results = dict(out.get(timeout=20) for _ in workers)
    for worker in workers:
        worker.join(timeout=20)
        assert worker.exitcode == 0
    won1, won2 = results["run-1"], results["run-2"]
    assert not set(won1) & set(won2)
    assert sorted(won1 + won2) == ids
    for request in ledger.all(pipeline="p", status="running"):
        expected = "run-1" if request.id in won1 else "run-2"
        assert request.run_id == expected
        assert [e.to_status for e in ledger.events(request.id)] == ["pending", "running"]
    assert len([r for r in ledger.all() if r.source == "race"]) == 1


def test_request_is_frozen(ledger: Ledger) -> None:
    request: Request = ledger.submit("p", "s", [1])
    with pytest.raises(AttributeError):
        request.status = "applied"  # type: ignore[misc]
