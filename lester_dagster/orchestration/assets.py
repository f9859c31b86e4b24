"""The asset factory: a :class:`LesterPipeline` as Dagster assets.

The asset graph (keys from the translator; by default the step names)::

    <source> ...  ->  <pipeline name> (prepared rows)  ->  train  ->  X_train, y_train, model
                                                       ->  test   ->  y_test
                                                     test + model ->  X_test

One op per source, one for the prepared rows, one each for train and test, one for
X_train + y_train + model (fitted together: :class:`~lester_dagster.ivm.training.TrainingState`,
stored whole as the model artifact so later deletions can update it), one for X_test (encoded
with the model artifact's fitted encoding) and one for y_test. Every value goes through the IO
manager under ``io_manager_key``; every output carries the metadata of
:mod:`lester_dagster.orchestration.metadata`.

Partitions (see :mod:`lester_dagster.orchestration.partitions`): a multi-file source has one
partition per file; with ``pipeline.partitions`` = N > 0 the other sources are split into N
key-hash buckets. The prepared rows, train and test follow the split source's partitions where
the plan allows it (identity mapping along the split source's chain, all partitions of the other
sources); X, y and the model stay unpartitioned and read all partitions.
"""

# No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of
# asset and check functions by identity, so annotations must be real objects, not strings.

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from lester_dagster.frame import ColumnRef
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.metadata import (
    LEDGER_WATERMARK,
    SourceInfo,
    frame_metadata,
    labels_metadata,
    matrix_metadata,
    model_metadata,
    update_strategies,
)
from lester_dagster.orchestration.nightly import nightly_condition
from lester_dagster.orchestration.partitions import (
    Partitioning,
    plan_partitions,
    source_partition,
)
from lester_dagster.orchestration.pipeline import LesterPipeline, Step, StepKind
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.translator import LesterTranslator

__all__ = ["IO_MANAGER_KEY", "PipelineAssets", "build_assets"]

IO_MANAGER_KEY = "lester_io_manager"
"""The resource key of the IO manager the pipeline's assets use by default."""


@dataclass(frozen=True)
class PipelineAssets:
    """The assets of one pipeline, the asset key of each step and how the steps are
    partitioned (``partitioning``; ``None``: not at all)."""

    pipeline: LesterPipeline
    keys: dict[Step, dg.AssetKey]
    assets: tuple[dg.AssetsDefinition, ...]
    io_manager_key: str
    partitioning: Partitioning | None = None

    def key(self, kind: StepKind, source: str | None = None) -> dg.AssetKey:
        """The asset key of a step (``key("source", "customers")``, ``key("model")``)."""
        if kind == "source":
            if source is None:
                raise ValueError("key('source', name) needs the source's name")
            return self.keys[self.pipeline.source_step(source)]
        return self.keys[self.pipeline.step(kind)]

    def partitions_def(self, key: dg.AssetKey) -> dg.StaticPartitionsDefinition | None:
        """The partitions of asset ``key`` (``None``: unpartitioned): per file, key-hash
        buckets, or the split source's (see :mod:`lester_dagster.orchestration.partitions`)."""
        if self.partitioning is None:
            return None
        for step, k in self.keys.items():
            if k == key:
                return self.partitioning.partitions_def(step)
        raise KeyError(f"{key.to_user_string()} is no asset of pipeline {self.pipeline.name!r}")

    @property
    def partitioned_keys(self) -> frozenset[dg.AssetKey]:
        """The partitioned asset keys (each with its own partitions: :meth:`partitions_def`)."""
        if self.partitioning is None:
            return frozenset()
        return frozenset(
            k for step, k in self.keys.items() if self.partitioning.partitions_def(step)
        )

    @property
    def sources(self) -> SourceInfo:
        """Per source: its asset key and key columns."""
        return {
            name: (self.key("source", name), spec.key_columns)
            for name, spec in self.pipeline.sources.items()
        }


def _watermark(context: AssetExecutionContext, pipeline: str) -> int:
    """The ledger watermark (the highest applied request id of ``pipeline``) right now."""
    ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
    with ledger_resource.open() as ledger:
        return ledger.watermark(pipeline)


def _callable_name(fn: object) -> str:
    """A readable name of a function (of the function a ``functools.partial`` wraps)."""
    inner = getattr(fn, "func", fn)
    return str(getattr(inner, "__qualname__", None) or type(inner).__name__)


class _Factory:
    def __init__(
        self,
        pipeline: LesterPipeline,
        translator: LesterTranslator,
        io_manager_key: str,
        partitioning: Partitioning,
    ) -> None:
        self.pipeline = pipeline
        self.translator = translator
        self.io_manager_key = io_manager_key
        self.partitioning = partitioning
        self.specs = {
            step: self._partitioned(
                step, translator.get_asset_spec(pipeline, step).with_io_manager_key(io_manager_key)
            )
            for step in pipeline.steps
        }
        if pipeline.schedule and any(s.partitions_def is not None for s in self.specs.values()):
            # a partitioned pipeline's nightly run is declarative automation
            # (orchestration.nightly); a condition the translator set stays
            nightly = nightly_condition(pipeline.schedule)
            self.specs = {
                step: spec
                if spec.automation_condition is not None
                else spec.replace_attributes(automation_condition=nightly)
                for step, spec in self.specs.items()
            }
        self.built = PipelineAssets(
            pipeline,
            {step: spec.key for step, spec in self.specs.items()},
            (),
            io_manager_key,
            partitioning,
        )

    def _partitioned(self, step: Step, spec: dg.AssetSpec) -> dg.AssetSpec:
        """A source gets its partitions; prepared rows, train and test the split source's (if
        the plan allows it); X, y and the model none."""
        partitions = self.partitioning.partitions_def(step)
        if partitions is None:
            return spec
        return spec.replace_attributes(partitions_def=partitions)

    def all_partitions(self, upstream: Step) -> dg.PartitionMapping | None:
        """How a consumer reads every partition of ``upstream`` (``None``: it has none)."""
        partitioned = self.partitioning.partitions_def(upstream) is not None
        return dg.AllPartitionMapping() if partitioned else None

    def same_partition(self) -> dg.PartitionMapping | None:
        """How the partitioned rows read the split source (and train/test the rows)."""
        return dg.IdentityPartitionMapping() if self.partitioning.rows is not None else None

    def mapped(
        self, spec: dg.AssetSpec, mappings: dict[dg.AssetKey, dg.PartitionMapping | None]
    ) -> dg.AssetSpec:
        """``spec`` with the partition mapping of each dependency in ``mappings`` (``None``:
        left as is)."""
        if all(m is None for m in mappings.values()):
            return spec
        deps = [
            dg.AssetDep(d.asset_key, partition_mapping=mappings[d.asset_key])
            if mappings.get(d.asset_key) is not None
            else d
            for d in spec.deps
        ]
        return spec.replace_attributes(deps=deps)

    def spec(self, kind: StepKind, source: str | None = None) -> dg.AssetSpec:
        return self.specs[
            self.pipeline.source_step(source) if source is not None else self.pipeline.step(kind)
        ]

    def key(self, kind: StepKind, source: str | None = None) -> dg.AssetKey:
        return self.spec(kind, source).key

    # -- rows ----------------------------------------------------------------------------------
    def source(self, name: str) -> dg.AssetsDefinition:
        spec = self.spec("source", name)
        source_spec = self.pipeline.sources[name]
        sources = self.built.sources
        partitioning = self.partitioning
        buckets = partitioning.source_buckets(name)
        per_file = name in partitioning.files

        pipeline_name = self.pipeline.name

        @dg.multi_asset(
            specs=[spec],
            name=spec.key.to_python_identifier(),
            required_resource_keys={LEDGER_KEY},
        )
        def _source(context: AssetExecutionContext) -> dg.Output[FrameArtifact]:
            file = partitioning.file_of(name, context.partition_key) if per_file else None
            artifact, generated = steps.read_source(name, source_spec, file)
            if buckets:
                artifact = source_partition(artifact, name, context.partition_key, buckets)
            ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
            with ledger_resource.open() as ledger:
                artifact, filtered = steps.apply_ledger(
                    artifact,
                    name,
                    ledger.deleted_keys(pipeline_name, name),
                    ledger.deleted_values(pipeline_name, name),
                )
                watermark = ledger.watermark(pipeline_name)
            if filtered["records"] or filtered["values"]:
                context.log.info(
                    f"source {name!r}: the deletion ledger removed {filtered['records']} "
                    f"record(s) and {filtered['values']} value(s) the file still holds"
                )
            if generated:
                context.log.info(
                    f"source {name!r}: {source_spec.file} was missing, so it was generated "
                    f"by {_callable_name(source_spec.generate)}()"
                )
            meta = frame_metadata(artifact, sources, lambda column, refs: ())
            meta["lester/path"] = dg.MetadataValue.path(str(file or source_spec.file))
            meta["lester/generated"] = generated
            meta["lester/ledger_filtered"] = filtered
            meta[LEDGER_WATERMARK] = watermark
            return dg.Output(artifact, metadata=meta)

        return _source

    def _explained(self, spec: dg.AssetSpec) -> dg.AssetSpec:
        """The prepared rows' spec saying how they are partitioned (if any source is), and why
        they are not where the split source is partitioned but the plan does not allow it."""
        partitioning = self.partitioning
        if not partitioning.partitioned:
            return spec
        spec = spec.merge_attributes(metadata={"lester/partitioning": partitioning.reason})
        split_partitioned = partitioning.sources[self.pipeline.split.by] is not None
        if partitioning.rows is None and split_partitioned:
            text = f"Partitions: {partitioning.reason}."
            spec = spec.replace_attributes(
                description=f"{spec.description}\n\n{text}" if spec.description else text
            )
        return spec

    def prepared(self) -> dg.AssetsDefinition:
        spec = self.spec("prepared")
        pipeline = self.pipeline
        source_keys = {name: self.key("source", name) for name in pipeline.sources}
        sources = self.built.sources
        ins = {f"in_{name}": dg.AssetIn(key=key) for name, key in source_keys.items()}
        spec = self.mapped(
            spec,
            {
                key: self.same_partition()
                if name == pipeline.split.by and self.partitioning.rows is not None
                else self.all_partitions(pipeline.source_step(name))
                for name, key in source_keys.items()
            },
        )
        spec = self._explained(spec)

        def upstream(column: str, refs: frozenset[ColumnRef]) -> Iterable[tuple[dg.AssetKey, str]]:
            return [
                (source_keys[r.source], r.column) for r in sorted(refs) if r.source in source_keys
            ]

        @dg.multi_asset(
            specs=[spec],
            name=spec.key.to_python_identifier(),
            ins=ins,
            required_resource_keys={LEDGER_KEY},
        )
        def _prepared(
            context: AssetExecutionContext, **inputs: FrameArtifact
        ) -> dg.Output[FrameArtifact]:
            loaded = {name: inputs[f"in_{name}"] for name in pipeline.sources}
            artifact, plan = steps.run_prepare(pipeline, loaded)
            meta = frame_metadata(artifact, sources, upstream)
            meta["lester/plan"] = dg.MetadataValue.md("```\n" + plan.explain() + "\n```")
            meta[LEDGER_WATERMARK] = _watermark(context, pipeline.name)
            return dg.Output(artifact, metadata=meta)

        return _prepared

    def split(self, side: StepKind) -> dg.AssetsDefinition:
        prepared_key = self.key("prepared")
        spec = self.mapped(self.spec(side), {prepared_key: self.same_partition()})
        pipeline = self.pipeline
        sources = self.built.sources
        split = pipeline.split

        @dg.multi_asset(
            specs=[spec],
            name=spec.key.to_python_identifier(),
            ins={"prepared": dg.AssetIn(key=prepared_key)},
            required_resource_keys={LEDGER_KEY},
        )
        def _split(
            context: AssetExecutionContext, prepared: FrameArtifact
        ) -> dg.Output[FrameArtifact]:
            artifact = steps.split_rows(pipeline, prepared, side)
            meta = frame_metadata(artifact, sources, lambda column, refs: [(prepared_key, column)])
            meta["lester/split"] = {
                "by": split.by,
                "test_fraction": split.test_fraction,
                "seed": split.seed,
                "side": side,
                "of_rows": len(prepared),
            }
            meta[LEDGER_WATERMARK] = _watermark(context, pipeline.name)
            return dg.Output(artifact, metadata=meta)

        return _split

    # -- training ------------------------------------------------------------------------------
    def fit(self) -> dg.AssetsDefinition:
        train_key = self.key("train")
        train_step = self.pipeline.step("train")
        x_spec, y_spec, model_spec = (
            self.mapped(self.spec(kind), {train_key: self.all_partitions(train_step)})
            for kind in ("X_train", "y_train", "model")
        )
        pipeline = self.pipeline
        sources = self.built.sources
        names = {
            kind: s.key.to_python_identifier()
            for kind, s in (("X", x_spec), ("y", y_spec), ("model", model_spec))
        }

        @dg.multi_asset(
            specs=[x_spec, y_spec, model_spec],
            name=f"fit_{model_spec.key.to_python_identifier()}",
            ins={"train": dg.AssetIn(key=train_key)},
            required_resource_keys={LEDGER_KEY},
        )
        def _fit(context: AssetExecutionContext, train: FrameArtifact) -> Iterator[dg.Output[Any]]:
            state = steps.fit_training(pipeline, train)
            labels = steps.training_labels(pipeline, state, train)
            strategies = update_strategies(state)
            watermark = _watermark(context, pipeline.name)
            x_meta = matrix_metadata(state.features, sources, train_key)
            x_meta[LEDGER_WATERMARK] = watermark
            x_meta["lester/update_strategy"] = {"encoders": strategies["encoders"]}
            yield dg.Output(state.features, output_name=names["X"], metadata=x_meta)
            y_meta = labels_metadata(labels.labels, sources, train_key)
            y_meta[LEDGER_WATERMARK] = watermark
            y_meta["lester/update_strategy"] = {"labels": strategies["labels"]}
            yield dg.Output(labels, output_name=names["y"], metadata=y_meta)
            m_meta = model_metadata(state, sources, x_spec.key, y_spec.key)
            m_meta[LEDGER_WATERMARK] = watermark
            yield dg.Output(state, output_name=names["model"], metadata=m_meta)

        return _fit

    def x_test(self) -> dg.AssetsDefinition:
        test_key, model_key = self.key("test"), self.key("model")
        test_step = self.pipeline.step("test")
        spec = self.mapped(self.spec("X_test"), {test_key: self.all_partitions(test_step)})
        sources = self.built.sources
        pipeline = self.pipeline

        @dg.multi_asset(
            specs=[spec],
            name=spec.key.to_python_identifier(),
            ins={
                "test": dg.AssetIn(key=test_key),
                "model": dg.AssetIn(key=model_key),
            },
            required_resource_keys={LEDGER_KEY},
        )
        def _x_test(
            context: AssetExecutionContext, test: FrameArtifact, model: TrainingState
        ) -> dg.Output[Any]:
            matrix = steps.encode_test(model, test)
            meta = matrix_metadata(matrix, sources, test_key)
            meta[LEDGER_WATERMARK] = _watermark(context, pipeline.name)
            meta["lester/encoding_from"] = model_key.to_user_string()
            return dg.Output(matrix, metadata=meta)

        return _x_test

    def y_test(self) -> dg.AssetsDefinition:
        test_key = self.key("test")
        test_step = self.pipeline.step("test")
        spec = self.mapped(self.spec("y_test"), {test_key: self.all_partitions(test_step)})
        pipeline = self.pipeline
        sources = self.built.sources

        @dg.multi_asset(
            specs=[spec],
            name=spec.key.to_python_identifier(),
            ins={"test": dg.AssetIn(key=test_key)},
            required_resource_keys={LEDGER_KEY},
        )
        def _y_test(context: AssetExecutionContext, test: FrameArtifact) -> dg.Output[Any]:
            labels = steps.testing_labels(pipeline, test)
            meta = labels_metadata(labels.labels, sources, test_key)
            meta[LEDGER_WATERMARK] = _watermark(context, pipeline.name)
            return dg.Output(labels, metadata=meta)

        return _y_test


def build_assets(
    pipeline: LesterPipeline,
    translator: LesterTranslator | None = None,
    *,
    io_manager_key: str = IO_MANAGER_KEY,
) -> PipelineAssets:
    """The pipeline's assets (see the module docstring) and the asset key of every step.
    Lists the files of multi-file sources, and checks the plan if the split source is
    partitioned (:func:`~lester_dagster.orchestration.partitions.plan_partitions`)."""
    partitioning = plan_partitions(pipeline)
    factory = _Factory(pipeline, translator or LesterTranslator(), io_manager_key, partitioning)
    assets = (
        *(factory.source(name) for name in pipeline.sources),
        factory.prepared(),
        factory.split("train"),
        factory.split("test"),
        factory.fit(),
        factory.x_test(),
        factory.y_test(),
    )
    return PipelineAssets(pipeline, factory.built.keys, assets, io_manager_key, partitioning)
