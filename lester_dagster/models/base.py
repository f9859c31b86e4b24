"""What every model unlearner shares: the training rows it keeps, row validation, records.

An :class:`Unlearner` owns a fitted scikit-learn estimator (``model``) together with its training
matrix ``X`` and targets ``y``. :meth:`Unlearner.forget` removes rows, updates ``model`` in place
and returns an :class:`~lester_dagster.features.record.UpdateRecord`. Row positions always refer
to the *current* training matrix: after a removal, the rows behind the removed ones move up.

Rows are removed by tombstones: the original matrix stays in memory and a sorted index of the
live rows maps current positions to original ones (a copy of the matrix at every removal would
cost more than the model update itself). Once more than half of the stored rows are dead the
matrix is compacted, so that removal pays one copy of the remaining rows.

Subclasses (one per model family) implement :meth:`Unlearner._update` and say which strategy
they use; the rest (validation, timing, tombstones, ``check=True``) lives here. Helpers shared by
the families (dense copies of a few rows, weighted Gram matrices, parameter distances) are at the
bottom of this module.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from lester_dagster.errors import DuplicateRowError, RowPositionError, UnlearningError, preview
from lester_dagster.features.record import Strategy, UpdateRecord

__all__ = [
    "FloatArray",
    "IntArray",
    "Matrix",
    "Unlearner",
    "UpdateOutcome",
    "add_product",
    "as_training_data",
    "dense_rows",
    "max_abs_difference",
    "numeric_parameters",
    "take_rows",
    "weighted_gram",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
#: A training matrix: a C-ordered float64 ndarray or a float64 ``scipy.sparse`` CSR matrix.
Matrix = Any

_GRAM_CHUNK_ROWS = 8192


@dataclass
class UpdateOutcome:
    """What a family's ``_update`` reports back to :meth:`Unlearner.forget`."""

    strategy: Strategy
    changed: bool = True
    residual_grad_norm: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Unlearner(ABC):
    """A fitted model that can forget training rows; see the module docstring.

    * ``model``: the fitted scikit-learn estimator, updated in place by :meth:`forget`;
    * ``strategy``: what :meth:`forget` does (``exact``, ``newton+refine`` or ``refit``); a
      family may switch to ``refit`` for good (e.g. a LinearRegression whose Gram matrix became
      singular), which is then visible here and in every record;
    * ``fallback_reason``: why the strategy is ``refit``, if it is;
    * ``adjustments``: what was changed relative to a plain ``estimator.fit(X, y)`` when the
      model was fitted for forgetting (tighter tolerances, recomputed coefficients, ...);
    * ``history``: the records of every :meth:`forget` call, oldest first.
    """

    strategy: Strategy
    #: Why this unlearner refits instead of updating (``None`` while it updates).
    fallback_reason: str | None = None

    def __init__(
        self,
        model: Any,
        X: Matrix,
        y: npt.NDArray[Any],
        *,
        strategy: Strategy,
        adjustments: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.adjustments: dict[str, Any] = dict(adjustments or {})
        self.history: list[UpdateRecord] = []
        self._X_all = X
        self._y_all = y
        self._alive: IntArray = np.arange(X.shape[0], dtype=np.intp)
        self._alive_mask = np.ones(X.shape[0], dtype=bool)

    @classmethod
    def fit(cls, estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> Self:
        """Fit a clone of ``estimator`` on ``X``, ``y`` (validated by :func:`as_training_data`)
        and return the unlearner that maintains it; each family implements this."""
        raise NotImplementedError(f"{cls.__name__} does not implement fit(); use a family class")

    # -- the current training data ------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Number of rows in the current training matrix."""
        return int(self._alive.size)

    @property
    def X(self) -> Matrix:
        """The current training matrix (a copy of the live rows)."""
        return take_rows(self._X_all, self._alive)

    @property
    def y(self) -> npt.NDArray[Any]:
        """The current targets (a copy)."""
        return self._y_all[self._alive]

    @property
    def component(self) -> str:
        """The name used in update records: ``model:<EstimatorClass>``."""
        return f"model:{type(self.model).__name__}"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {type(self.model).__name__} strategy={self.strategy!r}, "
            f"{self.n_rows} rows>"
        )

    # -- forgetting ---------------------------------------------------------------------------
    def forget(self, rows: npt.ArrayLike, *, check: bool = False) -> UpdateRecord:
        """Remove the rows at ``rows`` (positions in the current matrix) and update ``model``.

        Returns the update record. With ``check=True`` a fresh model is fitted on the remaining
        rows (see :meth:`reference_fit`) and the largest absolute difference over the
        parameters (:meth:`parameters`) is stored as ``distance_to_refit``; its time is in
        ``detail['check_seconds']``, not in ``seconds``.

        Raises :class:`RowPositionError` / :class:`DuplicateRowError` for bad positions and
        :class:`UnlearningError` for removals the model cannot absorb; in every error case the
        model and the stored statistics are left unchanged.
        """
        positions = self._positions(rows)
        if positions.size == 0:
            record = UpdateRecord(self.component, "unchanged", 0.0, 0, changed=False)
            self.history.append(record)
            return record
        if positions.size == self.n_rows:
            raise UnlearningError(
                f"cannot remove all {self.n_rows} remaining training rows of "
                f"{type(self.model).__name__}: a model needs data; keep at least one row (for "
                "a classifier, rows of at least the classes it must still predict) or drop "
                "the model instead"
            )
        started = time.perf_counter()
        removed = self._alive[positions]
        self._check_removal(removed)
        before = (self._alive, self._alive_mask.copy())
        self._alive = np.delete(self._alive, positions)
        self._alive_mask[removed] = False
        try:
            outcome = self._update(removed)
        except BaseException:
            self._alive, self._alive_mask = before
            raise
        if self._alive.size * 2 < self._X_all.shape[0]:
            self.compact()
            outcome.detail["compacted"] = True
        seconds = time.perf_counter() - started
        distance = None
        detail = dict(outcome.detail)
        detail["rows_remaining"] = self.n_rows
        if check:
            check_started = time.perf_counter()
            distance = max_abs_difference(
                self.parameters(self.model), self.parameters(self.reference_fit())
            )
            detail["check_seconds"] = time.perf_counter() - check_started
        record = UpdateRecord(
            self.component,
            outcome.strategy,
            seconds,
            int(positions.size),
            changed=outcome.changed,
            residual_grad_norm=outcome.residual_grad_norm,
            distance_to_refit=distance,
            detail=detail,
        )
        self.history.append(record)
        return record

    def compact(self) -> None:
        """Drop the dead rows from the stored matrix (positions do not change)."""
        if self._alive.size == self._X_all.shape[0]:
            return
        self._subset_rows(self._alive)
        self._X_all = take_rows(self._X_all, self._alive)
        self._y_all = self._y_all[self._alive]
        self._alive = np.arange(self._X_all.shape[0], dtype=np.intp)
        self._alive_mask = np.ones(self._X_all.shape[0], dtype=bool)

    # -- what a family provides ---------------------------------------------------------------
    @abstractmethod
    def _update(self, removed: IntArray) -> UpdateOutcome:
        """Update ``model`` after the rows ``removed`` (original indices) left.

        ``self._alive`` / ``self._alive_mask`` already describe the remaining rows. Must not
        leave partial changes behind when it raises.
        """

    def _check_removal(self, removed: IntArray) -> None:  # noqa: B027 - optional hook
        """Raise :class:`UnlearningError` if removing ``removed`` is not possible (no change)."""

    def _subset_rows(self, keep: IntArray) -> None:  # noqa: B027 - optional hook
        """Called by :meth:`compact` before the stored rows are reduced to ``keep``."""

    def reference_fit(self) -> Any:
        """A fresh model fitted on the current rows, as ``check=True`` compares against."""
        from sklearn.base import clone

        return clone(self.model).fit(self.X, self.y)

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        """The fitted numeric parameters of ``model`` that ``check=True`` compares."""
        return numeric_parameters(model)

    # -- helpers ------------------------------------------------------------------------------
    def _positions(self, rows: npt.ArrayLike) -> IntArray:
        arr = np.asarray(rows)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise RowPositionError(
                f"row positions must be a 1-D sequence of integers, got an array of shape "
                f"{arr.shape}; pass e.g. np.ravel(rows)"
            )
        if arr.size == 0:
            return np.zeros(0, dtype=np.intp)
        if arr.dtype == bool:
            raise RowPositionError(
                "row positions must be integers, got a boolean mask; pass np.flatnonzero(mask)"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise RowPositionError(
                f"row positions must be integers, got dtype {arr.dtype} "
                f"({preview(arr.tolist())}); convert them with np.asarray(rows, dtype=int)"
            )
        n = self.n_rows
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise RowPositionError(
                f"row positions out of range for the current training matrix of {n} rows "
                f"(valid: 0..{n - 1}): {preview(bad.tolist())}; positions refer to the current "
                "matrix, which shrinks after every forget(): map keys to positions again "
                "before each call"
            )
        positions = arr.astype(np.intp)
        ordered = np.sort(positions)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            raise DuplicateRowError(
                f"row positions given more than once: {preview(np.unique(repeated).tolist())}; "
                "each row can be removed once: pass np.unique(rows)"
            )
        return ordered


# -- helpers for the families ------------------------------------------------------------------
def as_training_data(X: Any, y: Any) -> tuple[Matrix, npt.NDArray[Any]]:
    """``X`` as a float64 CSR matrix or C-ordered ndarray, ``y`` as an ndarray; checks shapes.

    Sparse input of another format becomes CSR; pandas frames become plain arrays (their column
    names are not kept: the model is fitted on the array).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
    else:
        X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    y_arr = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D (rows x features), got shape {X.shape}; reshape a single feature "
            "with X.reshape(-1, 1)"
        )
    if y_arr.ndim not in (1, 2) or y_arr.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have one entry per row of X ({X.shape[0]} rows), got shape {y_arr.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("X has no rows: a model needs data to be fitted")
    return X, y_arr


def take_rows(X: Matrix, rows: IntArray) -> Matrix:
    """The rows ``rows`` of ``X`` (same kind: CSR or ndarray), as a new matrix."""
    return X[rows]


def dense_rows(X: Matrix, rows: IntArray) -> FloatArray:
    """The rows ``rows`` of ``X`` as a dense (len(rows), n_features) float64 array."""
    part = X[rows]
    if sp.issparse(part):
        return np.asarray(part.toarray(), dtype=np.float64)
    return np.asarray(part, dtype=np.float64)


def weighted_gram(
    X: Matrix,
    weights: FloatArray | None = None,
    *,
    intercept: bool,
    shift: FloatArray | None = None,
) -> FloatArray:
    """``A^T diag(weights) A`` for ``A = [X - shift, 1]`` (or ``X - shift`` without intercept).

    ``weights=None`` means all ones. For dense ``X`` the shift is applied to the data (chunks of
    rows, so memory stays bounded); for sparse ``X`` it is applied algebraically to
    ``X^T W X`` (keeping ``X`` sparse).
    """
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if sp.issparse(X):
        Xw = X if weights is None else sp.diags_array(w) @ X
        M = np.ascontiguousarray((X.T @ Xw).toarray(), dtype=np.float64)
        v = np.asarray(Xw.sum(axis=0), dtype=np.float64).ravel()
        total = float(w.sum())
        if shift is not None:
            M -= np.outer(shift, v) + np.outer(v, shift) - total * np.outer(shift, shift)
            v = v - total * shift
    else:
        M = np.zeros((d, d))
        v = np.zeros(d)
        for start in range(0, n, _GRAM_CHUNK_ROWS):
            part = X[start : start + _GRAM_CHUNK_ROWS]
            if shift is not None:
                part = part - shift
            scaled = part * w[start : start + _GRAM_CHUNK_ROWS, None]
            M += scaled.T @ part
            v += scaled.sum(axis=0)
        total = float(w.sum())
    if not intercept:
        return M
    G = np.empty((d + 1, d + 1))
    G[:d, :d] = M
    G[:d, d] = v
    G[d, :d] = v
    G[d, d] = total
    return G


def add_product(target: FloatArray, left: FloatArray, right: FloatArray, alpha: float) -> None:
    """``target += alpha * left @ right`` in place (C-ordered float64 ``target``), by BLAS
    ``gemm`` on the transposed view: no temporary of ``target``'s size."""
    from scipy.linalg import blas

    if not target.flags.c_contiguous or target.dtype != np.float64:
        raise ValueError("add_product needs a C-contiguous float64 target")
    out = blas.dgemm(
        alpha, np.asfortranarray(right.T), np.asfortranarray(left.T), beta=1.0,
        c=target.T, overwrite_c=True,
    )  # fmt: skip
    if not np.shares_memory(out, target):  # pragma: no cover - BLAS made a copy
        target[...] = out.T


def numeric_parameters(model: Any) -> dict[str, FloatArray]:
    """The public fitted attributes of ``model`` that are numeric arrays (or lists of them).

    Lists of arrays (an MLP's ``coefs_``) are flattened into one array per attribute. Objects
    without array form (a tree's ``tree_``) are left out.
    """
    params: dict[str, FloatArray] = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.number) for v in value)
        ):
            params[name] = np.concatenate([np.ravel(v).astype(np.float64) for v in value])
        elif isinstance(value, (np.ndarray, np.number, float)) and not isinstance(value, bool):
            arr = np.asarray(value)
            if np.issubdtype(arr.dtype, np.number):
                params[name] = np.atleast_1d(arr.astype(np.float64))
    return params


def max_abs_difference(mine: Mapping[str, FloatArray], other: Mapping[str, FloatArray]) -> float:
    """Largest absolute difference over the parameters both sides have; ``inf`` on a shape
    mismatch (e.g. different classes), ``nan`` if nothing is comparable."""
    common = [name for name in mine if name in other]
    if not common:
        return float("nan")
    worst = 0.0
    for name in common:
        a, b = np.asarray(mine[name]), np.asarray(other[name])
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))))
    return worst
