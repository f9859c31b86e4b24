"""Deletion requests in Dagster: the IVM job, the sensor that launches it, and the job that
files a request from the launchpad.

* ``<pipeline>_apply_deletions`` (op ``<pipeline>_apply``): claims the requests named in its run
  config in the ledger, applies them to the stored artifacts by IVM
  (:func:`~lester_dagster.orchestration.forgetting.apply_deletions`), logs one
  ``AssetMaterialization`` per committed artifact (asset and partition, with
  ``lester/requests_applied``, ``lester/update_strategy``, rows before/after, seconds, and the
  row segments it wrote and linked: ``lester/segments_written``, ``lester/segments_linked``,
  ``lester/segment_bytes_written``), verifies
  its requests on every artifact they reached (found from provenance before the update) or
  that it committed (:func:`~lester_dagster.orchestration.verify.verify_assets` with a
  ``scope``, without the model's refit; the other artifacts held no row of them, and
  ``lester-dagster verify`` checks everything against every request), and only then marks
  the requests applied with the run id, per-artifact timings and the verification. A failure
  puts the requests back to pending with the error; re-executing the run (or the sensor's
  next batch) completes them: artifacts already updated are skipped.
* ``<pipeline>_deletion_sensor``: each tick reads the pending requests filed after its cursor
  (the highest request id it has handed to a run), finds the artifacts they reach through the
  stored provenance (:func:`~lester_dagster.orchestration.reach.affected_targets`) and
  requests one run for the batch, tagged with the request ids and the targets. The cursor and
  the run key (the request ids) make it exactly-once.
* ``forget_job`` (op ``file_deletion_request``): files one request from run config (so it can be
  filed from the UI launchpad), validated like ``lester-dagster forget``.

Why an op job and not an asset job: a deletion touches a few partitions of several assets and
the unpartitioned model in one atomic batch, while a Dagster run targets one partition (or a
range) of its assets. The op reports exactly the (asset, partition) pairs it changed as
materialisations, so the UI's asset pages show each IVM update beside the full
materialisations.
"""

# No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of
# op and sensor functions by identity, so annotations must be real objects, not strings.

import json

import dagster as dg
import numpy as np
from pydantic import Field

from lester_dagster.errors import LedgerStateError, LesterError
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.forgetting import ApplyReport, Commit, apply_deletions
from lester_dagster.orchestration.gc_scope import young_collections_only
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.reach import affected_targets
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.verify import verify_assets
from lester_dagster.store.ledger import Ledger
from lester_dagster.store.requests import Request

__all__ = [
    "REQUESTS_TAG",
    "apply_job_name",
    "apply_op_name",
    "build_apply_job",
    "build_deletion_sensor",
    "sensor_name",
]

REQUESTS_TAG = "lester/requests"
TARGETS_TAG = "lester/targets"
_FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


def apply_op_name(pipeline_name: str) -> str:
    """The IVM op of a pipeline: ``<name>_apply`` (op names are unique in a code location)."""
    return f"{pipeline_name}_apply"


def apply_job_name(pipeline_name: str) -> str:
    """The IVM job of a pipeline: ``<name>_apply_deletions``."""
    return f"{pipeline_name}_apply_deletions"


def sensor_name(pipeline_name: str) -> str:
    """The deletion sensor of a pipeline: ``<name>_deletion_sensor``."""
    return f"{pipeline_name}_deletion_sensor"


class ApplyDeletionsConfig(dg.Config):
    """Run config of the IVM op."""

    request_ids: list[int] = Field(description="Ids of the ledger requests to apply.")
    targets: list[str] = Field(
        default_factory=list,
        description="The artifacts (asset or asset[partition]) the sensor found the requests "
        "reach; informational, the op finds them again from the stored provenance.",
    )


def _label(key: dg.AssetKey, partition: str | None) -> str:
    name = key.to_user_string()
    return f"{name}[{partition}]" if partition is not None else name


def _claim(
    ledger: Ledger, ids: list[int], run_id: str, context: dg.OpExecutionContext
) -> list[Request]:
    """Claim ``ids`` for this run; requests still marked running by a run that is over (it was
    killed) are released first; applied ones are skipped."""
    todo: list[int] = []
    for request in (ledger.get(i) for i in ids):
        if request.status == "applied":
            context.log.info(f"request #{request.id} was already applied by {request.run_id}")
            continue
        if request.status == "rejected":
            raise LedgerStateError(
                f"request #{request.id} was rejected ({request.status_reason}); it cannot be "
                "applied. Remove it from the run config"
            )
        if request.status == "running" and request.run_id != run_id:
            previous = context.instance.get_run_by_id(request.run_id or "")
            if previous is not None and previous.status not in _FINISHED:
                raise LedgerStateError(
                    f"request #{request.id} is being applied by run {request.run_id} "
                    f"({previous.status.value}); wait for it or terminate it first"
                )
            ledger.release(
                request.id,
                request.run_id or "",
                f"run {request.run_id} ended without applying it; re-applied by {run_id}",
            )
        if request.status != "running" or request.run_id != run_id:
            todo.append(request.id)
    if todo:
        ledger.claim(todo, run_id)
    return [ledger.get(i) for i in todo]


def build_apply_job(built: PipelineAssets, io_manager_key: str) -> dg.JobDefinition:
    """The IVM job of a pipeline (see the module docstring)."""
    pipeline = built.pipeline

    @dg.op(
        name=apply_op_name(pipeline.name),
        required_resource_keys={io_manager_key, LEDGER_KEY},
        description=f"Apply pending deletion requests of {pipeline.name!r} to its stored "
        "artifacts by IVM, commit each artifact atomically, then mark the requests applied.",
        tags={"kind": "lester"},
    )
    def _apply(context: dg.OpExecutionContext, config: ApplyDeletionsConfig) -> None:
        io: LesterIOManager = getattr(context.resources, io_manager_key)
        ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
        run_id = context.run_id
        with ledger_resource.open() as ledger:
            requests = _claim(ledger, list(config.request_ids), run_id, context)
            if not requests:
                context.log.info("no request left to apply")
                return None
            ids = [r.id for r in requests]
            context.log.info(f"applying requests {ids} to pipeline {pipeline.name!r}")

            def on_commit(commit: Commit) -> None:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=commit.asset_key,
                        partition=commit.partition,
                        description=f"IVM update for deletion request(s) {ids}",
                        metadata={
                            "lester/requests_applied": ids,
                            "lester/update_strategy": commit.strategy,
                            "lester/rows_before": commit.rows_before,
                            "dagster/row_count": commit.rows_after,
                            "lester/seconds": commit.seconds,
                            "lester/manifest_digest": commit.digest,
                            "lester/ledger_watermark": max(ids),
                            **commit.storage,
                        },
                    )
                )

            try:
                with young_collections_only():  # (see gc_scope: no 0.1 s pauses in the run)
                    report: ApplyReport = apply_deletions(
                        pipeline, built, io, requests, run_id=run_id, on_commit=on_commit
                    )
                    # what the requests reached before anything changed (found from
                    # provenance) and what the run committed must now hold nothing of them
                    scope = {
                        *report.reached, *((c.asset_key, c.partition) for c in report.commits)
                    }  # fmt: skip
                    verification = verify_assets(
                        built, io, requests, running=ids, scope=scope
                    ).to_dict()
                verification["scope"] = sorted(_label(k, p) for k, p in scope)
            except Exception as exc:
                ledger.release(ids, run_id, f"{type(exc).__name__}: {exc}")
                raise
            if not verification["ok"]:
                ledger.release(ids, run_id, "verification failed: " + "; ".join(
                    verification["violations"][:5]
                ))  # fmt: skip
                raise LesterError(
                    "deletion applied but verification found data left behind: "
                    + "; ".join(verification["violations"][:5])
                )
            verification["strategies"] = report.strategies
            verification["fallbacks"] = report.fallbacks
            ledger.mark_applied(ids, run_id, report.timings, verification)
            context.log.info(
                f"applied requests {ids}: {len(report.commits)} artifact(s) committed in "
                f"{report.seconds * 1000:.1f} ms; verification ok "
                f"({verification['artifacts_checked']} artifacts checked)"
            )
        return None

    @dg.job(
        name=apply_job_name(pipeline.name),
        description=f"Forget deleted records and values in every artifact of {pipeline.name!r} "
        "by incremental view maintenance (launched by the deletion sensor).",
        tags={"lester/pipeline": pipeline.name},
        executor_def=dg.in_process_executor,  # one op: no process per step, a faster start
    )
    def _job() -> None:
        _apply()

    return _job


def build_deletion_sensor(
    built: PipelineAssets,
    job: dg.JobDefinition,
    io_manager_key: str,
    *,
    minimum_interval_seconds: int = 2,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The deletion sensor of a pipeline (see the module docstring)."""
    pipeline = built.pipeline

    @dg.sensor(
        name=sensor_name(pipeline.name),
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        required_resource_keys={io_manager_key, LEDGER_KEY},
        description=f"Batch pending deletion requests of {pipeline.name!r} and launch the IVM "
        "run on exactly the artifacts they reach.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        io: LesterIOManager = getattr(context.resources, io_manager_key)
        ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
        cursor = int(context.cursor) if context.cursor else 0
        with ledger_resource.open() as ledger:
            pending = [r for r in ledger.pending(pipeline.name) if r.id > cursor]
        if not pending:
            return dg.SkipReason(f"no pending deletion request after #{cursor}")
        ids = sorted(r.id for r in pending)
        try:
            targets = affected_targets(pipeline, built, io, pending)
        except LesterError as exc:
            return dg.SkipReason(f"requests {ids} wait: {exc}")
        labels = [_label(k, p) for k, p in targets]
        op = apply_op_name(pipeline.name)
        run_config = {"ops": {op: {"config": {"request_ids": ids, "targets": labels}}}}
        run = dg.RunRequest(
            run_key=f"{pipeline.name}-deletions-" + "-".join(map(str, ids)),
            run_config=run_config,
            tags={
                REQUESTS_TAG: ",".join(map(str, ids)),
                TARGETS_TAG: json.dumps(labels)[:4000],
                "lester/pipeline": pipeline.name,
            },
        )
        context.log.info(f"requests {ids} reach {len(labels)} artifact(s): {labels}")
        return dg.SensorResult(run_requests=[run], cursor=str(int(np.max(ids))))

    return _sensor
