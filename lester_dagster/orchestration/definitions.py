"""Dagster definitions of pipelines: assets, checks, a job, a nightly schedule, the IO manager.

* :func:`build_definitions`: one pipeline -> ``dagster.Definitions`` with its assets, asset
  checks, the job ``<name>_job`` (every asset, from the sources), the schedule
  ``<name>_nightly`` running that job on ``pipeline.schedule`` (a cron; created stopped, turn
  it on in the UI; for a partitioned pipeline an automation sensor of that name instead, which
  rematerialises every partition as one backfill: :mod:`lester_dagster.orchestration.nightly`),
  the IVM job ``<name>_apply_deletions`` with the sensor
  ``<name>_deletion_sensor`` that launches it (:mod:`lester_dagster.orchestration.deletions`),
  ``forget_job`` (file a deletion request from the launchpad), and the IO manager and ledger
  resources.
* :func:`discover_definitions`: every pipeline module in a package (the code location
  ``definitions/``) merged into one ``Definitions``.

Discovery convention: each module of the package whose name does not start with ``_`` may
define ``pipeline`` (a :class:`LesterPipeline`) or ``pipelines`` (a list of them), optionally
``translator`` (a :class:`LesterTranslator` for its pipelines), and/or ``defs`` (a ready
``dagster.Definitions``, merged as is). Pipelines share one IO manager and one ledger. Two
pipelines whose assets would get the same key are an error: give one a translator with a
``key_prefix``.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from lester_dagster.errors import PlanError
from lester_dagster.orchestration.assets import IO_MANAGER_KEY, PipelineAssets, build_assets
from lester_dagster.orchestration.checks import build_checks, on_demand_check_keys
from lester_dagster.orchestration.deletions import build_apply_job, build_deletion_sensor
from lester_dagster.orchestration.discovery import pipeline_modules
from lester_dagster.orchestration.forget_job import build_forget_job
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.nightly import nightly_sensor
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = [
    "build_definitions",
    "discover_definitions",
    "job_name",
    "materialize_pipeline",
    "pipeline_resources",
    "schedule_name",
]


def job_name(pipeline: LesterPipeline) -> str:
    """The job that materialises every asset of ``pipeline``: ``<name>_job``."""
    return f"{pipeline.name}_job"


def schedule_name(pipeline: LesterPipeline) -> str:
    """The pipeline's schedule: ``<name>_nightly``."""
    return f"{pipeline.name}_nightly"


def pipeline_resources(
    io_manager: LesterIOManager | None = None,
    ledger: LesterLedger | None = None,
    *,
    io_manager_key: str = IO_MANAGER_KEY,
) -> dict[str, Any]:
    """The resources a pipeline's assets need, for ``dagster.materialize`` outside of a code
    location: the IO manager and the deletion ledger (source assets filter what it deleted)."""
    return {io_manager_key: io_manager or LesterIOManager(), LEDGER_KEY: ledger or LesterLedger()}


def materialize_pipeline(
    pipeline: LesterPipeline,
    io_manager: LesterIOManager,
    ledger: LesterLedger | None = None,
    *,
    translator: LesterTranslator | None = None,
    instance: dg.DagsterInstance | None = None,
    run_config: dict[str, Any] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialise every asset of ``pipeline`` in process, partitions included, in dependency
    order: the sources (each partition), then the prepared rows, train and test (each
    partition: a prepared partition reads all partitions of the other sources), then X, y and
    the model and X_test / y_test. Raises on the first failed run; returns the runs."""
    defs = build_definitions(pipeline, translator, io_manager=io_manager, ledger=ledger)
    built = build_assets(pipeline, translator)
    assets: list[Any] = [*(defs.assets or ()), *(defs.asset_checks or ())]
    resources = pipeline_resources(io_manager, ledger)
    instance = instance or dg.DagsterInstance.ephemeral()
    stages = [
        [built.key("source", name) for name in pipeline.sources],
        [built.key(kind) for kind in ("prepared", "train", "test")],
        [built.key(kind) for kind in ("X_train", "y_train", "model", "X_test", "y_test")],
    ]
    results = []
    for stage in stages:
        groups: dict[tuple[str, ...] | None, list[dg.AssetKey]] = {}
        for key in stage:  # one run per partition key of each partitions definition
            partitions = built.partitions_def(key)
            keys = None if partitions is None else tuple(partitions.get_partition_keys())
            groups.setdefault(keys, []).append(key)
        for keys, selection in groups.items():
            for partition in keys or (None,):
                results.append(
                    dg.materialize(
                        assets,
                        selection=selection,
                        partition_key=partition,
                        resources=resources,
                        instance=instance,
                        run_config=run_config,
                    )
                )
    return results


def _job_selections(built: PipelineAssets) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """The assets of ``<name>_job`` and the sources that need a job of their own: a Dagster job
    holds assets of one partitions definition (plus unpartitioned ones), so a source whose
    partitions differ from the prepared rows' (per-file mails beside key-hash buckets) gets
    ``<name>_<source>_job``."""
    keys = list(built.keys.values())
    defs = {k: built.partitions_def(k) for k in keys}
    shared = defs[built.key("prepared")]
    if shared is None:
        shared = next((d for d in defs.values() if d is not None), None)
    extra = [k for k in keys if defs[k] is not None and defs[k] != shared]
    return [k for k in keys if k not in extra], extra


def build_definitions(
    pipeline: LesterPipeline,
    translator: LesterTranslator | None = None,
    *,
    io_manager: LesterIOManager | None = None,
    io_manager_key: str = IO_MANAGER_KEY,
    ledger: LesterLedger | None = None,
    with_forget_job: bool = True,
) -> dg.Definitions:
    """Dagster definitions of one pipeline (see the module docstring); ``with_forget_job``:
    include ``forget_job`` for this pipeline (:func:`discover_definitions` adds one for all
    pipelines instead)."""
    if not isinstance(pipeline, LesterPipeline):
        raise PlanError(
            f"build_definitions() takes a LesterPipeline, got {type(pipeline).__name__}"
        )
    built = build_assets(pipeline, translator, io_manager_key=io_manager_key)
    main, extra = _job_selections(built)
    # an asset job runs every check of its assets; the expensive ones run on demand only
    on_demand = dg.AssetSelection.checks(*on_demand_check_keys(built))
    job = dg.define_asset_job(
        job_name(pipeline),
        selection=dg.AssetSelection.assets(*main) - on_demand,
        description=f"Materialise every asset of pipeline {pipeline.name!r} from its sources."
        + (" Sources partitioned differently have their own jobs." if extra else "")
        + " The model_equals_refit check runs on demand only (it refits the model).",
        tags={"lester/pipeline": pipeline.name},
    )
    source_jobs = [
        dg.define_asset_job(
            f"{pipeline.name}_{key.to_python_identifier()}_job",
            selection=dg.AssetSelection.assets(key),
            description=f"Materialise source {key.to_user_string()} of {pipeline.name!r} (its "
            "partitions differ from the rest of the pipeline, so it cannot share its job).",
            tags={"lester/pipeline": pipeline.name},
        )
        for key in extra
    ]
    schedules = []
    nightly: list[dg.SensorDefinition] = []
    partitioned = any(built.partitions_def(key) is not None for key in main)
    if pipeline.schedule and partitioned:  # one run cannot hold every partition: a backfill
        nightly.append(
            nightly_sensor(schedule_name(pipeline), main, pipeline.name, pipeline.schedule)
        )
    elif pipeline.schedule:
        schedules.append(
            dg.ScheduleDefinition(
                name=schedule_name(pipeline),
                cron_schedule=pipeline.schedule,
                job=job,
                description=f"Rematerialise every asset of {pipeline.name!r} from its sources.",
            )
        )
    apply_job = build_apply_job(built, io_manager_key)
    return dg.Definitions(
        assets=list(built.assets),
        asset_checks=build_checks(built),
        jobs=[
            job,
            *source_jobs,
            apply_job,
            *(
                [build_forget_job({pipeline.name: (pipeline, translator)}, io_manager_key)]
                if with_forget_job
                else []
            ),
        ],
        schedules=schedules,
        sensors=[build_deletion_sensor(built, apply_job, io_manager_key), *nightly],
        resources={
            io_manager_key: io_manager or LesterIOManager(),
            LEDGER_KEY: ledger or LesterLedger(),
        },
    )


def _check_unique(parts: list[tuple[str, dg.Definitions]]) -> None:
    owner: dict[dg.AssetKey, str] = {}
    for where, defs in parts:
        for asset in defs.assets or ():
            if isinstance(asset, dg.AssetsDefinition):
                keys = list(asset.keys)
            elif isinstance(asset, (dg.AssetSpec, dg.SourceAsset)):
                keys = [asset.key]
            else:  # a cacheable definition: its keys are known only once it is resolved
                continue
            for key in keys:
                if key in owner:
                    raise PlanError(
                        f"asset {key.to_user_string()!r} is defined by both {owner[key]} and "
                        f"{where}; give one pipeline a translator with a key_prefix "
                        "(translator = LesterTranslator(key_prefix='...') in its module)"
                    )
                owner[key] = where


def discover_definitions(
    package: str,
    *,
    io_manager: LesterIOManager | None = None,
    ledger: LesterLedger | None = None,
) -> dg.Definitions:
    """One ``Definitions`` for every pipeline module of ``package`` (see the convention in the
    module docstring); modules are imported in name order."""
    manager = io_manager or LesterIOManager()
    shared_ledger = ledger or LesterLedger()
    pipelines: dict[str, tuple[LesterPipeline, LesterTranslator | None]] = {}
    parts: list[tuple[str, dg.Definitions]] = []
    for found in pipeline_modules(package, look_in_cwd=False):
        name = found.module.__name__
        for pipeline in found.pipelines:
            defs = build_definitions(
                pipeline,
                found.translator,
                io_manager=manager,
                ledger=shared_ledger,
                with_forget_job=False,
            )
            pipelines[pipeline.name] = (pipeline, found.translator)
            parts.append((f"{name} ({pipeline.name})", defs))
        extra = getattr(found.module, "defs", None)
        if isinstance(extra, dg.Definitions):
            parts.append((f"{name}.defs", extra))
    _check_unique(parts)
    if pipelines:
        forget = build_forget_job(pipelines, IO_MANAGER_KEY)
        parts.append(("forget_job", dg.Definitions(jobs=[forget])))
    if not parts:
        return dg.Definitions(resources={IO_MANAGER_KEY: manager, LEDGER_KEY: shared_ledger})
    return dg.Definitions.merge(*(defs for _, defs in parts))
