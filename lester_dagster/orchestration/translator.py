"""The translator: how a pipeline's steps become Dagster asset specs (dagster-dbt style).

Subclass :class:`LesterTranslator` and override any ``get_*`` method to change asset keys,
groups, descriptions, tags, kinds, owners or code versions; pass the instance to
:func:`~lester_dagster.orchestration.build_definitions`::

    class Prefixed(LesterTranslator):
        def get_asset_key(self, pipeline, step):
            return super().get_asset_key(pipeline, step).with_prefix("ml")

Code versions are hashes of what a step runs: the source spec, the source text of ``prepare``,
the split, the source text and parameters of the feature encoding, label and model factories.
Change one and Dagster marks the step's asset (and what depends on it) stale in the UI.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

import lester_dagster
from lester_dagster.orchestration.pipeline import LesterPipeline, Step

__all__ = ["LesterTranslator", "fingerprint"]

_DESCRIPTIONS: dict[str, str] = {
    "source": "Source records of {name!r} read from {path} (format {format}, key {key}), with "
    "their key ids and key index.",
    "prepared": "Prepared rows of pipeline {pipeline!r}: the output of prepare(), each row "
    "with its provenance polynomial over the source keys.",
    "train": "Training rows: prepared rows whose {by!r} key hashes outside the test fraction "
    "{fraction} (seed {seed}).",
    "test": "Test rows: prepared rows whose {by!r} key hashes into the test fraction "
    "{fraction} (seed {seed}).",
    "X_train": "Feature matrix of the training rows (the fitted ColumnTransformer's output), "
    "rows keyed by provenance, column ranges per transformer.",
    "y_train": "Labels of the training rows, with the rows' provenance.",
    "model": "The fitted model with its forgetting state (encoders with decremental trackers, "
    "X, y, the model's unlearner): a TrainingState that later deletions update in place.",
    "X_test": "Feature matrix of the test rows, encoded with the model artifact's fitted encoding.",
    "y_test": "Labels of the test rows, with the rows' provenance.",
}


def _source_text(fn: Any) -> str:
    """A callable's source text, or its qualified name when the source is unavailable."""
    if isinstance(fn, functools.partial):
        args = json.dumps(
            [repr(a) for a in fn.args] + sorted(f"{k}={v!r}" for k, v in fn.keywords.items())
        )
        return f"partial({_source_text(fn.func)}, {args})"
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        return f"{getattr(fn, '__module__', '')}.{name}"


def _made_by(factory: Callable[[], Any]) -> str:
    """The factory's source and the repr of what it makes (its parameters)."""
    try:
        made = repr(factory())
    except Exception as exc:  # the pipeline validated the factory; keep the version total
        made = f"<failed: {type(exc).__name__}>"
    return _source_text(factory) + "\n" + made


def fingerprint(*parts: object) -> str:
    """A short, stable hash of ``parts`` (callables by their source text), with the version of
    lester-dagster (whose code runs every step)."""
    h = hashlib.sha256(f"lester-dagster {lester_dagster.__version__}".encode())
    for part in parts:
        text = _source_text(part) if callable(part) else repr(part)
        h.update(b"\0" + text.encode("utf-8"))
    return h.hexdigest()[:16]


class LesterTranslator:
    """Maps a :class:`LesterPipeline` 's steps to Dagster :class:`~dagster.AssetSpec` s.

    ``key_prefix`` prefixes every asset key (give pipelines sharing a code location distinct
    prefixes when their step names would clash).
    """

    def __init__(self, key_prefix: str | Sequence[str] = ()) -> None:
        self.key_prefix: tuple[str, ...] = (
            (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix)
        )

    # -- the overridable parts -----------------------------------------------------------------
    def get_asset_key(self, pipeline: LesterPipeline, step: Step) -> dg.AssetKey:
        """The step's name (prefixed by ``key_prefix``)."""
        return dg.AssetKey([*self.key_prefix, step.name])

    def get_group_name(self, pipeline: LesterPipeline, step: Step) -> str:
        """The pipeline's name."""
        return pipeline.name

    def get_description(self, pipeline: LesterPipeline, step: Step) -> str:
        split = pipeline.split
        values: dict[str, object] = {
            "pipeline": pipeline.name,
            "name": step.name,
            "by": split.by,
            "fraction": split.test_fraction,
            "seed": split.seed,
        }
        if step.kind == "source":
            spec = pipeline.sources[step.name]
            values.update(
                path=spec.path,
                format=spec.format,
                key=list(spec.key_columns) or "content hash",
            )
        text = _DESCRIPTIONS[step.kind].format(**values)
        if step.kind == "prepared" and pipeline.description:
            text = pipeline.description + "\n\n" + text
        return text

    def get_kinds(self, pipeline: LesterPipeline, step: Step) -> set[str]:
        """``pandas`` for row data, ``scikit-learn`` (and ``numpy``) for X, y and the model."""
        if step.kind in ("source", "prepared", "train", "test"):
            return {"pandas"}
        if step.kind in ("X_train", "X_test"):
            return {"scikit-learn", "numpy"}
        return {"scikit-learn"}

    def get_tags(self, pipeline: LesterPipeline, step: Step) -> Mapping[str, str]:
        """The pipeline's tags plus ``lester/step`` (the step kind)."""
        return {**pipeline.tags, "lester/step": step.kind}

    def get_owners(self, pipeline: LesterPipeline, step: Step) -> Sequence[str]:
        return tuple(pipeline.owners)

    def get_metadata(self, pipeline: LesterPipeline, step: Step) -> Mapping[str, Any]:
        """Definition metadata (shown on the asset page before anything is materialised)."""
        meta: dict[str, Any] = {"lester/pipeline": pipeline.name, "lester/step": step.kind}
        if step.kind == "source":
            spec = pipeline.sources[step.name]
            meta["lester/path"] = dg.MetadataValue.path(str(spec.path))
            meta["lester/key_columns"] = list(spec.key_columns)
        if step.kind in ("train", "test"):
            meta["lester/split"] = {
                "by": pipeline.split.by,
                "test_fraction": pipeline.split.test_fraction,
                "seed": pipeline.split.seed,
            }
        return meta

    def get_code_version(self, pipeline: LesterPipeline, step: Step) -> str:
        """A hash of what the step runs (see the module docstring)."""
        if step.kind == "source":
            spec = pipeline.sources[step.name]
            options = sorted((k, repr(v)) for k, v in spec.read_options.items())
            return fingerprint("source", step.name, spec.format, spec.key_columns, options)
        if step.kind == "prepared":
            keys = {s: spec.key_columns for s, spec in pipeline.sources.items()}
            return fingerprint("prepared", pipeline.prepare, keys)
        if step.kind in ("train", "test"):
            return fingerprint(step.kind, pipeline.split)
        labels = ("label", pipeline.label, pipeline.label_inputs)
        if step.kind in ("y_train", "y_test"):  # y depends on the label function only
            return fingerprint(step.kind, *labels)
        return fingerprint(
            step.kind, _made_by(pipeline.features), *labels, _made_by(pipeline.model)
        )

    # -- composed --------------------------------------------------------------------------------
    def get_asset_spec(self, pipeline: LesterPipeline, step: Step) -> dg.AssetSpec:
        """The full spec of ``step``'s asset, built from the methods above."""
        return dg.AssetSpec(
            key=self.get_asset_key(pipeline, step),
            deps=[self.get_asset_key(pipeline, p) for p in pipeline.parents(step)],
            description=self.get_description(pipeline, step),
            group_name=self.get_group_name(pipeline, step),
            code_version=self.get_code_version(pipeline, step),
            kinds=self.get_kinds(pipeline, step),
            tags=self.get_tags(pipeline, step),
            owners=list(self.get_owners(pipeline, step)) or None,
            metadata=self.get_metadata(pipeline, step),
        )
