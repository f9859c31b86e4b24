"""``forget_job``: file a deletion request from the Dagster UI's launchpad.

The job's one op, ``file_deletion_request``, takes the request as run config and files it
exactly as ``lester-dagster forget`` does (:func:`~lester_dagster.orchestration.submit_deletion`:
checked against the source table; a bad request fails the run with the reason and files
nothing). The pipeline's deletion sensor then applies it. Launchpad example::

    ops:
      file_deletion_request:
        config:
          pipeline: complaints        # optional with a single pipeline
          source: customers
          keys: ["17", "42"]          # text; a JSON list for a composite key: '["us", 42]'
          columns: []                 # empty: forget the records; else only these values
          reason: "GDPR art. 17 request 2026-118"
"""

# No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of
# op functions by identity, so annotations must be real objects, not strings.

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from lester_dagster.errors import RequestError
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.submit import submit_deletion
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = ["FORGET_JOB", "FORGET_OP", "ForgetConfig", "build_forget_job", "parse_key"]

FORGET_JOB = "forget_job"
FORGET_OP = "file_deletion_request"


class ForgetConfig(dg.Config):
    """A deletion request, as the launchpad takes it."""

    pipeline: str | None = Field(
        default=None, description="The pipeline's name (optional if there is only one)."
    )
    source: str = Field(description="The source whose records (or values) to forget.")
    keys: list[str] = Field(
        description="The records' keys as text (coerced to the key column's type), or values "
        "of the `by` column; a composite key as a JSON list, e.g. '[\"us\", 42]'."
    )
    columns: list[str] = Field(
        default_factory=list,
        description="Empty: forget the whole records. Else forget only these columns' values.",
    )
    by: str | None = Field(
        default=None, description="Identify records by this column (e.g. email) instead of key."
    )
    reason: str | None = Field(default=None, description="Why (kept in the audit trail).")
    requested_by: str | None = Field(default=None, description="Who asked.")
    on_missing: str = Field(
        default="reject",
        description="Keys not in the source: 'reject' the request, or file it as a 'noop'.",
    )


def parse_key(text: str) -> Any:
    """A key given as text: a JSON list is a composite key, anything else stays text (the
    submission coerces it to the key column's type)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise RequestError(
                f"key {text!r} starts like a JSON list (a composite key) but is not valid JSON "
                f"({exc.msg}); write it as '[\"us\", 42]'"
            ) from exc
        if isinstance(value, list):
            return tuple(value)
    return text


def build_forget_job(
    pipelines: Mapping[str, tuple[LesterPipeline, LesterTranslator | None]],
    io_manager_key: str,
) -> dg.JobDefinition:
    """``forget_job`` for these pipelines (name -> pipeline and its translator)."""
    names = sorted(pipelines)

    @dg.op(
        name=FORGET_OP,
        required_resource_keys={io_manager_key, LEDGER_KEY},
        description="File a deletion request (checked against the source table); the "
        "pipeline's deletion sensor then applies it by IVM.",
        tags={"kind": "lester"},
    )
    def _file(context: dg.OpExecutionContext, config: ForgetConfig) -> dg.Output[int]:
        name = config.pipeline
        if name is None:
            if len(names) != 1:
                raise RequestError(
                    f"there are {len(names)} pipelines ({names}); set `pipeline` in the run "
                    "config to one of them"
                )
            name = names[0]
        if name not in pipelines:
            raise RequestError(f"unknown pipeline {name!r}; pipelines: {names}")
        if config.on_missing not in ("reject", "noop"):
            raise RequestError(f"on_missing must be 'reject' or 'noop', got {config.on_missing!r}")
        pipeline, translator = pipelines[name]
        io: LesterIOManager = getattr(context.resources, io_manager_key)
        ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
        with ledger_resource.open() as ledger:
            request = submit_deletion(
                pipeline,
                ledger,
                config.source,
                [parse_key(k) for k in config.keys],
                columns=config.columns,
                by=config.by,
                on_missing="noop" if config.on_missing == "noop" else "reject",
                requested_by=config.requested_by or f"dagster run {context.run_id}",
                reason=config.reason,
                io_manager=io,
                translator=translator,
            )
        context.log.info(
            f"request #{request.id} ({request.kind} deletion of {len(request.keys)} key(s) of "
            f"{request.source!r}) is {request.status}; the sensor "
            f"{name}_deletion_sensor applies it"
        )
        return dg.Output(
            request.id,
            metadata={
                "lester/request_id": request.id,
                "lester/status": request.status,
                "lester/kind": request.kind,
                "lester/keys": len(request.keys),
            },
        )

    @dg.job(
        name=FORGET_JOB,
        description="File a deletion request from the launchpad (see the op's config).",
        tags={"lester/kind": "deletion-request"},
        executor_def=dg.in_process_executor,
    )
    def _job() -> None:
        _file()

    return _job
