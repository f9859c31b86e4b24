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
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.linalg as la
import scipy.sparse as sp

from lester_dagster.errors import UnlearningError
from lester_dagster.models.base import (
    FloatArray,
    IntArray,
    Matrix,
    Unlearner,
    UpdateOutcome,
    add_product,
    dense_rows,
    weighted_gram,
)

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
        self._lambda_min_bound = 0.0
        self.condition: float | None = None
        if self.alpha == 0.0 and not self._well_conditioned(gram):
            self._to_refit(f"the centred Gram matrix has condition number {self.condition:.3g}")
            return
        self._inverse = self._invert(gram)
        before = (np.asarray(model.coef_).copy(), float(np.ravel(model.intercept_)[0]))
        self._solve()
        change = max(
            float(np.max(np.abs(model.coef_ - before[0]), initial=0.0)),
            abs(float(model.intercept_) - before[1]),
        )
        self.adjustments["coef_"] = (
            "coef_ and intercept_ recomputed from the normal equations (max abs change vs "
            f"scikit-learn's solver: {change:.3g})"
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
        if self._solve():
            detail["reinverted"] = True
        if self.model.__dict__.pop("rank_", None) is not None:
            self.model.__dict__.pop("singular_", None)
            detail["attributes_removed"] = ["rank_", "singular_"]
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
        rows = dense_rows(self._X_all, removed)
        if self._shift is None:
            return rows
        return np.hstack([rows - self._shift, np.ones((rows.shape[0], 1))])

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
