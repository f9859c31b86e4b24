"""What every model unlearner shares: the training rows it keeps, row validation, records.

An :class:`Unlearner` owns a fitted scikit-learn estimator (``model``) together with its training
matrix ``X`` and targets ``y``. :meth:`Unlearner.forget` removes rows, updates ``model`` in place
and returns an :class:`~lester_dagster.features.record.UpdateRecord`. Row positions always refer
to the *current* training matrix: after a removal, the rows behind the removed ones move up.

Rows are removed by tombstones: the original matrix stays in memory and a sorted index of the
live rows maps current positions to original ones (a copy of the matrix at every removal would
cost more than the model update itself). Once more than half of the stored rows are dead the
matrix is compacted, so that removal pays one copy of the remaining rows.

**Changed training data.** When upstream encoders update their fitted state (a scaler's mean
moved after a deletion, a vocabulary lost a word), the columns of the *remaining* rows change too,
and a recompute would refit the model on the new matrix. :meth:`Unlearner.update` absorbs such a
change: the current rows now read ``X_new`` / ``y_new`` (same rows, same order); ``old_columns``
says which new columns are old columns unchanged except in ``changed_rows``, and which are new
(``-1``). :meth:`Unlearner.affine_columns` is the fast path for ``X[:, j] -> scale_j X[:, j] +
shift_j`` (what a StandardScaler / MinMaxScaler change does to its output columns). Both leave
the model equal to a refit on the new data (exact families) or as close as ``forget`` does
(logistic regression), and return an :class:`UpdateRecord`.

After :meth:`Unlearner.affine_columns` the stored matrix may be an :class:`AffineColumns`: the
previous matrix plus a per-column scale and offset, so that the change costs ``O(d)`` instead of
rewriting ``X`` (for a sparse matrix, a shift would turn every implicit zero of the column into a
stored value). Families read stored rows through :func:`dense_rows`, :func:`product`,
:func:`transposed_product` and :func:`weighted_gram`, which understand it; :attr:`Unlearner.X`
materialises it (``O(nnz + n * shifted columns)``).

Subclasses (one per model family) implement :meth:`Unlearner._update` (rows removed) and
:meth:`Unlearner._replace` (data changed), optionally :meth:`Unlearner._affine`, and say which
strategy they use; the rest (validation, timing, tombstones, ``check=True``) lives here. The
matrix helpers they share (dense copies of a few rows, weighted Gram matrices, low-rank inverse
updates, parameter distances) are in :mod:`lester_dagster.models.linalg`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from lester_dagster.errors import DuplicateRowError, RowPositionError, UnlearningError, preview
from lester_dagster.features.record import Strategy, UpdateRecord
from lester_dagster.models.linalg import (
    AffineColumns,
    ColumnMap,
    FloatArray,
    IntArray,
    Matrix,
    as_training_data,
    check_finite,
    column_map,
    dense_rows,
    elementwise_differs,
    max_abs_difference,
    numeric_parameters,
    subset_rows,
    take_rows,
)

__all__ = [
    "StoredRows",
    "Unlearner",
    "UpdateOutcome",
]


@dataclass
class UpdateOutcome:
    """What a family's ``_update`` reports back to :meth:`Unlearner.forget`."""

    strategy: Strategy
    changed: bool = True
    residual_grad_norm: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRows:
    """The training data as it was before :meth:`Unlearner.update` replaced it: families read
    the old version of changed rows from here (``positions`` are current row positions)."""

    X_all: Matrix
    y_all: npt.NDArray[Any]
    alive: IntArray
    alive_mask: npt.NDArray[np.bool_]

    @property
    def n_features(self) -> int:
        return int(self.X_all.shape[1])

    def original(self, positions: IntArray) -> IntArray:
        """Indices into ``X_all`` / ``y_all`` of the rows at ``positions``."""
        return self.alive[positions]

    def dense_rows(self, positions: IntArray) -> FloatArray:
        return dense_rows(self.X_all, self.alive[positions])

    def rows(self, positions: IntArray) -> Matrix:
        """The old rows at ``positions`` (CSR or ndarray, materialised)."""
        return take_rows(self.X_all, self.alive[positions])

    def y(self, positions: IntArray) -> npt.NDArray[Any]:
        return self.y_all[self.alive[positions]]


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

    # -- pickling -----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The attributes; the row bookkeeping of a compact unlearner (every stored row alive)
        is rebuilt on loading, not stored: it names row positions, which all move when one row
        leaves, so storing it would rewrite every row segment of the stored state."""
        state = self.__dict__.copy()
        rows = int(self._X_all.shape[0])
        if self._alive.size == rows and bool(self._alive_mask.all()):
            state["_alive"] = state["_alive_mask"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._alive is None:  # compact when stored: every row alive
            rows = int(self._X_all.shape[0])
            self._alive = np.arange(rows, dtype=np.intp)
            self._alive_mask = np.ones(rows, dtype=bool)

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
            return self._unchanged()
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
        return self._record(outcome, started, int(positions.size), check)

    def compact(self) -> None:
        """Drop the dead rows from the stored matrix (positions do not change)."""
        if self._alive.size == self._X_all.shape[0]:
            return
        kept = subset_rows(self._X_all, self._alive)
        self._subset_rows(self._alive, kept)
        self._X_all = kept
        self._y_all = self._y_all[self._alive]
        self._alive = np.arange(self._X_all.shape[0], dtype=np.intp)
        self._alive_mask = np.ones(self._X_all.shape[0], dtype=bool)

    def compact_into(self, X: Matrix, *, rtol: float = 1e-9) -> bool:
        """:meth:`compact`, then :meth:`adopt` ``X``, without copying the kept rows first when
        ``X`` already holds them (the caller's matrix after the same removal, e.g. X_train):
        a sample of its rows is checked against the kept rows as :meth:`adopt` checks. Returns
        whether ``X`` was adopted."""
        n_kept = int(self._alive.size)
        if n_kept == self._X_all.shape[0] or tuple(X.shape) != (n_kept, self._X_all.shape[1]):
            self.compact()
            return self.adopt(X, rtol=rtol)
        if not self._agrees(X, self._alive, rtol):
            self.compact()
            return self.adopt(X, rtol=rtol)
        self._subset_rows(self._alive, X)
        self._X_all = X
        self._y_all = self._y_all[self._alive]
        self._alive = np.arange(n_kept, dtype=np.intp)
        self._alive_mask = np.ones(n_kept, dtype=bool)
        return True

    def _agrees(self, X: Matrix, stored_rows: IntArray, rtol: float) -> bool:
        """Whether a sample of ``X``'s rows equals the stored rows ``stored_rows`` (row i of
        ``X`` is stored row ``stored_rows[i]``) up to ``rtol`` of the largest value."""
        n = int(X.shape[0])
        if not n:
            return True
        rows = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.intp))
        mine, theirs = dense_rows(self._X_all, stored_rows[rows]), dense_rows(X, rows)
        scale = max(1.0, float(np.max(np.abs(mine))) if mine.size else 1.0)
        return bool(np.allclose(mine, theirs, rtol=0.0, atol=rtol * scale, equal_nan=True))

    def adopt(self, X: Matrix, *, rtol: float = 1e-9) -> bool:
        """Store ``X`` instead of the current training matrix when it holds the same rows and
        values up to rounding (e.g. the same data materialised by the caller, where this
        unlearner keeps a scaled column as a lazy affine map), so that both are one object (one
        copy in memory and when pickled). Needs no removed rows left (call :meth:`compact`);
        checks the shape and a sample of rows; returns whether it adopted ``X``."""
        if self._alive.size != self._X_all.shape[0] or tuple(X.shape) != tuple(self._X_all.shape):
            return False
        if not self._agrees(X, np.arange(X.shape[0], dtype=np.intp), rtol):
            return False
        self._subset_rows(self._alive, X)
        self._X_all = X
        return True

    # -- changed training data ----------------------------------------------------------------
    def update(
        self,
        X_new: Any,
        y_new: npt.ArrayLike,
        *,
        changed_rows: npt.ArrayLike,
        old_columns: npt.ArrayLike,
        check: bool = False,
    ) -> UpdateRecord:
        """The current training rows now read ``X_new`` / ``y_new``; update ``model`` to match.

        ``X_new`` has one row per current row, in the same order (remove rows with
        :meth:`forget` first). ``old_columns[j]`` is the old index of new column ``j``, or
        ``-1`` when column ``j`` is new or its values may have changed in every row. Columns with
        an old index keep their values except in the rows ``changed_rows`` (current positions),
        whose whole row and target may differ; outside them ``y_new`` must equal the current
        targets. Old columns that no new column maps to are dropped, so the number of columns
        may change. This contract is trusted where checking it would cost a pass over ``X``
        (unchanged columns are not compared); ``y_new`` is compared.

        Afterwards the stored matrix and targets are ``X_new`` / ``y_new`` (the tombstones of
        earlier removals are gone) and ``model`` equals a refit on them as :meth:`forget`
        guarantees for the family. With ``check=True`` the distance to a fresh fit is measured
        as in :meth:`forget`. Bad shapes, positions or column maps raise
        :class:`UnlearningError` / :class:`RowPositionError` / :class:`DuplicateRowError`; in
        every error case the model and its statistics are unchanged.
        """
        started = time.perf_counter()
        X_arr, y_arr, changed, columns = self._validate_update(
            X_new, y_new, changed_rows, old_columns
        )
        return self._apply_update(X_arr, y_arr, changed, columns, started, check=check)

    def affine_columns(
        self,
        columns: npt.ArrayLike,
        scale: npt.ArrayLike,
        shift: npt.ArrayLike,
        *,
        check: bool = False,
    ) -> UpdateRecord:
        """Every current row's ``X[:, j]`` becomes ``scale_j * X[:, j] + shift_j`` for ``j`` in
        ``columns`` (what a StandardScaler / MinMaxScaler change does to its output columns);
        update ``model`` to match.

        ``scale`` / ``shift``: scalars or one value per column (finite). Families with a fast
        path (Ridge / LinearRegression, LogisticRegression with an intercept, GaussianNB) update
        their statistics in ``O(d^2)`` or less, independent of the number of rows, and keep the
        stored matrix as an :class:`AffineColumns` (no copy of ``X``); the others, and a zero
        ``scale``, go through :meth:`update` with the columns marked new (``detail['via']``).
        """
        started = time.perf_counter()
        cols, a, b = self._validate_affine(columns, scale, shift)
        moved = (a != 1.0) | (b != 0.0)
        cols, a, b = cols[moved], a[moved], b[moved]
        if cols.size == 0:
            return self._unchanged()
        outcome: UpdateOutcome | None = None
        if np.all(a != 0.0):
            before = self._X_all
            self._X_all = AffineColumns.apply(before, cols, a, b)
            try:
                outcome = self._affine(cols, a, b)
            except BaseException:
                self._X_all = before
                raise
            if outcome is None:
                self._X_all = before
        if outcome is None:
            d = int(self._X_all.shape[1])
            X_new = AffineColumns.apply(self.X, cols, a, b).materialize()
            old = np.arange(d, dtype=np.intp)
            old[cols] = -1
            record = self._apply_update(
                X_new,
                self.y,
                np.zeros(0, dtype=np.intp),
                column_map(old, d, d),
                started,
                check=check,
                extra={"via": "update (no affine fast path for this model)"},
            )
            return record
        outcome.detail.setdefault("columns", int(cols.size))
        return self._record(outcome, started, 0, check)

    def _apply_update(
        self,
        X_new: Matrix,
        y_new: npt.NDArray[Any],
        changed: IntArray,
        columns: ColumnMap,
        started: float,
        *,
        check: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> UpdateRecord:
        if changed.size == 0 and columns.identity:
            return self._unchanged()  # by the contract, X_new / y_new equal the current data
        old = StoredRows(self._X_all, self._y_all, self._alive, self._alive_mask)
        self._X_all, self._y_all = X_new, y_new
        self._alive = np.arange(X_new.shape[0], dtype=np.intp)
        self._alive_mask = np.ones(X_new.shape[0], dtype=bool)
        try:
            outcome = self._replace(old, changed, columns)
        except BaseException:
            self._X_all, self._y_all = old.X_all, old.y_all
            self._alive, self._alive_mask = old.alive, old.alive_mask
            raise
        outcome.detail.update(columns.describe(), rows_changed=int(changed.size), **(extra or {}))
        return self._record(outcome, started, 0, check)

    def _record(
        self, outcome: UpdateOutcome, started: float, removed: int, check: bool
    ) -> UpdateRecord:
        seconds = time.perf_counter() - started
        detail = dict(outcome.detail)
        detail["rows_remaining"] = self.n_rows
        distance = None
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
            removed,
            changed=outcome.changed,
            residual_grad_norm=outcome.residual_grad_norm,
            distance_to_refit=distance,
            detail=detail,
        )
        self.history.append(record)
        return record

    def _unchanged(self) -> UpdateRecord:
        record = UpdateRecord(self.component, "unchanged", 0.0, 0, changed=False)
        self.history.append(record)
        return record

    def _validate_update(
        self, X_new: Any, y_new: Any, changed_rows: npt.ArrayLike, old_columns: npt.ArrayLike
    ) -> tuple[Matrix, npt.NDArray[Any], IntArray, ColumnMap]:
        try:
            X, y = as_training_data(X_new, y_new)
        except ValueError as exc:
            raise UnlearningError(f"update(): {exc}") from exc
        n, d_old = self.n_rows, int(self._X_all.shape[1])
        if X.shape[0] != n:
            raise UnlearningError(
                f"update(): X_new has {X.shape[0]} rows, the current training matrix {n}; "
                "X_new must hold the current rows in the same order (remove rows with forget() "
                "first, then pass the remaining rows' new values)"
            )
        if X.shape[1] == 0:
            raise UnlearningError("update(): X_new has no columns; a model needs features")
        current = self.y
        if y.shape[1:] != current.shape[1:]:
            raise UnlearningError(
                f"update(): y_new has shape {y.shape}, the current targets {current.shape}"
            )
        columns = column_map(old_columns, d_old, int(X.shape[1]))
        changed = self._positions(changed_rows)
        other = np.ones(n, dtype=bool)
        other[changed] = False
        differs = np.flatnonzero(other & elementwise_differs(current, y))
        if differs.size:
            raise UnlearningError(
                f"update(): y_new differs from the current targets in rows "
                f"{preview(differs.tolist())}, which are not in changed_rows; list every row "
                "whose target (or unchanged-column value) changed in changed_rows"
            )
        check_finite(X, changed, columns.fresh)
        return X, y, changed, columns

    def _validate_affine(
        self, columns: npt.ArrayLike, scale: npt.ArrayLike, shift: npt.ArrayLike
    ) -> tuple[IntArray, FloatArray, FloatArray]:
        d = int(self._X_all.shape[1])
        cols = np.atleast_1d(np.asarray(columns))
        if cols.ndim != 1 or (
            cols.size and (cols.dtype == bool or not np.issubdtype(cols.dtype, np.integer))
        ):
            raise UnlearningError(
                f"affine_columns(): columns must be a 1-D sequence of column indices, got "
                f"{preview(np.ravel(cols).tolist())} (dtype {cols.dtype})"
            )
        cols = cols.astype(np.intp)
        bad = cols[(cols < 0) | (cols >= d)]
        if bad.size:
            raise UnlearningError(
                f"affine_columns(): column indices out of range for {d} columns (valid: "
                f"0..{d - 1}): {preview(bad.tolist())}"
            )
        ordered = np.sort(cols)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            raise UnlearningError(
                f"affine_columns(): columns given more than once: "
                f"{preview(np.unique(repeated).tolist())}; compose the maps first or call twice"
            )
        values = []
        for name, raw in (("scale", scale), ("shift", shift)):
            arr = np.asarray(raw)
            if not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
                raise UnlearningError(f"affine_columns(): {name} must be numeric, got {arr!r}")
            arr = np.asarray(arr, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(cols.size, float(arr))
            if arr.shape != cols.shape:
                raise UnlearningError(
                    f"affine_columns(): {name} must be a scalar or one value per column "
                    f"({cols.size}), got shape {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise UnlearningError(f"affine_columns(): {name} must be finite, got {arr}")
            values.append(arr)
        return cols, values[0], values[1]

    # -- what a family provides ---------------------------------------------------------------
    @abstractmethod
    def _update(self, removed: IntArray) -> UpdateOutcome:
        """Update ``model`` after the rows ``removed`` (original indices) left.

        ``self._alive`` / ``self._alive_mask`` already describe the remaining rows. Must not
        leave partial changes behind when it raises.
        """

    def _check_removal(self, removed: IntArray) -> None:  # noqa: B027 - optional hook
        """Raise :class:`UnlearningError` if removing ``removed`` is not possible (no change)."""

    def _subset_rows(self, keep: IntArray, X_kept: Matrix) -> None:  # noqa: B027 - optional hook
        """Called by :meth:`compact` before the stored rows are reduced to ``keep``; ``X_kept``
        is the stored matrix after it (share it rather than copying the rows again)."""

    @abstractmethod
    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        """Update ``model`` after the training data changed (see :meth:`update`).

        ``self._X_all`` / ``self._y_all`` already hold the new data (all rows alive); ``old``
        holds the previous data, ``changed`` the current positions of the changed rows and
        ``columns`` the validated column map. Must not leave partial changes behind when it
        raises (the base class restores the stored data).
        """

    def _affine(
        self, columns: IntArray, scale: FloatArray, shift: FloatArray
    ) -> UpdateOutcome | None:
        """Absorb ``X[:, columns] -> scale * X[:, columns] + shift`` (``scale`` nonzero);
        ``self._X_all`` already is the transformed :class:`AffineColumns`. Return ``None`` to
        fall back to :meth:`update` (nothing may have changed then)."""
        return None

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
