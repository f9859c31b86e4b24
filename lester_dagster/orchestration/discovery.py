"""Finding the pipelines of a code location (a package such as ``definitions/``).

Convention (shared with :func:`~lester_dagster.orchestration.discover_definitions`): each module
of the package whose name does not start with ``_`` may define ``pipeline`` (a
:class:`LesterPipeline`) or ``pipelines`` (a list of them), and optionally ``translator`` (a
:class:`LesterTranslator` for its pipelines). Modules are imported in name order.

* :func:`pipeline_modules`: the package's modules with their pipelines and translators;
* :func:`discover_pipelines`: every pipeline of the package, by name;
* :func:`find_pipeline`: one pipeline by name (or the only one), with an error that lists the
  names otherwise; :func:`find_pipeline_and_translator` also returns its module's translator
  (which decides the pipeline's asset keys).

A package that is not importable from ``sys.path`` is looked up in the current directory too
(the ``lester-dagster`` command runs in the repository root, like ``dagster dev``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

from lester_dagster.errors import PlanError, preview
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = [
    "DEFAULT_PACKAGE",
    "PipelineModule",
    "discover_pipelines",
    "find_pipeline",
    "find_pipeline_and_translator",
    "pipeline_modules",
]

DEFAULT_PACKAGE = "definitions"
"""The code location of this repository (``workspace.yaml``)."""


@dataclass(frozen=True)
class _Found:
    pipeline: LesterPipeline
    translator: LesterTranslator | None
    module: str


def _pipelines_of(module: ModuleType) -> list[LesterPipeline]:
    """The pipelines a module defines (``pipeline`` and/or ``pipelines``), checked."""
    found: list[LesterPipeline] = []
    single = getattr(module, "pipeline", None)
    if single is not None:
        found.append(single)
    many = getattr(module, "pipelines", None)
    if many is not None:
        if not isinstance(many, Iterable):
            raise PlanError(f"{module.__name__}.pipelines must be a list of LesterPipeline")
        found.extend(many)
    for p in found:
        if not isinstance(p, LesterPipeline):
            raise PlanError(
                f"{module.__name__} defines a pipeline that is a {type(p).__name__}, not a "
                "LesterPipeline; see lester_dagster.orchestration.definitions for the convention"
            )
    return found


def _import_package(package: str) -> ModuleType:
    if not isinstance(package, str) or not package:
        raise PlanError(
            f"package must be a Python package name such as 'definitions', got {package!r}"
        )
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        root = package.split(".")[0]
        here = os.getcwd()
        if exc.name != root or here in sys.path:
            raise PlanError(
                f"cannot import the pipeline package {package!r}: {exc}. Run the command in the "
                "directory that holds the package (the repository root), or pass its name with "
                "--package / package="
            ) from exc
    sys.path.insert(0, here)  # like `dagster dev`'s working_directory
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        sys.path.remove(here)
        raise PlanError(
            f"cannot import the pipeline package {package!r} (looked on sys.path and in {here}): "
            f"{exc}. Run the command in the directory that holds the package, or pass its name "
            "with --package / package="
        ) from exc


@dataclass(frozen=True)
class PipelineModule:
    """A module of a pipeline package: its pipelines and its translator (if any)."""

    module: ModuleType
    translator: LesterTranslator | None
    pipelines: tuple[LesterPipeline, ...]


def pipeline_modules(package: str, *, look_in_cwd: bool = True) -> list[PipelineModule]:
    """The modules of ``package`` (name order, ``_private`` ones skipped) with their pipelines,
    checked: translators are LesterTranslators and pipeline names are unique across modules.
    ``look_in_cwd``: a package not importable from ``sys.path`` is looked up in the current
    directory too."""
    root = _import_package(package) if look_in_cwd else importlib.import_module(package)
    paths = getattr(root, "__path__", None)
    if paths is None:
        raise PlanError(f"{package!r} is a module, not a package; pass the package's name")
    out: list[PipelineModule] = []
    owner: dict[str, str] = {}
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
        pipelines = _pipelines_of(module)
        for pipeline in pipelines:
            if pipeline.name in owner:
                raise PlanError(
                    f"two pipelines are named {pipeline.name!r} ({owner[pipeline.name]} and "
                    f"{module.__name__}); pipeline names name groups, jobs and schedules, so "
                    "rename one"
                )
            owner[pipeline.name] = module.__name__
        out.append(PipelineModule(module, translator, tuple(pipelines)))
    return out


def _discover(package: str) -> dict[str, _Found]:
    return {
        pipeline.name: _Found(pipeline, found.translator, found.module.__name__)
        for found in pipeline_modules(package)
        for pipeline in found.pipelines
    }


def discover_pipelines(package: str = DEFAULT_PACKAGE) -> dict[str, LesterPipeline]:
    """Every pipeline of the modules of ``package``, by name (see the module docstring)."""
    return {name: f.pipeline for name, f in _discover(package).items()}


def find_pipeline_and_translator(
    name: str | None, package: str = DEFAULT_PACKAGE
) -> tuple[LesterPipeline, LesterTranslator | None]:
    """The pipeline called ``name`` in ``package`` (``None``: the only one) and the translator
    its module defines (``None``: the default)."""
    found = _discover(package)
    if name is None:
        if len(found) == 1:
            (only,) = found.values()
            return only.pipeline, only.translator
        if not found:
            raise PlanError(
                f"package {package!r} defines no pipeline; add a module defining "
                "`pipeline = LesterPipeline(...)` or pass another package"
            )
        raise PlanError(
            f"package {package!r} defines {len(found)} pipelines ({preview(sorted(found))}); "
            "say which one with --pipeline NAME / pipeline=NAME"
        )
    if name not in found:
        raise PlanError(
            f"no pipeline named {name!r} in package {package!r}; its pipelines are "
            f"{preview(sorted(found))}"
        )
    return found[name].pipeline, found[name].translator


def find_pipeline(name: str | None, package: str = DEFAULT_PACKAGE) -> LesterPipeline:
    """The pipeline called ``name`` in ``package``; ``None``: the only pipeline there (an error
    listing the names if there are several or none)."""
    return find_pipeline_and_translator(name, package)[0]
