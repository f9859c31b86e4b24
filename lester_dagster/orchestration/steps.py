"""What each asset computes, as plain functions of artifacts (no Dagster here).

* :func:`read_source`: one file through the frame's reader (keys, key ids, key index): the
  source's file, or one file of a multi-file source's partition;
* :func:`run_prepare`: the stored source rows rebuilt as frames (``from_pandas`` with the
  source's name and key, so key ids are the ones stored) and passed to the pipeline's
  ``prepare``;
* :func:`split_rows`: train or test rows by a hash of the split source's key in the stored
  provenance (:func:`lester_dagster.frame.split_mask`, exactly what ``Frame.split`` does);
* :func:`fit_training` / :func:`training_labels`: :class:`TrainingState.fit` on the training
  rows, and y with the rows' provenance;
* :func:`encode_test` / :func:`testing_labels`: X_test with the model artifact's fitted encoding,
  y_test with the label function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lester_dagster.errors import PlanError, SourceError, preview
from lester_dagster.features.matrix import FeatureMatrix, Labels, encode, encode_labels
from lester_dagster.frame import (
    ColumnRef,
    Frame,
    from_pandas,
    split_mask,
)
from lester_dagster.frame.result import hash_key_values
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import FrameArtifact, LabelsArtifact, forget_in_source
from lester_dagster.orchestration.pipeline import LesterPipeline, SourceSpec

__all__ = [
    "apply_ledger",
    "encode_test",
    "fit_training",
    "read_source",
    "run_prepare",
    "split_rows",
    "testing_labels",
    "training_labels",
]


def read_source(
    name: str, spec: SourceSpec, file: Path | None = None
) -> tuple[FrameArtifact, bool]:
    """Read source ``name``; returns the rows with provenance and key index, and whether the
    file was generated.

    ``file``: the one file to read, for a partition of a multi-file source (one of the files
    its glob pattern or directory matched when the pipeline was defined). Without it, the
    single file ``spec.path`` is read, generated first if it is missing and the spec says how.
    """
    if file is not None:
        if not file.is_file():
            raise SourceError(
                f"source {name!r}: file {file} (matched by {str(spec.path)!r} when the code "
                "location was loaded) no longer exists; restore it, or reload the code "
                "location to list the files again"
            )
        return _read(name, spec, file), False
    if spec.multi_file:
        raise PlanError(
            f"source {name!r} reads several files ({str(spec.path)!r}); read one at a time: "
            "read_source(name, spec, file) with one file of its partitions"
        )
    generated = False
    if not spec.file.exists() and spec.generate is not None:
        spec.generate()
        generated = True
        if not spec.file.exists():
            raise SourceError(
                f"source {name!r}: generate() ran but did not create {spec.file}; make it "
                "write that file (or fix the source's path)"
            )
    if not spec.file.exists():
        raise SourceError(
            f"source {name!r}: no file at {spec.file}; create it, fix the path, or give the "
            "SourceSpec a generate= function"
        )
    return _read(name, spec, spec.file), generated


def _read(name: str, spec: SourceSpec, file: Path) -> FrameArtifact:
    return FrameArtifact.from_result(spec.read(name, file).execute())


def apply_ledger(
    artifact: FrameArtifact,
    name: str,
    deleted_keys: Sequence[Any],
    deleted_values: Mapping[str, Sequence[Any]],
) -> tuple[FrameArtifact, dict[str, int]]:
    """Source ``name``'s rows as read, without the records the ledger deleted and with the
    values it deleted missing (deleted data never comes back, even if the file still holds
    it). Returns the rows and how many records / values were removed."""
    index = artifact.key_indexes.get(name)
    if index is None or (not deleted_keys and not deleted_values):
        return artifact, {"records": 0, "values": 0}
    records = hash_key_values(name, index, deleted_keys)
    values = {c: hash_key_values(name, index, keys) for c, keys in deleted_values.items()}
    missing = [c for c in values if c not in artifact.data.columns]
    if missing:
        raise SourceError(
            f"source {name!r}: the deletion ledger deletes values of column(s) {missing}, which "
            f"the file no longer has (columns: {artifact.columns}); the request cannot be "
            "honoured on this file: restore the column or reject the request"
        )
    updated = forget_in_source(artifact, name, records, values)
    if updated is None:
        return artifact, {"records": 0, "values": 0}
    removed = 0
    for column, ids in values.items():  # values of kept records that are now missing
        kept = np.setdiff1d(
            artifact.prov.rows_mentioning(name, ids), artifact.prov.rows_mentioning(name, records)
        )
        removed += int(artifact.data[column].iloc[kept].notna().sum())
    return updated, {"records": len(artifact) - len(updated), "values": removed}


def source_frames(
    pipeline: LesterPipeline, inputs: Mapping[str, FrameArtifact]
) -> dict[str, Frame]:
    """The stored source rows as source frames named and keyed as the pipeline declares."""
    frames = {}
    for name, spec in pipeline.sources.items():
        if name not in inputs:
            raise PlanError(f"source {name!r} was not loaded; materialise its asset first")
        key = list(spec.key_columns) or None
        frames[name] = from_pandas(inputs[name].data, name=name, key=key)
    return frames


def run_prepare(
    pipeline: LesterPipeline, inputs: Mapping[str, FrameArtifact]
) -> tuple[FrameArtifact, Frame]:
    """Run ``prepare`` on the stored sources; returns the prepared rows and the plan."""
    frames = source_frames(pipeline, inputs)
    plan = pipeline.prepare(**frames)
    if not isinstance(plan, Frame):
        raise PlanError(
            f"prepare() must return a Frame (the prepared plan), got {type(plan).__name__}; "
            "build it with the frame API (filter, join, with_column, ...) on its arguments"
        )
    unknown = [s for s in plan.sources if s not in pipeline.sources]
    if unknown:
        raise PlanError(
            f"prepare() reads source(s) {preview(unknown)} that the pipeline does not declare; "
            "add them to sources= and take them as parameters, so their assets and "
            "provenance are tracked"
        )
    result = plan.execute()
    for name, table in result.sources.items():
        stored = inputs[name].key_indexes.get(name)
        if stored is not None and not np.array_equal(
            np.sort(table.keys.index.to_numpy(dtype=np.uint64)),
            np.sort(stored.index.to_numpy(dtype=np.uint64)),
        ):
            raise PlanError(
                f"the key ids of source {name!r} changed when its stored rows were reloaded "
                "(a key column changed type in storage); rematerialise the source asset"
            )
    return FrameArtifact.from_result(result), plan


def split_rows(pipeline: LesterPipeline, prepared: FrameArtifact, side: str) -> FrameArtifact:
    """The ``side`` (``"train"`` or ``"test"``) rows of the prepared rows."""
    if side not in ("train", "test"):
        raise PlanError(f"side must be 'train' or 'test', got {side!r}")
    split = pipeline.split
    test = split_mask(prepared.prov, split.by, split.test_fraction, split.seed)
    return prepared.take(np.flatnonzero(test if side == "test" else ~test))


def fit_training(pipeline: LesterPipeline, train: FrameArtifact) -> TrainingState:
    """Encoders, X, y and model fitted on the training rows, ready to forget rows later."""
    if len(train) == 0:
        raise PlanError(
            "there are no training rows: the preparation or the split left nothing; check "
            "prepare()'s filters and the split's test_fraction"
        )
    return TrainingState.fit(
        train.to_result(),
        pipeline.features(),
        pipeline.label,
        pipeline.model(),
        label_inputs=pipeline.label_inputs,
    )


def _label_lineage(rows: FrameArtifact, inputs: tuple[str, ...]) -> frozenset[ColumnRef]:
    refs: frozenset[ColumnRef] = frozenset()
    for column in inputs:
        refs |= rows.lineage.get(column, frozenset())
    return refs


def training_labels(
    pipeline: LesterPipeline, state: TrainingState, train: FrameArtifact
) -> LabelsArtifact:
    """y_train: the training state's labels with the training rows' provenance and lineage."""
    inputs = tuple(pipeline.label_inputs or train.columns)
    labels = Labels(np.asarray(state.y), state.prov, inputs, _label_lineage(train, inputs))
    return LabelsArtifact(labels, train.key_indexes)


def encode_test(state: TrainingState, test: FrameArtifact) -> FeatureMatrix:
    """X_test: the test rows encoded with the fitted encoding of the model artifact."""
    return encode(state.encoding, test.to_result())


def testing_labels(pipeline: LesterPipeline, test: FrameArtifact) -> LabelsArtifact:
    """y_test: the label function on the test rows."""
    labels = encode_labels(pipeline.label, test.to_result(), inputs=pipeline.label_inputs)
    return LabelsArtifact(labels, test.key_indexes)
