"""The oracle: compare a training state after forgetting with a full recompute.

A recompute runs the pipeline again on sources that no longer hold the forgotten data. The
state after IVM must hold the same prepared rows, the same X (up to float rounding) and y, and
a model equal to a refit on that X (exact strategies) or much closer to the new optimum than the
model before forgetting was (approximate strategies).

Rows are aligned by provenance (the source key ids of each row), not by position or by a data
column, so the comparison works for any pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.base import clone

from lester_dagster.features.matrix import encode_labels, fit_encode
from lester_dagster.frame import Prov, Result
from lester_dagster.ivm.frames import row_identity
from lester_dagster.ivm.training import TrainingState
from lester_dagster.models.linalg import max_abs_difference

__all__ = ["MODEL_RTOL", "OracleReport", "compare_with_recompute", "provenance_order"]

X_TOLERANCE = 1e-9
MODEL_RTOL = 1e-9
"""A model equals a refit if its parameters lie within this, relative to the largest one."""


def provenance_order(prov: Prov) -> npt.NDArray[np.intp]:
    """Row order by the rows' source key ids (aggregated rows: by their identity, the same
    for the same set of records in every artifact)."""
    if not prov.single:
        return np.argsort(row_identity(prov), kind="stable").astype(np.intp)
    keys = [prov.keys[s] for s in sorted(prov.sources, reverse=True)]
    return np.lexsort(keys).astype(np.intp) if keys else np.arange(prov.n, dtype=np.intp)


def _dense(X: Any) -> npt.NDArray[np.float64]:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


@dataclass(frozen=True)
class OracleReport:
    """How the state after IVM compares with the recompute."""

    rows_equal: bool
    x_max_abs_diff: float
    y_equal: bool
    model_distance: float  # max abs parameter difference to a refit on the recomputed data
    old_model_distance: float | None  # the same for the model before forgetting, if known
    model_exact: bool  # whether the model's strategy claims exactness
    reference_scale: float = 1.0  # largest abs parameter of the refit

    @property
    def model_ok(self) -> bool:
        """Exact strategies: within 1e-9 relative of a refit. Approximate ones: at most 1e-3
        times the old model's distance to the refit (an unchanged model fails)."""
        if self.model_exact or self.old_model_distance is None:
            return self.model_distance <= MODEL_RTOL * max(1.0, self.reference_scale)
        return self.model_distance <= 1e-3 * self.old_model_distance

    @property
    def ok(self) -> bool:
        return (
            self.rows_equal
            and self.x_max_abs_diff <= X_TOLERANCE
            and self.y_equal
            and (self.model_ok)
        )

    def lines(self) -> list[str]:
        old = (
            f" (model before forgetting: {self.old_model_distance:.2e})"
            if self.old_model_distance is not None
            else ""
        )
        return [
            f"prepared rows equal: {'yes' if self.rows_equal else 'NO'}",
            f"X max abs difference: {self.x_max_abs_diff:.2e} (tolerance {X_TOLERANCE:g})",
            f"y equal: {'yes' if self.y_equal else 'NO'}",
            f"model distance to a refit: {self.model_distance:.2e}{old}",
        ]


def compare_with_recompute(
    state: TrainingState,
    recomputed: Result,
    encoding: Any,
    *,
    old_parameters: dict[str, npt.NDArray[np.float64]] | None = None,
) -> OracleReport:
    """Compare ``state`` with a recompute from ``recomputed`` (the prepared training rows of
    the pipeline re-run without the forgotten data) and a fresh, unfitted ``encoding``."""
    mine = provenance_order(state.prov)
    theirs = provenance_order(recomputed.prov)
    rows_equal = state.prov.n == recomputed.prov.n and all(
        np.array_equal(state.prov.keys[s][mine], recomputed.prov.keys[s][theirs])
        for s in state.prov.sources
    )
    if not rows_equal:
        return OracleReport(False, float("inf"), False, float("inf"), None, False)  # no alignment
    _, features = fit_encode(clone(encoding), recomputed)
    x_diff = (
        float(np.abs(_dense(state.X)[mine] - _dense(features.X)[theirs]).max())
        if state.X.shape == features.X.shape and state.X.shape[0]
        else (0.0 if state.X.shape == features.X.shape else float("inf"))
    )
    y_ref = encode_labels(state.label, recomputed, inputs=state.label_inputs).y
    y_equal = bool(np.array_equal(np.asarray(state.y)[mine], np.asarray(y_ref)[theirs]))
    unlearner = state.unlearner
    reference = unlearner.parameters(unlearner.reference_fit())
    distance = max_abs_difference(unlearner.parameters(unlearner.model), reference)
    old = (
        max_abs_difference(old_parameters, reference)
        if old_parameters is not None and _same_shapes(old_parameters, reference)
        else None
    )
    scale = max((float(np.abs(v).max()) for v in reference.values() if np.size(v)), default=1.0)
    exact = unlearner.strategy == "exact"
    return OracleReport(rows_equal, x_diff, y_equal, distance, old, exact, scale)


def _same_shapes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.shape(a[k]) == np.shape(b[k]) for k in a)
