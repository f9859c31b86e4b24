"""Dagster definitions of pipelines: assets, checks, a job, a nightly schedule, the IO manager.

* :func:`build_definitions`: one pipeline -> ``dagster.Definitions`` with its assets, asset
  checks, the job ``<name>_job`` (every asset, from the sources), the schedule
  ``<name>_nightly`` running that job on ``pipeline.schedule`` (a cron; created stopped, turn
  it on in the UI) and the IO manager resource.
* :func:`discover_definitions`: every pipeline module in a package (the code location
  ``definitions/``) merged into one ``Definitions``.

Discovery convention: each module of the package whose name does not start with ``_`` may
define ``pipeline`` (a :class:`LesterPipeline`) or ``pipelines`` (a list of them), optionally
``translator`` (a :class:`LesterTranslator` for its pipelines), and/or ``defs`` (a ready
``dagster.Definitions``, merged as is). Pipelines share one IO manager. Two pipelines whose
assets would get the same key are an error: give one a translator with a ``key_prefix``.
"""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

from lester_dagster.errors import PlanError
from lester_dagster.orchestration.assets import IO_MANAGER_KEY, build_assets
from lester_dagster.orchestration.checks import build_checks
from lester_dagster.orchestration.discovery import _pipelines_of
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = ["build_definitions", "discover_definitions", "job_name", "schedule_name"]


def job_name(pipeline: LesterPipeline) -> str:
    """The job that materialises every asset of ``pipeline``: ``<name>_job``."""
    return f"{pipeline.name}_job"


def schedule_name(pipeline: LesterPipeline) -> str:
    """The pipeline's schedule: ``<name>_nightly``."""
    return f"{pipeline.name}_nightly"


def build_definitions(
    pipeline: LesterPipeline,
    translator: LesterTranslator | None = None,
    *,
    io_manager: LesterIOManager | None = None,
    io_manager_key: str = IO_MANAGER_KEY,
) -> dg.Definitions:
    """Dagster definitions of one pipeline (see the module docstring)."""
    if not isinstance(pipeline, LesterPipeline):
        raise PlanError(
            f"build_definitions() takes a LesterPipeline, got {type(pipeline).__name__}"
        )
    built = build_assets(pipeline, translator, io_manager_key=io_manager_key)
    job = dg.define_asset_job(
        job_name(pipeline),
        selection=dg.AssetSelection.assets(*built.keys.values()),
        description=f"Materialise every asset of pipeline {pipeline.name!r} from its sources.",
        tags={"lester/pipeline": pipeline.name},
    )
    schedules = []
    if pipeline.schedule:
        schedules.append(
            dg.ScheduleDefinition(
                name=schedule_name(pipeline),
                cron_schedule=pipeline.schedule,
                job=job,
                description=f"Rematerialise every asset of {pipeline.name!r} from its sources.",
            )
        )
    return dg.Definitions(
        assets=list(built.assets),
        asset_checks=build_checks(built),
        jobs=[job],
        schedules=schedules,
        resources={io_manager_key: io_manager or LesterIOManager()},
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
    package: str, *, io_manager: LesterIOManager | None = None
) -> dg.Definitions:
    """One ``Definitions`` for every pipeline module of ``package`` (see the convention in the
    module docstring); modules are imported in name order."""
    root = importlib.import_module(package)
    paths = getattr(root, "__path__", None)
    if paths is None:
        raise PlanError(f"{package!r} is a module, not a package; pass the package's name")
    manager = io_manager or LesterIOManager()
    parts: list[tuple[str, dg.Definitions]] = []
    names: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(paths), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        translator = getattr(module, "translator", None)
        if translator is not None and not isinstance(translator, LesterTranslator):
            raise PlanError(
                f"{module.__name__}.translator must be a LesterTranslator, got "
                f"{type(translator).__name__}"
            )
        for pipeline in _pipelines_of(module):
            if pipeline.name in names:
                raise PlanError(
                    f"two pipelines are named {pipeline.name!r} ({names[pipeline.name]} and "
                    f"{module.__name__}); pipeline names name groups, jobs and schedules, so "
                    "rename one"
                )
            names[pipeline.name] = module.__name__
            defs = build_definitions(pipeline, translator, io_manager=manager)
            parts.append((f"{module.__name__} ({pipeline.name})", defs))
        extra = getattr(module, "defs", None)
        if isinstance(extra, dg.Definitions):
            parts.append((f"{module.__name__}.defs", extra))
    _check_unique(parts)
    if not parts:
        return dg.Definitions(resources={IO_MANAGER_KEY: manager})
    return dg.Definitions.merge(*(defs for _, defs in parts))
