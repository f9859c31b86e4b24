"""forget_job: filing a deletion request from run config (the launchpad)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.errors import RequestError
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import IO_MANAGER_KEY, build_definitions
from lester_dagster.orchestration.forget_job import (
    FORGET_JOB,
    FORGET_OP,
    build_forget_job,
    parse_key,
)
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.store.ledger import Ledger

from .test_forgetting import materialise_all

CUSTOMERS = 120


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, LesterIOManager, Path]:
    tmp = tmp_path_factory.mktemp("forget_job")
    customers, _ = write_complaints(tmp / "data", CUSTOMERS, seed=3)
    pipeline = make_pipeline(customers.parent, CUSTOMERS)
    return pipeline, materialise_all(pipeline, tmp / "store"), tmp


def _run(stored: tuple[Any, LesterIOManager, Path], url: str, config: dict[str, Any]) -> Any:
    pipeline, io, _ = stored
    defs = build_definitions(pipeline, io_manager=io, ledger=LesterLedger(url=url))
    job = defs.resolve_job_def(FORGET_JOB)
    return job.execute_in_process(
        run_config={"ops": {FORGET_OP: {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_files_the_request_with_keys_coerced(stored: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = _run(stored, url, {"source": "customers", "keys": ["3", "5"], "reason": "test"})
    assert result.success
    request_id = result.output_for_node(FORGET_OP)
    with Ledger(url) as ledger:
        request = ledger.get(request_id)
    assert request.keys == (3, 5) and request.kind == "instance" and request.status == "pending"
    assert request.reason == "test" and "dagster run" in (request.requested_by or "")


def test_value_deletion_and_idempotency(stored: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = {"source": "mails", "keys": ["1"], "columns": ["subject"]}
    first = _run(stored, url, config).output_for_node(FORGET_OP)
    second = _run(stored, url, config).output_for_node(FORGET_OP)
    assert first == second
    with Ledger(url) as ledger:
        assert ledger.get(first).columns == ("subject",)
        assert len(ledger.all()) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"source": "nope", "keys": ["1"]}, "nope"),
        ({"source": "mails", "keys": ["1"], "columns": ["body"]}, "body"),
        ({"source": "customers", "keys": ["999999"]}, "999999"),
        ({"source": "customers", "keys": ["1"], "on_missing": "maybe"}, "maybe"),
        ({"source": "customers", "keys": ["1"], "pipeline": "other"}, "other"),
    ],
)
def test_a_bad_request_fails_the_run_and_files_nothing(
    stored: Any, tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    result = _run(stored, url, config)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert message in failure.to_string()
    with Ledger(url) as ledger:
        assert ledger.all() == []


def test_composite_keys_and_text_keys() -> None:
    assert parse_key('["us", 42]') == ("us", 42)
    assert parse_key("17") == "17"
    assert parse_key("a@x.org") == "a@x.org"
    with pytest.raises(RequestError, match="JSON"):
        parse_key('["us", 42')


def test_several_pipelines_need_the_pipeline_named(stored: Any, tmp_path: Path) -> None:
    pipeline, io, _ = stored
    other = dataclasses.replace(pipeline, name="other")
    job = build_forget_job({"complaints": (pipeline, None), "other": (other, None)}, IO_MANAGER_KEY)
    result = job.execute_in_process(
        run_config={"ops": {FORGET_OP: {"config": {"source": "customers", "keys": ["1"]}}}},
        resources={IO_MANAGER_KEY: io, LEDGER_KEY: LesterLedger(url=f"sqlite:///{tmp_path}/l.db")},
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert "set `pipeline`" in error.to_string()
