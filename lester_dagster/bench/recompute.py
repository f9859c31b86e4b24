"""Recomputing the running example in memory, and how far an update lies from a recompute.

* :func:`plain_recompute`: what a user runs today after a deletion, in memory, timed by the
  benchmark: read the csv sources, prepare (with provenance), split, fit the encoders, encode,
  fit the model with scikit-learn's defaults, encode the test rows.
* :func:`reference`: the oracle, a full recompute on the remaining data: the original source
  tables (read once) without the deleted records and with the deleted values missing, prepared,
  split and fitted exactly as the pipeline's assets do (``TrainingState.fit``: the model
  tightly converged, as the stored model is), plus X_test and the test predictions.
* :func:`distance`: X entries of the remaining rows (aligned by provenance), model parameters
  (max abs) and prediction agreement on the test rows of an updated state against a reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import PlanError
from lester_dagster.features.matrix import FeatureMatrix, encode, encode_labels, fit_encode
from lester_dagster.frame import Prov, from_pandas
from lester_dagster.ivm.frames import row_identity
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.steps import fit_training, split_rows
from lester_dagster.orchestration.verify_checks import max_abs_diff

__all__ = [
    "Deleted",
    "Distance",
    "Reference",
    "distance",
    "plain_recompute",
    "reference",
    "source_tables",
    "state_distance",
]


@dataclass
class Deleted:
    """Every deletion applied so far: records per source, deleted values per (source, column)."""

    records: dict[str, list[Any]]
    values: dict[tuple[str, str], list[Any]]

    @classmethod
    def none(cls) -> Deleted:
        return cls({}, {})

    def add_records(self, source: str, keys: Sequence[Any]) -> None:
        self.records.setdefault(source, []).extend(keys)

    def add_values(self, source: str, column: str, keys: Sequence[Any]) -> None:
        self.values.setdefault((source, column), []).extend(keys)


def source_tables(pipeline: LesterPipeline) -> dict[str, pd.DataFrame]:
    """The pipeline's source files as read by the frame (key columns typed as the assets type
    them), as pandas frames."""
    tables = {}
    for name, spec in pipeline.sources.items():
        if spec.multi_file:
            raise PlanError(
                f"source {name!r} reads several files; the benchmark's reference recompute "
                "reads single-file sources only (the running example's)"
            )
        tables[name] = spec.read(name, spec.file).execute().to_pandas()
    return tables


def _prepared(pipeline: LesterPipeline, frames: Mapping[str, Any]) -> FrameArtifact:
    plan = pipeline.prepare(**frames)
    return FrameArtifact.from_result(plan.execute())


def plain_recompute(pipeline: LesterPipeline) -> dict[str, Any]:
    """The in-memory recompute from the csv files to the model (scikit-learn defaults)."""
    from sklearn.base import clone

    frames = {name: spec.read(name, spec.file) for name, spec in pipeline.sources.items()}
    prepared = _prepared(pipeline, frames)
    train = split_rows(pipeline, prepared, "train").to_result()
    test = split_rows(pipeline, prepared, "test").to_result()
    encoding, features = fit_encode(pipeline.features(), train)
    y = encode_labels(pipeline.label, train, inputs=pipeline.label_inputs).y
    model = clone(pipeline.model()).fit(features.X, y)
    x_test = encode(encoding, test)
    return {"train_rows": features.shape[0], "X_test": x_test, "model": model}


@dataclass(frozen=True)
class Reference:
    """A full recompute on the remaining data."""

    X_train: FeatureMatrix
    parameters: dict[str, npt.NDArray[np.float64]]
    X_test: FeatureMatrix
    predictions: npt.NDArray[Any]

    @property
    def scale(self) -> float:
        return max((float(np.abs(v).max()) for v in self.parameters.values() if np.size(v)),
                   default=1.0)  # fmt: skip


def reference(
    pipeline: LesterPipeline, tables: Mapping[str, pd.DataFrame], deleted: Deleted
) -> Reference:
    """Recompute the pipeline on ``tables`` without the ``deleted`` records and values."""
    frames = {}
    for name, spec in pipeline.sources.items():
        data = tables[name]
        keys = list(spec.key_columns)
        if len(keys) != 1:
            raise PlanError(
                f"source {name!r} has key {keys}; the benchmark's reference recompute needs "
                "one key column per source"
            )
        gone = deleted.records.get(name, [])
        if gone:
            data = data[~data[keys[0]].isin(gone)]
        for (source, column), values_of in deleted.values.items():
            if source == name and values_of:
                data = data.copy()
                data[column] = data[column].astype(object)
                data.loc[data[keys[0]].isin(values_of), column] = None
        frames[name] = from_pandas(data, name=name, key=keys[0])
    prepared = _prepared(pipeline, frames)
    train = split_rows(pipeline, prepared, "train")
    test = split_rows(pipeline, prepared, "test")
    state = fit_training(pipeline, train)
    x_test = encode(state.encoding, test.to_result())
    return Reference(
        state.features,
        state.unlearner.parameters(state.model),
        x_test,
        np.asarray(state.model.predict(x_test.X)),
    )


@dataclass(frozen=True)
class Distance:
    """How far an updated state lies from the recompute on the remaining data."""

    x_max_diff: float  # max |X entry| difference over the remaining training rows
    x_test_max_diff: float  # the same for X_test
    coef_max_diff: float  # max |parameter| difference (coefficients and intercept)
    coef_scale: float  # max |parameter| of the recompute
    agreement: float  # share of test rows predicted alike
    rows_match: bool  # the same remaining training rows as the recompute


def _aligned_diff(X: Any, prov: Prov, ref: FeatureMatrix) -> tuple[float, bool]:
    mine, theirs = row_identity(prov), row_identity(ref.prov)
    a, b = np.argsort(mine, kind="stable"), np.argsort(theirs, kind="stable")
    if mine.size != theirs.size or not np.array_equal(mine[a], theirs[b]):
        return float("inf"), False
    return max_abs_diff(X[a], ref.X[b]), True


def distance(
    ref: Reference,
    X_train: Any,
    prov: Prov,
    parameters: Mapping[str, npt.NDArray[np.float64]],
    X_test: Any,
    prov_test: Prov,
    predictions: npt.ArrayLike,
) -> Distance:
    """Distance of an updated state (X_train with its provenance, model parameters, X_test and
    the model's test predictions) to ``ref``."""
    x_diff, rows_match = _aligned_diff(X_train, prov, ref.X_train)
    x_test_diff, _ = _aligned_diff(X_test, prov_test, ref.X_test)
    coef = float("inf")
    if set(parameters) == set(ref.parameters) and all(
        np.shape(parameters[k]) == np.shape(v) for k, v in ref.parameters.items()
    ):
        coef = max(
            (float(np.abs(np.asarray(parameters[k]) - v).max(initial=0.0))
             for k, v in ref.parameters.items()),
            default=0.0,
        )  # fmt: skip
    mine, theirs = row_identity(prov_test), row_identity(ref.X_test.prov)
    common, ia, ib = np.intersect1d(mine, theirs, return_indices=True)
    predicted = np.asarray(predictions)
    agreement = (
        float(np.mean(predicted[ia] == ref.predictions[ib])) if common.size else float("nan")
    )
    if common.size != theirs.size:  # rows the recompute has and the update does not
        agreement *= common.size / max(1, theirs.size)
    return Distance(x_diff, x_test_diff, coef, ref.scale, agreement, rows_match)


def state_distance(ref: Reference, state: TrainingState, x_test: FeatureMatrix) -> Distance:
    """:func:`distance` of a stored training state (the model artifact) and its X_test."""
    return distance(
        ref,
        state.X,
        state.prov,
        state.unlearner.parameters(state.model),
        x_test.X,
        x_test.prov,
        state.model.predict(x_test.X),
    )
