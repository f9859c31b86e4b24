"""Exact forgetting for least squares: ``Ridge`` and ``LinearRegression``.

Both minimise ``||y - X w - b||^2 + alpha ||w||^2`` (``alpha = 0`` for LinearRegression; the
intercept ``b`` is not penalised). scikit-learn centres ``X`` and ``y``; the same solution comes
from the augmented matrix ``A = [X - c, 1]`` with the penalty on ``w`` only, for any constant
shift ``c`` (we use the column means at fit time, which keeps ``A^T A`` well conditioned). The
sufficient statistics are

* ``G = A^T A + diag(alpha, ..., alpha, 0)`` and ``r = A^T y`` (updated by subtracting the
  removed rows' terms: exact up to rounding), and
* ``G^{-1}``, downdated by the Woodbury identity for the ``k`` removed rows in ``O(d^2 k)``
  (or re-inverted in ``O(d^3)`` when ``k >= d / 2``, where that is cheaper).

The new solution is ``G^{-1} r`` followed by one step of iterative refinement against ``G``;
if the refinement correction shows that ``G^{-1}`` has drifted (relative error > 1e-6, so the
refined solution could be off by more than ~1e-12), ``G`` is re-inverted (recorded). All
downdates are done in place (BLAS ``gemm`` with ``beta=1``), about six passes over a
``d x d`` matrix for one removed row. The result equals a refit up to ``kappa(G) * eps``
relative, as scikit-learn's own Cholesky solver does. For dense ``X`` the shift is applied to
the data; for sparse ``X`` algebraically, so *sparse* columns with large offsets (~1e5) lose
digits (standardise them; one-hot and count columns are fine).

**LinearRegression and singular Gram matrices.** Without a penalty, ``G`` can be singular
(rank-deficient ``X``: more features than rows, collinear one-hot columns plus an intercept, a
column that became all-zero after a removal). scikit-learn then returns lstsq's minimum-norm
solution with singular values below ``tol * s_max`` dropped, which a Gram matrix cannot
reproduce to 1e-9. So whenever the centred Gram matrix's condition number may exceed
``CONDITION_LIMIT`` (1e6, where ``kappa * eps`` stays below ~1e-10), the unlearner checks it
exactly (``O(d^3)``) and, if it is exceeded, switches to ``strategy = "refit"`` for good
(removing rows cannot make a singular Gram matrix regular again): every later ``forget()`` is
an explicit, recorded ``LinearRegression.fit`` on the remaining rows. The check is cheap in the
common case: removing rows scales the smallest eigenvalue by at least ``lambda_min`` of the
Woodbury capacitance matrix, so a lower bound is carried along and the exact check only runs
when the bound gets too small.

After an exact update, LinearRegression's ``rank_`` and ``singular_`` (which describe the old
training matrix, including the forgotten rows, and are not used by ``predict``) are deleted.

**Changed data** (:meth:`~LinearUnlearner.update`, exact). Columns that keep their values keep
their shift and their Gram entries, minus the changed rows' old terms plus their new ones;
rows and columns of ``G`` for new (``-1``) columns are computed from ``X_new`` (``O(nnz)`` per
new column; their shift is their mean). ``G^{-1}`` follows in ``O(d^2 r)``: dropped columns
leave it by a Schur complement, and the rest is one symmetric Woodbury update of rank
``r = 2 (new columns) + 2 (changed rows)``; when ``r`` reaches half of ``d`` (or the
capacitance matrix is singular) ``G`` is re-inverted instead (recorded as ``reinverted``). An
unpenalised model has its conditioning checked exactly (``O(d^3)``) after every ``update``.

**Affine column changes** (:meth:`~LinearUnlearner.affine_columns`, exact, ``O(d^2 k)`` for
``k`` columns, independent of ``n``). With an intercept, ``x_j -> s x_j + t`` moves the shift
to ``s c_j + t`` and the centred column only rescales: ``G -> S (G - alpha I) S + alpha I``,
``r -> S r``; ``G^{-1}`` is rescaled in place and corrected for the penalty by a rank-``k``
Woodbury update (nothing more without a penalty). Without an intercept the column sums
``X^T 1`` (kept for this) give the extra rank-2 term ``S sigma t^T + t sigma^T S + n t t^T``.
Unpenalised: with an intercept the eigenvalue bound scales by ``min(1, s^2)`` (exact check only
when it gets too small); without one a shift triggers the exact ``O(d^3)`` check. The stored
``G`` and ``G^{-1}`` are changed in place; the only step after that which could raise is the
drift re-inversion, i.e. a Cholesky factorisation of a ``G`` already checked to be regular.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.linalg as la
import scipy.sparse as sp

from lester_dagster.errors import UnlearningError
from lester_dagster.models.base import StoredRows, Unlearner, UpdateOutcome
from lester_dagster.models.linalg import (
    ColumnMap,
    FloatArray,
    IntArray,
    Matrix,
    add_product,
    dense_rows,
    low_rank_factors,
    weighted_gram,
)
from lester_dagster.models.refit import fit_in_place

__all__ = ["CONDITION_LIMIT", "LinearUnlearner"]

#: Largest condition number of the (centred) Gram matrix for which an unpenalised least-squares
#: model is updated exactly; beyond it, LinearRegression falls back to refitting.
CONDITION_LIMIT = 1e6
_DRIFT_LIMIT = 1e-6  # relative size of the refinement correction above which G is re-inverted


def _shifted_rhs(X: Matrix, y: FloatArray, shift: FloatArray | None) -> FloatArray:
    """``A^T y`` for ``A = [X - shift, 1]`` (or ``X``). Dense: on the shifted data; sparse:
    ``X^T (y - mean y) + (X^T 1 - n shift) mean y``, which avoids cancelling ``|X| |y|``-sized
    terms (large column offsets in a *sparse* X still cost digits: standardise them)."""
    if shift is None:
        return np.asarray(X.T @ y, dtype=np.float64).ravel()
    if not sp.issparse(X):
        rhs = np.zeros(X.shape[1])
        for start in range(0, X.shape[0], 8192):
            rhs += (X[start : start + 8192] - shift).T @ y[start : start + 8192]
        return np.append(rhs, y.sum())
    mean = float(y.mean())
    sums = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    rhs = (
        np.asarray(X.T @ (y - mean), dtype=np.float64).ravel() + (sums - X.shape[0] * shift) * mean
    )
    return np.append(rhs, y.sum())


def _augment(rows: FloatArray, shift: FloatArray | None) -> FloatArray:
    """``[rows - shift, 1]`` (or ``rows`` without intercept)."""
    if shift is None:
        return rows
    return np.hstack([rows - shift, np.ones((rows.shape[0], 1))])


def _fresh_gram(
    X: Matrix, y: FloatArray, fresh: IntArray, shift: FloatArray | None, intercept: bool
) -> tuple[FloatArray, FloatArray]:
    """``A[:, fresh]^T A`` and ``A[:, fresh]^T y`` for ``A = [X - shift, 1]`` (or ``X``):
    the Gram rows of new columns, ``O(nnz)`` per column."""
    n, d = X.shape
    f = fresh.size
    if not sp.issparse(X):
        M, rhs = np.zeros((f, d + int(intercept))), np.zeros(f)
        for start in range(0, n, 8192):
            part = X[start : start + 8192]
            if shift is not None:
                part = part - shift
            left = part[:, fresh]
            M[:, :d] += left.T @ part
            if intercept:
                M[:, d] += left.sum(axis=0)
            rhs += left.T @ y[start : start + 8192]
        return M, rhs
    XF = sp.csr_matrix(X[:, fresh])
    M = np.asarray((XF.T @ X).toarray(), dtype=np.float64)
    if shift is None:
        return M, np.asarray(XF.T @ y, dtype=np.float64).ravel()
    sums = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    cf, sums_f = shift[fresh], sums[fresh]
    M -= np.outer(sums_f, shift) + np.outer(cf, sums) - n * np.outer(cf, shift)
    mean = float(y.mean())
    offset = sums_f - n * cf
    rhs = np.asarray(XF.T @ (y - mean), dtype=np.float64).ravel() + offset * mean
    return np.hstack([M, offset[:, None]]), rhs


def _affine_gram(
    gram: FloatArray,
    columns: IntArray,
    scale: FloatArray,
    alpha: float,
    rank_two: tuple[FloatArray, FloatArray, float] | None,
    out: FloatArray | None = None,
) -> FloatArray:
    """``S (G - alpha I) S + alpha I`` plus, without intercept, ``u t^T + t u^T + n t t^T``
    for ``rank_two = (u, t, n)``; in place when ``out`` is ``gram``."""
    G = gram.copy() if out is None else out
    G[columns, :] *= scale[:, None]
    G[:, columns] *= scale[None, :]
    G[columns, columns] += alpha * (1.0 - scale * scale)
    if rank_two is not None:
        u, t, n = rank_two
        G += np.outer(u, t) + np.outer(t, u) + n * np.outer(t, t)
    return G


def _is_ridge(estimator: Any) -> bool:
    from sklearn.linear_model import Ridge

    return type(estimator) is Ridge


class LinearUnlearner(Unlearner):
    """Exact forgetting for ``Ridge`` and ``LinearRegression`` (see the module docstring)."""

    @staticmethod
    def estimator_types() -> tuple[type, ...]:
        from sklearn.linear_model import LinearRegression, Ridge

        return (Ridge, LinearRegression)

    @staticmethod
    def unsupported(estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> str | None:
        """Why this family cannot maintain ``estimator`` on ``X``, ``y`` (``None``: it can)."""
        if y.ndim != 1:
            return "y has several target columns; only 1-D targets are maintained exactly"
        if getattr(estimator, "positive", False):
            return "positive=True is a constrained fit without a closed form"
        if _is_ridge(estimator) and np.ndim(estimator.alpha) != 0:
            return "alpha given per target; only a scalar alpha is maintained exactly"
        return None

    @classmethod
    def fit(cls, estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> Self:
        """Fit a clone of ``estimator`` on ``X``, ``y`` (already validated) and keep its
        sufficient statistics; ``coef_`` / ``intercept_`` are replaced by the exact solution of
        the normal equations (recorded in ``adjustments``)."""
        from sklearn.base import clone

        reason = cls.unsupported(estimator, X, y)
        if reason is not None:
            raise UnlearningError(
                f"LinearUnlearner cannot maintain {type(estimator).__name__}: {reason}; use "
                "fit_for_forgetting(), which falls back to a recorded refit"
            )
        model = clone(estimator).fit(X, y)
        return cls(model, X, y)

    def __init__(self, model: Any, X: Matrix, y: npt.NDArray[Any]) -> None:
        super().__init__(model, X, y, strategy="exact")
        self.alpha = float(model.alpha) if _is_ridge(model) else 0.0
        self.fit_intercept = bool(model.fit_intercept)
        self.condition: float | None = None
        change = self._build(X, y)
        if change is not None:
            self.adjustments["coef_"] = (
                "coef_ and intercept_ recomputed from the normal equations (max abs change vs "
                f"scikit-learn's solver: {change:.3g})"
            )

    def _build(self, X: Matrix, y: npt.NDArray[Any]) -> float | None:
        """Compute the sufficient statistics from ``X``, ``y`` and solve (strategy ``exact``),
        or switch to ``refit`` if the Gram matrix is ill-conditioned. Returns the largest
        change of the parameters against the model's own (``None`` in refit mode)."""
        self.strategy, self.fallback_reason = "exact", None
        y64 = np.asarray(y, dtype=np.float64)
        d = X.shape[1]
        self._shift: FloatArray | None = None
        if self.fit_intercept:
            self._shift = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
        gram = weighted_gram(X, intercept=self.fit_intercept, shift=self._shift)
        gram[np.arange(d), np.arange(d)] += self.alpha
        rhs = _shifted_rhs(X, y64, self._shift)
        self._gram: FloatArray | None = gram
        self._rhs: FloatArray | None = rhs
        self._inverse: FloatArray | None = None
        # without an intercept, X^T 1 and 1^T y (for affine column changes)
        self._colsum: FloatArray | None = None
        self._ysum = 0.0
        if not self.fit_intercept:
            self._colsum = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
            self._ysum = float(y64.sum())
        self._lambda_min_bound = 0.0
        if self.alpha == 0.0 and not self._well_conditioned(gram):
            self._to_refit(f"the centred Gram matrix has condition number {self.condition:.3g}")
            return None
        self._inverse = self._invert(gram)
        model = self.model
        before = (np.asarray(model.coef_).copy(), float(np.ravel(model.intercept_)[0]))
        self._solve()
        return max(
            float(np.max(np.abs(model.coef_ - before[0]), initial=0.0)),
            abs(float(model.intercept_) - before[1]),
        )

    # -- the update ---------------------------------------------------------------------------
    def _update(self, removed: IntArray) -> UpdateOutcome:
        if self.strategy == "refit":
            return self._refit()
        gram, rhs, inverse = self._gram, self._rhs, self._inverse
        assert gram is not None and rhs is not None and inverse is not None
        rows = self._augmented(removed)
        y_removed = np.asarray(self._y_all[removed], dtype=np.float64)
        detail: dict[str, Any] = {}
        # Woodbury factors first (nothing changes if they fail), then in-place downdates
        woodbury = self._woodbury(rows) if 2 * rows.shape[0] < gram.shape[0] else None
        add_product(gram, rows.T, rows, -1.0)
        rhs -= rows.T @ y_removed
        bound = self._lambda_min_bound * (woodbury[2] if woodbury is not None else 0.0)
        if self.alpha == 0.0 and (woodbury is None or self._bound_too_small(gram, bound)):
            detail["condition_checked"] = True
            if not self._well_conditioned(gram):
                return self._leave_for_refit(rows, y_removed)
            bound = self._lambda_min_bound  # reset by the exact check
        if woodbury is None:
            self._inverse = self._invert(gram)
            detail["reinverted"] = True
        else:
            add_product(inverse, woodbury[0], woodbury[1], 1.0)
        self._lambda_min_bound = bound
        if self._colsum is not None:
            self._colsum = self._colsum - rows.sum(axis=0)
            self._ysum -= float(y_removed.sum())
        if self._solve():
            detail["reinverted"] = True
        if self.model.__dict__.pop("rank_", None) is not None:
            self.model.__dict__.pop("singular_", None)
            detail["attributes_removed"] = ["rank_", "singular_"]
        return UpdateOutcome("exact", detail=detail)

    # -- changed data -------------------------------------------------------------------------
    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        X = self._X_all
        y = np.asarray(self._y_all, dtype=np.float64)
        if self.strategy == "refit" or self._gram is None:
            return self._rebuild()
        gram_old, rhs_old = self._gram, self._rhs
        assert rhs_old is not None
        icpt = int(self.fit_intercept)
        d_new, d_old, fresh = columns.n_new, columns.n_old, columns.fresh
        p_new = d_new + icpt
        old_p = np.append(columns.kept_old, d_old) if icpt else columns.kept_old
        new_p = np.append(columns.kept_new, d_new) if icpt else columns.kept_new
        shift: FloatArray | None = None
        if self._shift is not None:
            shift = np.zeros(d_new)
            shift[columns.kept_new] = self._shift[columns.kept_old]
            if fresh.size:
                shift[fresh] = np.asarray(X[:, fresh].mean(axis=0), dtype=np.float64).ravel()
        # the changed rows' old and new terms, in the new column space; new columns are left
        # out here (their Gram rows come from X_new below)
        k = changed.size
        A_old, A_new = np.zeros((k, p_new)), np.zeros((k, p_new))
        y_old = np.asarray(old.y(changed), dtype=np.float64)
        if k:
            A_old[:, new_p] = _augment(old.dense_rows(changed), self._shift)[:, old_p]
            A_new[:, new_p] = _augment(dense_rows(X, changed), shift)[:, new_p]
        gram = np.zeros((p_new, p_new))
        gram[np.ix_(new_p, new_p)] = gram_old[np.ix_(old_p, old_p)]
        rhs = np.zeros(p_new)
        rhs[new_p] = rhs_old[old_p]
        if k:
            add_product(gram, A_new.T, A_new, 1.0)
            add_product(gram, A_old.T, A_old, -1.0)
            rhs += A_new.T @ y[changed] - A_old.T @ y_old
        if fresh.size:
            cross, cross_rhs = _fresh_gram(X, y, fresh, shift, bool(icpt))
            gram[fresh, :] = cross
            gram[:, fresh] = cross.T
            gram[fresh, fresh] += self.alpha
            rhs[fresh] = cross_rhs
        colsum: FloatArray | None = None
        if self._colsum is not None:
            colsum = np.zeros(d_new)
            colsum[columns.kept_new] = self._colsum[columns.kept_old]
            if k:
                colsum += A_new[:, :d_new].sum(axis=0) - A_old[:, :d_new].sum(axis=0)
            if fresh.size:
                colsum[fresh] = np.asarray(X[:, fresh].sum(axis=0), dtype=np.float64).ravel()
        detail: dict[str, Any] = {}
        if self.alpha == 0.0:
            detail["condition_checked"] = True
            if not self._well_conditioned(gram):
                reason = (
                    f"after the update the centred Gram matrix has condition number "
                    f"{self.condition:.3g} > {CONDITION_LIMIT:.0e} (rank-deficient X)"
                )
                fit_in_place(self.model, X, self._y_all)
                self._to_refit(reason)
                return UpdateOutcome("refit", detail={"reason": reason, "warm_start": False})
        inverse = self._replaced_inverse(gram, columns, old_p, new_p, A_old, A_new, detail)
        # commit (new objects throughout: restored by reference if the solve fails)
        before = (self._gram, self._rhs, self._inverse, self._shift, self._colsum, self._ysum)
        self._gram, self._rhs, self._inverse, self._shift = gram, rhs, inverse, shift
        if colsum is not None:
            self._colsum = colsum
            self._ysum += float(y[changed].sum() - y_old.sum())
        try:
            if self._solve():
                detail["reinverted"] = True
        except BaseException:
            self._gram, self._rhs, self._inverse, self._shift, self._colsum, self._ysum = before
            raise
        self._columns_changed(columns)
        return UpdateOutcome("exact", detail=detail)

    def _replaced_inverse(
        self,
        gram: FloatArray,
        columns: ColumnMap,
        old_p: IntArray,
        new_p: IntArray,
        A_old: FloatArray,
        A_new: FloatArray,
        detail: dict[str, Any],
    ) -> FloatArray:
        """``gram^{-1}`` from the stored inverse: Schur complement for the dropped columns,
        then one symmetric Woodbury update (new columns' rows/columns, changed rows); or a
        re-inversion when that is cheaper or numerically unsafe."""
        inverse, fresh, dropped = self._inverse, columns.fresh, columns.dropped
        assert inverse is not None and self._gram is not None
        p_new, f, k = gram.shape[0], fresh.size, A_old.shape[0]
        rank = dropped.size + 2 * f + 2 * k
        if 2 * rank >= p_new:
            detail["reinverted"] = True
            return self._invert(gram)
        kept = inverse[np.ix_(old_p, old_p)]
        if dropped.size:
            across = inverse[np.ix_(old_p, dropped)]
            factor = la.cho_factor(inverse[np.ix_(dropped, dropped)], lower=True)
            kept = kept - across @ la.cho_solve(factor, across.T)
        extended = np.zeros((p_new, p_new))
        extended[np.ix_(new_p, new_p)] = kept
        # placeholder for the new columns: their diagonal (so the update is well scaled)
        diagonal = gram[fresh, fresh].copy()
        diagonal[diagonal <= 0] = 1.0
        extended[fresh, fresh] = 1.0 / diagonal
        B = gram[:, fresh].copy()
        B[fresh, np.arange(f)] -= diagonal
        B[fresh, :] *= 0.5
        E = np.zeros((p_new, f))
        E[fresh, np.arange(f)] = 1.0
        U = np.hstack([E, B, A_old.T, A_new.T])
        C_inverse = np.zeros((2 * f + 2 * k, 2 * f + 2 * k))
        C_inverse[np.arange(f), f + np.arange(f)] = 1.0
        C_inverse[f + np.arange(f), np.arange(f)] = 1.0
        C_inverse[2 * f + np.arange(k), 2 * f + np.arange(k)] = -1.0
        C_inverse[2 * f + k + np.arange(k), 2 * f + k + np.arange(k)] = 1.0
        factors = low_rank_factors(extended, U, C_inverse) if U.shape[1] else None
        if U.shape[1] and factors is None:
            detail["reinverted"] = True
            return self._invert(gram)
        if factors is not None:
            add_product(extended, factors[0], factors[1], -1.0)
        detail["woodbury_rank"] = int(U.shape[1])
        return extended

    def _rebuild(self) -> UpdateOutcome:
        """In refit mode: refit on the new data, then try to maintain it exactly again."""
        reason = self.fallback_reason
        fit_in_place(self.model, self._X_all, self._y_all)
        self._build(self._X_all, self._y_all)
        detail: dict[str, Any] = {"reason": reason, "warm_start": False}
        if self.strategy == "exact":
            detail["exact_again"] = "the new Gram matrix is well conditioned: exact from now on"
            self.adjustments.pop("fallback", None)
        return UpdateOutcome("refit", detail=detail)

    def _columns_changed(self, columns: ColumnMap | None) -> None:
        """Drop the fitted attributes that describe the old matrix; record a new width."""
        model = self.model
        if model.__dict__.pop("rank_", None) is not None:
            model.__dict__.pop("singular_", None)
        if columns is not None and not columns.identity:
            model.n_features_in_ = columns.n_new
            model.__dict__.pop("feature_names_in_", None)

    def _affine(
        self, columns: IntArray, scale: FloatArray, shift: FloatArray
    ) -> UpdateOutcome | None:
        if self.strategy == "refit" or self._gram is None:
            return None
        gram, rhs, inverse = self._gram, self._rhs, self._inverse
        assert rhs is not None and inverse is not None
        p, n = gram.shape[0], self.n_rows
        detail: dict[str, Any] = {}
        # the penalty's share: diag alpha (1 - s^2) on the changed columns
        c = self.alpha * (1.0 - scale * scale)
        penalised = np.flatnonzero(c != 0.0)
        U = np.zeros((p, penalised.size))
        U[columns[penalised], np.arange(penalised.size)] = 1.0
        C_inverse = np.diag(1.0 / c[penalised])
        rank_two: tuple[FloatArray, FloatArray, float] | None = None
        if self._colsum is not None and np.any(shift != 0.0):
            # no intercept: + S sigma t^T + t sigma^T S + n t t^T = [Su t] [[0 1] [1 n]] [..]^T
            sigma = self._colsum.copy()
            sigma[columns] *= scale
            t = np.zeros(p)
            t[columns] = shift
            rank_two = (sigma, t, float(n))
            U = np.hstack([U, sigma[:, None], t[:, None]])
            C_inverse = la.block_diag(C_inverse, np.array([[-float(n), 1.0], [1.0, 0.0]]))
        new_gram: FloatArray | None = None
        bound = self._lambda_min_bound * min(1.0, float(np.min(scale * scale)))
        if self.alpha == 0.0 and (rank_two is not None or self._bound_too_small(gram, bound)):
            new_gram = _affine_gram(gram, columns, scale, self.alpha, rank_two)
            detail["condition_checked"] = True
            if not self._well_conditioned(new_gram):
                reason = (
                    f"after the affine change the centred Gram matrix has condition number "
                    f"{self.condition:.3g} > {CONDITION_LIMIT:.0e}"
                )
                fit_in_place(self.model, self.X, self.y)
                self._to_refit(reason)
                return UpdateOutcome("refit", detail={"reason": reason, "warm_start": False})
            bound = self._lambda_min_bound
        # Woodbury factors against the rescaled inverse S^-1 G^-1 S^-1, before changing it
        inv_s = np.ones(p)
        inv_s[columns] = 1.0 / scale
        factors = None
        if U.shape[1]:
            scaled_inverse_U = inv_s[:, None] * (inverse @ (inv_s[:, None] * U))
            factors = low_rank_factors(None, U, C_inverse, Z=scaled_inverse_U)
        # commit (in place, O(d k) plus the rank-k update)
        if new_gram is None:
            new_gram = _affine_gram(gram, columns, scale, self.alpha, rank_two, out=gram)
        self._gram = new_gram
        rhs[columns] *= scale
        if self._shift is not None:
            self._shift[columns] = self._shift[columns] * scale + shift
        else:
            assert self._colsum is not None
            rhs[columns] += shift * self._ysum
            self._colsum[columns] = self._colsum[columns] * scale + n * shift
        inverse[columns, :] /= scale[:, None]
        inverse[:, columns] /= scale[None, :]
        if U.shape[1] and factors is None:
            self._inverse = self._invert(new_gram)
            detail["reinverted"] = True
        elif factors is not None:
            add_product(inverse, factors[0], factors[1], -1.0)
        detail["woodbury_rank"] = int(U.shape[1])
        self._lambda_min_bound = bound
        if self._solve():
            detail["reinverted"] = True
        self._columns_changed(None)
        return UpdateOutcome("exact", detail=detail)

    def _leave_for_refit(self, rows: FloatArray, y_removed: FloatArray) -> UpdateOutcome:
        """Switch to refitting for good (the Gram matrix became singular) and refit now."""
        assert self._gram is not None and self._rhs is not None
        reason = (
            f"after removing these rows the centred Gram matrix has condition number "
            f"{self.condition:.3g} > {CONDITION_LIMIT:.0e} (rank-deficient X)"
        )
        try:
            outcome = self._refit()
        except BaseException:  # undo the in-place downdates: the removal did not happen
            add_product(self._gram, rows.T, rows, 1.0)
            self._rhs += rows.T @ y_removed
            raise
        self._to_refit(reason)
        outcome.detail["reason"] = reason
        return outcome

    def _augmented(self, removed: IntArray) -> FloatArray:
        return _augment(dense_rows(self._X_all, removed), self._shift)

    def _woodbury(self, rows: FloatArray) -> tuple[FloatArray, FloatArray, float] | None:
        """``Z, M`` with ``(G - A^T A)^{-1} = G^{-1} + Z M``, and ``lambda_min`` of the
        capacitance matrix; ``None`` when the downdated matrix is (numerically) singular."""
        assert self._inverse is not None
        Z = self._inverse @ rows.T
        capacitance = np.eye(rows.shape[0]) - rows @ Z
        capacitance = (capacitance + capacitance.T) / 2
        try:
            factor = la.cho_factor(capacitance, lower=True, check_finite=False)
        except la.LinAlgError:
            return None
        smallest = float(np.min(np.diag(factor[0])) ** 2)  # a proxy; exact below if it matters
        if smallest <= 1e-12:
            return None
        if self.alpha == 0.0:  # the exact value drives the conditioning bound
            smallest = float(la.eigvalsh(capacitance, subset_by_index=[0, 0])[0])
        return Z, la.cho_solve(factor, Z.T, check_finite=False), smallest

    def _solve(self) -> bool:
        """Set ``coef_`` / ``intercept_`` from ``G^{-1} r`` plus one refinement step against
        ``G``; if the correction shows ``G^{-1}`` has drifted (relative error above
        ``_DRIFT_LIMIT``), re-invert ``G`` and solve directly. Returns whether it re-inverted."""
        assert self._gram is not None and self._rhs is not None and self._inverse is not None
        theta = self._inverse @ self._rhs
        correction = self._inverse @ (self._rhs - self._gram @ theta)
        theta += correction
        reinverted = False
        if np.max(np.abs(correction)) > _DRIFT_LIMIT * max(np.max(np.abs(theta)), 1e-300):
            self._inverse = self._invert(self._gram)
            theta = la.cho_solve(la.cho_factor(self._gram), self._rhs)
            reinverted = True
        d = self._X_all.shape[1]
        coef = theta[:d].copy()
        intercept: Any = 0.0  # scikit-learn's value without an intercept
        if self._shift is not None:
            intercept = np.float64(theta[d] - self._shift @ coef)
        self.model.coef_ = coef
        self.model.intercept_ = intercept
        return reinverted

    @staticmethod
    def _invert(gram: FloatArray) -> FloatArray:
        factor = la.cho_factor(gram, lower=True)
        inverse = la.cho_solve(factor, np.eye(gram.shape[0]))
        return np.asarray((inverse + inverse.T) / 2, dtype=np.float64)

    # -- conditioning (alpha = 0) -------------------------------------------------------------
    def _centred(self, gram: FloatArray) -> FloatArray:
        if not self.fit_intercept:
            return gram
        d = gram.shape[0] - 1
        v = gram[:d, d]
        centred: FloatArray = gram[:d, :d] - np.outer(v, v) / gram[d, d]
        return centred

    def _well_conditioned(self, gram: FloatArray) -> bool:
        """Exact check (``O(d^3)``); also resets the eigenvalue bound."""
        centred = la.eigvalsh(self._centred(gram))
        if centred.size == 0:
            self.condition = 1.0
            return True
        self.condition = float(centred[-1] / centred[0]) if centred[0] > 0 else float("inf")
        if not 0 < self.condition <= CONDITION_LIMIT:
            return False
        self._lambda_min_bound = float(la.eigvalsh(gram, subset_by_index=[0, 0])[0])
        return self._lambda_min_bound > 0

    def _bound_too_small(self, gram: FloatArray, bound: float) -> bool:
        """Whether ``trace(C) / bound`` (an upper bound of the centred Gram matrix's condition
        number, as ``lambda_min(C) >= lambda_min(G) >= bound``) may exceed the limit."""
        trace = float(np.trace(self._centred(gram)))
        return bound <= 0 or trace / bound > CONDITION_LIMIT

    # -- refit mode ---------------------------------------------------------------------------
    def _to_refit(self, reason: str) -> None:
        self.strategy = "refit"
        self.fallback_reason = reason
        self._gram = self._rhs = self._inverse = None
        self._colsum = None
        self.adjustments["fallback"] = f"strategy 'refit' from now on: {reason}"

    def _refit(self) -> UpdateOutcome:
        from sklearn.base import clone

        fresh = clone(self.model).fit(self.X, self.y)
        self.model.__dict__.clear()
        self.model.__dict__.update(fresh.__dict__)
        return UpdateOutcome("refit", detail={"reason": self.fallback_reason, "warm_start": False})

    # -- checks -------------------------------------------------------------------------------
    def reference_fit(self) -> Any:
        """scikit-learn's fit on the current rows with an exact solver: Cholesky (Ridge) or
        lstsq (LinearRegression) on dense data; for sparse data, lsqr with ``tol=1e-12``."""
        from sklearn.base import clone

        reference = clone(self.model)
        X = self.X
        if sp.issparse(X):
            if _is_ridge(reference):
                reference.set_params(solver="lsqr", tol=1e-12)
            else:
                reference.set_params(tol=1e-12)
        elif _is_ridge(reference):
            reference.set_params(solver="cholesky")
        return reference.fit(X, self.y)

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        return {
            "coef_": np.asarray(model.coef_, dtype=np.float64),
            "intercept_": np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64)),
        }
