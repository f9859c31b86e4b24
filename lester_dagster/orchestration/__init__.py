"""Dagster integration: a declarative pipeline as assets with row and column provenance.

Declare a :class:`LesterPipeline` (sources, ``prepare``, split, features, label, model) and
turn it into ``dagster.Definitions`` with :func:`build_definitions`; :class:`LesterTranslator`
decides asset keys, groups, descriptions, tags, kinds and code versions (subclass it to change
them); :class:`LesterIOManager` stores every artifact atomically through
:mod:`lester_dagster.store`. See :mod:`~lester_dagster.orchestration.metadata` for the
metadata on each materialisation and :mod:`~lester_dagster.orchestration.checks` for the
asset checks.
"""

from __future__ import annotations

from lester_dagster.orchestration.artifacts import FrameArtifact, LabelsArtifact
from lester_dagster.orchestration.assets import IO_MANAGER_KEY, PipelineAssets, build_assets
from lester_dagster.orchestration.checks import build_checks
from lester_dagster.orchestration.definitions import (
    build_definitions,
    discover_definitions,
    job_name,
    pipeline_resources,
    schedule_name,
)
from lester_dagster.orchestration.discovery import discover_pipelines, find_pipeline
from lester_dagster.orchestration.io_manager import (
    LesterIOManager,
    default_base_path,
    lester_home,
)
from lester_dagster.orchestration.metadata import LEDGER_WATERMARK
from lester_dagster.orchestration.pipeline import (
    LesterPipeline,
    SourceSpec,
    SplitSpec,
    Step,
)
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.submit import forget, submit_deletion
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = [
    "IO_MANAGER_KEY",
    "LEDGER_KEY",
    "LEDGER_WATERMARK",
    "FrameArtifact",
    "LabelsArtifact",
    "LesterIOManager",
    "LesterLedger",
    "LesterPipeline",
    "LesterTranslator",
    "PipelineAssets",
    "SourceSpec",
    "SplitSpec",
    "Step",
    "build_assets",
    "build_checks",
    "build_definitions",
    "default_base_path",
    "discover_definitions",
    "discover_pipelines",
    "find_pipeline",
    "forget",
    "job_name",
    "lester_home",
    "pipeline_resources",
    "schedule_name",
    "submit_deletion",
]
