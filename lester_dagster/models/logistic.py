"""Forgetting for L2-penalised ``LogisticRegression``: a Newton step, then refinement.

**Objective.** scikit-learn (1.9, solvers lbfgs / newton-cg / newton-cholesky / sag / saga)
minimises ``C * sum_i loss_i + 0.5 ||coef||^2`` with an unpenalised intercept, for binary
(one coefficient row, ``loss = log(1 + e^z) - y z``) and multinomial problems (one row per class,
``loss = logsumexp(z) - z_y``). We work with the same objective divided by ``C``,
``F(W) = sum_i loss_i + ||coef||^2 / (2C)``, whose gradient is verified to vanish at
scikit-learn's optimum by the tests. The *residual gradient norm* we report is
``max |grad F| / n``: the gradient of scikit-learn's own mean-scaled objective, the quantity its
``tol`` bounds.

**Fitting for forgetting.** With scikit-learn's default ``tol=1e-4`` a model is so far from its
optimum that a warm-started refit after a deletion does zero iterations (ANCHORS.md), so
:meth:`LogisticUnlearner.fit` sets ``tol <= 1e-10`` and ``max_iter >= 1000`` (recorded in
``adjustments``) and then *polishes* scikit-learn's solution with Newton iterations until the
residual gradient is below ``tol`` (lbfgs stops on its relative function decrease around 1e-10;
also recorded). It keeps the inverse Hessian ``H^{-1}`` of ``F`` at the final model, a
``P x P`` matrix with ``P = n_outputs * (n_features + fit_intercept)``; for a multinomial model
with intercept, ``H`` is singular along "add the same constant to every intercept" (the loss
does not change), so ``u u^T`` is added for that direction ``u``: steps never move along it and
intercepts stay centred, as scikit-learn's solvers leave them.

**Forgetting rows R** (``O(P^2 k)`` plus, with the residual check, one pass over ``X``):

1. the gradient of the new objective at the current ``W`` is the stored gradient minus the
   removed rows' loss gradients (exact);
2. ``H`` loses the removed rows' terms ``U U^T`` (``U``: one column per row, or per row and
   class for multinomial, from ``diag(sqrt p) - p sqrt(p)^T``); ``H^{-1}`` is downdated in
   place with the Woodbury identity;
3. one Newton step ``W -= H^{-1} g`` (strategy ``newton``);
4. the residual gradient of the new objective is computed over the remaining rows; if it is
   above ``tol``, warm-started refinement follows: Newton iterations with the downdated
   ``H^{-1}`` and a backtracking line search, recomputing ``H`` at the current point when
   convergence is slow (strategy ``newton+refine``; the detail gives the counts).

With ``residual_check=False`` step 4 is skipped: the update costs ``O(P^2 k)`` only, the
record's ``residual_grad_norm`` is ``None``, and the stored gradient is taken as zero (the
Newton step's first-order prediction).

**Changed data** (:meth:`~LogisticUnlearner.update`). If only rows changed (the columns map to
themselves), the changed rows' old gradient and Hessian terms are replaced by their new ones at
the current ``W`` (one symmetric Woodbury update of ``H^{-1}``, rank 2 per changed row and
output), then the Newton step and residual check as above. If columns changed, the margins of
every row change, and with them the Hessian: the current parameters are mapped to the new
columns (0 for new columns, dropped columns leave), then damped Newton iterations run to
``tol`` with the Hessian recomputed at the start and again at the final point (so the stored
``H^{-1}`` is valid for later removals): ``O(n P^2)`` per Hessian, counted in the record's
detail (``hessians_computed``, ``hessian_seconds``). A change of the classes present in
``y_new`` refits (tightly, then polishes; strategy ``refit``).

**Affine column changes** (:meth:`~LogisticUnlearner.affine_columns`, with an intercept): for
``x_j -> s_j x_j + t_j`` the reparametrisation ``w'_j = w_j / s_j``, ``b' = b - sum_j t_j w'_j``
leaves every margin, hence the data loss, unchanged; only the penalty changes (``w_j^2`` becomes
``s_j^2 w'_j^2`` in the new variables). The change of variables ``theta' = T theta`` is applied
to the gradient (``T^{-T}``) and to ``H^{-1}`` (``T H^{-1} T^T``, ``O(P k)`` on a copy), the
penalty change ``diag(lambda (1 - s_j^2))`` (and, for multinomial models, the moved
null-direction term) by a Woodbury update of rank ``k * outputs (+ 2)``; then the Newton step and
the usual residual check / refinement. No Hessian is recomputed unless the refinement needs it
(or the Woodbury capacitance is singular). Without an intercept the margins change;
:meth:`~lester_dagster.models.base.Unlearner.affine_columns` then goes through ``update``.

**Falls back to a recorded refit** when a class loses its last row (the model's classes change;
with one class left scikit-learn cannot fit and :class:`UnlearningError` is raised instead).
Configurations outside this objective (L1 / elastic-net, ``C=inf``, liblinear, which penalises
the intercept, ``class_weight``, more than ``MAX_PARAMETERS`` parameters) are refitted by
:func:`~lester_dagster.models.dispatch.fit_for_forgetting`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from lester_dagster.errors import UnlearningError, preview
from lester_dagster.frame.provenance import sorted_unique
from lester_dagster.models.base import StoredRows, Unlearner, UpdateOutcome
from lester_dagster.models.linalg import (
    ColumnMap,
    FloatArray,
    IntArray,
    Matrix,
    add_product,
    dense_rows,
    low_rank_factors,
)
from lester_dagster.models.objective import LogisticObjective, newton_solve, woodbury_factors
from lester_dagster.models.refit import fit_in_place

__all__ = ["MAX_PARAMETERS", "SOLVERS", "LogisticUnlearner"]

#: Solvers that minimise the objective above (liblinear penalises the intercept).
SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
#: Largest number of parameters for which the inverse Hessian is kept (6000^2 doubles: 288 MB).
MAX_PARAMETERS = 6000


def _penalty(estimator: Any) -> str | None:
    """The penalty scikit-learn 1.9 derives from ``penalty`` / ``l1_ratio`` / ``C``."""
    if estimator.penalty != "deprecated":
        return str(estimator.penalty) if estimator.penalty is not None else None
    if not np.isfinite(estimator.C):
        return None
    if estimator.l1_ratio in (0, None):
        return "l2"
    return "l1" if estimator.l1_ratio == 1 else "elasticnet"


class LogisticUnlearner(Unlearner):
    """Newton-step forgetting for ``LogisticRegression`` (see the module docstring)."""

    @staticmethod
    def estimator_types() -> tuple[type, ...]:
        from sklearn.linear_model import LogisticRegression

        return (LogisticRegression,)

    @staticmethod
    def unsupported(estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> str | None:
        """Why this family cannot maintain ``estimator`` on ``X``, ``y`` (``None``: it can)."""
        if y.ndim != 1:
            return "y must be 1-D"
        if _penalty(estimator) != "l2" or not np.isfinite(estimator.C):
            return f"penalty {_penalty(estimator)!r} (only a finite L2 penalty is maintained)"
        if estimator.solver not in SOLVERS:
            return f"solver={estimator.solver!r} penalises the intercept (use one of {SOLVERS})"
        if estimator.class_weight is not None:
            return "class_weight is not maintained (it reweights rows, 'balanced' by counts)"
        n_classes = np.unique(y).size
        size = (1 if n_classes <= 2 else n_classes) * (X.shape[1] + int(estimator.fit_intercept))
        if size > MAX_PARAMETERS:
            return f"{size} parameters: an inverse Hessian of that size is not kept"
        return None

    @classmethod
    def fit(
        cls,
        estimator: Any,
        X: Matrix,
        y: npt.NDArray[Any],
        *,
        tol: float = 1e-10,
        max_iter: int = 1000,
        residual_check: bool = True,
    ) -> Self:
        """Fit a tightly converged clone of ``estimator`` on ``X``, ``y`` (already validated).

        ``tol`` / ``max_iter`` are imposed on the clone if the estimator's own are looser, and
        ``tol`` is also the residual gradient norm above which updates are refined.
        """
        reason = cls.unsupported(estimator, X, y)
        if reason is not None:
            raise UnlearningError(
                f"LogisticUnlearner cannot maintain this LogisticRegression: {reason}; use "
                "fit_for_forgetting(), which falls back to a recorded refit"
            )
        model, adjustments = _tight_clone(estimator, tol, max_iter)
        adjustments.update(_fit_quietly(model, X, y))
        return cls(model, X, y, tol=tol, residual_check=residual_check, adjustments=adjustments)

    def __init__(
        self,
        model: Any,
        X: Matrix,
        y: npt.NDArray[Any],
        *,
        tol: float = 1e-10,
        residual_check: bool = True,
        adjustments: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, X, y, strategy="newton+refine", adjustments=adjustments)
        self.tol = tol
        self.residual_check = residual_check
        self._setup()

    def _setup(self) -> None:
        """Encode the labels, polish the model to the optimum and factor its Hessian."""
        classes = self.model.classes_
        if classes.size < 2:
            raise UnlearningError(f"LogisticRegression needs two classes, got {classes.tolist()}")
        self._labels = np.searchsorted(classes, self._y_all).astype(np.intp)
        self._counts = np.bincount(self._labels[self._alive], minlength=classes.size)
        self._objective = LogisticObjective(
            self._X_all, self._labels, classes.size, bool(self.model.fit_intercept), self.model.C
        )
        W = self._objective.from_model(self.model)
        result = newton_solve(self._objective, W, self._alive_mask, self.tol, final_hessian=True)
        self.adjustments["polish"] = {
            "newton_steps": result.iterations,
            "hessians": result.hessians,
            "residual_before": result.residual_before,
            "residual_after": result.residual,
            "max_abs_change": float(np.max(np.abs(result.W - W))),
        }
        self._W, self._gradient, self._inverse = result.W, result.gradient, result.inverse
        self._objective.to_model(self._W, self.model)

    # -- the update ---------------------------------------------------------------------------
    def _check_removal(self, removed: IntArray) -> None:
        left = self._counts - np.bincount(self._labels[removed], minlength=self._counts.size)
        if np.count_nonzero(left) < 2:
            remaining = self.model.classes_[left > 0].tolist()
            raise UnlearningError(
                f"removing these rows leaves only class {preview(remaining)} in the training "
                "data; LogisticRegression needs at least two classes (scikit-learn's fit "
                "raises on such data). Keep rows of two classes, or drop the model"
            )

    def _subset_rows(self, keep: IntArray, X_kept: Matrix) -> None:
        self._labels = self._labels[keep]
        self._objective.replace_rows(X_kept, self._labels)  # one matrix for both, pickled once

    def _update(self, removed: IntArray) -> UpdateOutcome:
        left = self._counts - np.bincount(self._labels[removed], minlength=self._counts.size)
        if np.any(left == 0):
            return self._refit_without(np.flatnonzero(left == 0))
        started = time.perf_counter()
        objective, W = self._objective, self._W
        rows = dense_rows(self._X_all, removed)
        gradient = self._gradient - objective.rows_gradient(rows, self._labels[removed], W)
        detail: dict[str, Any] = {}
        factors = woodbury_factors(self._inverse, objective.hessian_factor(rows, W))
        if factors is None:  # numerically singular downdate: recompute exactly
            inverse = objective.inverse_hessian(W, self._alive_mask)
            detail["hessian_recomputed"] = True
        else:  # in place; undone if anything below fails
            inverse = self._inverse
            add_product(inverse, factors[0], factors[1], 1.0)
        try:
            outcome = self._step(W, gradient, inverse, detail, started)
        except BaseException:
            if factors is not None:
                add_product(self._inverse, factors[0], factors[1], -1.0)
            raise
        self._counts = left
        return outcome

    def _step(
        self,
        W: FloatArray,
        gradient: FloatArray,
        inverse: FloatArray,
        detail: dict[str, Any],
        started: float,
        objective: LogisticObjective | None = None,
    ) -> UpdateOutcome:
        """The Newton step with the downdated ``inverse``, then the residual check/refinement;
        ``objective`` (default: the current one) becomes the current one on success."""
        objective = objective or self._objective
        W = W - objective.unflatten(inverse @ gradient.ravel())
        detail["newton_seconds"] = time.perf_counter() - started
        residual: float | None = None
        strategy: Any = "newton"
        if self.residual_check:
            result = newton_solve(objective, W, self._alive_mask, self.tol, inverse=inverse)
            W, gradient, inverse, residual = (
                result.W,
                result.gradient,
                result.inverse,
                result.residual,
            )
            if result.iterations:
                strategy = "newton+refine"
                detail.update(
                    refine_steps=result.iterations,
                    hessians_recomputed=result.hessians,
                    residual_after_newton=result.residual_before,
                )
            if result.residual > self.tol:
                detail["converged"] = False
        else:
            gradient = np.zeros_like(gradient)
            detail["residual_check"] = False
        self._W, self._gradient, self._inverse = W, gradient, inverse
        self._objective, self._labels = objective, objective.labels
        objective.to_model(W, self.model)
        return UpdateOutcome(strategy, residual_grad_norm=residual, detail=detail)

    def _refit_without(self, emptied: IntArray) -> UpdateOutcome:
        classes = self.model.classes_[emptied].tolist()
        fit_in_place(self.model, self.X, self.y)
        self.compact()
        self._setup()
        return UpdateOutcome(
            "refit",
            residual_grad_norm=self.adjustments["polish"]["residual_after"],
            detail={
                "reason": f"class(es) {preview(classes)} have no rows left: the model's "
                "classes change, so it was refitted (tightly, then polished)",
                "classes_removed": classes,
                "warm_start": False,
            },
        )

    # -- changed data -------------------------------------------------------------------------
    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        model = self.model
        present = sorted_unique(self._y_all)
        if present.size < 2:
            raise UnlearningError(
                f"y_new has only class {preview(present.tolist())}; LogisticRegression needs "
                "at least two classes (scikit-learn's fit raises on such data)"
            )
        if present.size != model.classes_.size or not np.array_equal(present, model.classes_):
            return self._refit_classes(present)
        outputs = self._objective.outputs
        size = outputs * (columns.n_new + int(model.fit_intercept))
        if size > MAX_PARAMETERS:
            raise UnlearningError(
                f"after the update the model has {size} parameters > MAX_PARAMETERS "
                f"({MAX_PARAMETERS}): its inverse Hessian is not kept; fit a new model with "
                "fit_for_forgetting() (which refits such models)"
            )
        started = time.perf_counter()
        labels = np.searchsorted(model.classes_, self._y_all).astype(np.intp)
        objective = LogisticObjective(
            self._X_all, labels, model.classes_.size, bool(model.fit_intercept), model.C
        )
        if columns.identity:
            return self._replace_rows(old, changed, objective, started)
        W_old, d_old, d_new = self._W, columns.n_old, columns.n_new
        W = np.zeros((outputs, objective.width))
        W[:, columns.kept_new] = W_old[:, columns.kept_old]
        if model.fit_intercept:
            W[:, d_new] = W_old[:, d_old]
        mask = self._alive_mask
        result = newton_solve(objective, W, mask, self.tol, final_hessian=True)
        detail: dict[str, Any] = {
            "newton_steps": result.iterations,
            "hessians_computed": result.hessians,
            "hessian_seconds": objective.hessian_seconds,
            "residual_before": result.residual_before,
            "reason": "columns changed: every margin moves, the Hessian is recomputed",
        }
        if result.residual > self.tol:
            detail["converged"] = False
        self._W, self._gradient, self._inverse = result.W, result.gradient, result.inverse
        self._objective, self._labels = objective, labels
        self._counts = np.bincount(labels, minlength=model.classes_.size)
        objective.to_model(result.W, model)
        model.n_features_in_ = d_new
        model.__dict__.pop("feature_names_in_", None)
        strategy: Any = "newton+refine" if result.iterations > 1 else "newton"
        return UpdateOutcome(strategy, residual_grad_norm=result.residual, detail=detail)

    def _replace_rows(
        self, old: StoredRows, changed: IntArray, objective: LogisticObjective, started: float
    ) -> UpdateOutcome:
        """Only rows changed: swap their gradient and Hessian terms at the current ``W``."""
        W = self._W
        rows_old = old.dense_rows(changed)
        labels_old = self._labels[old.original(changed)]
        rows_new = dense_rows(self._X_all, changed)
        labels_new = objective.labels[changed]
        gradient = (
            self._gradient
            - objective.rows_gradient(rows_old, labels_old, W)
            + objective.rows_gradient(rows_new, labels_new, W)
        )
        U_old = objective.hessian_factor(rows_old, W)
        U_new = objective.hessian_factor(rows_new, W)
        signs = np.concatenate([-np.ones(U_old.shape[1]), np.ones(U_new.shape[1])])
        factors = low_rank_factors(self._inverse, np.hstack([U_old, U_new]), np.diag(signs))
        detail: dict[str, Any] = {}
        if factors is None:
            inverse = objective.inverse_hessian(W, self._alive_mask)
            detail["hessian_recomputed"] = True
        else:
            inverse = self._inverse
            add_product(inverse, factors[0], factors[1], -1.0)
        try:
            outcome = self._step(W, gradient, inverse, detail, started, objective)
        except BaseException:
            if factors is not None:
                add_product(self._inverse, factors[0], factors[1], 1.0)
            raise
        self._counts = np.bincount(objective.labels, minlength=self._counts.size)
        return outcome

    def _refit_classes(self, present: npt.NDArray[Any]) -> UpdateOutcome:
        before = self.model.classes_
        fit_in_place(self.model, self.X, self.y)
        self._setup()
        return UpdateOutcome(
            "refit",
            residual_grad_norm=self.adjustments["polish"]["residual_after"],
            detail={
                "reason": "the classes in y_new differ from the model's: refitted (tightly, "
                "then polished)",
                "classes_removed": [c for c in before.tolist() if c not in present.tolist()],
                "classes_added": [c for c in present.tolist() if c not in before.tolist()],
                "warm_start": False,
            },
        )

    def _affine(
        self, columns: IntArray, scale: FloatArray, shift: FloatArray
    ) -> UpdateOutcome | None:
        if not self.model.fit_intercept:
            return None  # the margins change: no reparametrisation absorbs it
        started = time.perf_counter()
        objective, W = self._objective, self._W
        d, width, outputs = objective.n_features, objective.width, objective.outputs
        penalty = objective.penalty
        # theta' = T theta: w'_j = w_j / s_j, b' = b - sum_j t_j w'_j (margins unchanged)
        W_new = W.copy()
        W_new[:, columns] = W[:, columns] / scale
        W_new[:, d] = W[:, d] - W_new[:, columns] @ shift
        # gradient: T^{-T} (data-loss gradient) + the new penalty's gradient
        loss_gradient = self._gradient.copy()
        loss_gradient[:, :d] -= penalty * W[:, :d]
        gradient = loss_gradient.copy()
        gradient[:, columns] = loss_gradient[:, columns] * scale + np.outer(
            loss_gradient[:, d], shift
        )
        gradient[:, :d] += penalty * W_new[:, :d]
        # H^{-1} -> T H^{-1} T^T (a copy: the stored one stays valid if anything fails)
        inverse = self._inverse.copy()
        g = -shift / scale
        for o in range(outputs):
            J, b = o * width + columns, o * width + d
            inverse[b, :] += g @ inverse[J, :]
            inverse[J, :] /= scale[:, None]
            inverse[:, b] += inverse[:, J] @ g
            inverse[:, J] /= scale[None, :]
        # the penalty change diag(lambda (1 - s^2)) and, for multinomial models, the null
        # direction term u u^T, which the change of variables moved to v v^T
        c = penalty * (1.0 - scale * scale)
        moved = np.flatnonzero(c != 0.0)
        U = np.zeros((objective.size, outputs * moved.size))
        C_inverse_diag = np.tile(1.0 / c[moved], outputs)
        for o in range(outputs):
            U[o * width + columns[moved], o * moved.size + np.arange(moved.size)] = 1.0
        if outputs > 1:
            u = np.zeros(objective.size)
            u[np.arange(outputs) * width + d] = 1.0 / np.sqrt(outputs)
            v = u.copy()
            for o in range(outputs):
                v[o * width + columns] = shift / np.sqrt(outputs)
            U = np.hstack([U, v[:, None], u[:, None]])
            C_inverse_diag = np.append(C_inverse_diag, [-1.0, 1.0])
        detail: dict[str, Any] = {"woodbury_rank": int(U.shape[1])}
        before = objective.X
        objective.replace_rows(self._X_all, objective.labels)  # the transformed matrix
        try:
            if U.shape[1]:
                factors = low_rank_factors(inverse, U, np.diag(C_inverse_diag))
                if factors is None:
                    inverse = objective.inverse_hessian(W_new, self._alive_mask)
                    detail["hessian_recomputed"] = True
                else:
                    add_product(inverse, factors[0], factors[1], -1.0)
            return self._step(W_new, gradient, inverse, detail, started)
        except BaseException:
            objective.replace_rows(before, objective.labels)
            raise

    # -- checks -------------------------------------------------------------------------------
    def reference_fit(self) -> Any:
        """A tightly converged refit on the current rows (same parameters, polished)."""
        from sklearn.base import clone

        X, y = self.X, self.y
        model = clone(self.model)
        _fit_quietly(model, X, y)
        labels = np.searchsorted(model.classes_, y).astype(np.intp)
        objective = LogisticObjective(
            X, labels, model.classes_.size, bool(model.fit_intercept), model.C
        )
        mask = np.ones(X.shape[0], dtype=bool)
        result = newton_solve(objective, objective.from_model(model), mask, self.tol)
        objective.to_model(result.W, model)
        return model

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        """``coef_`` and ``intercept_`` (centred for multinomial models, where only the
        differences between intercepts matter)."""
        intercept = np.array(model.intercept_, dtype=np.float64)
        if intercept.size > 1:
            intercept -= intercept.mean()
        return {"coef_": np.asarray(model.coef_, dtype=np.float64), "intercept_": intercept}

    def residual(self) -> float:
        """The current residual gradient norm ``max |grad F| / n`` (one pass over ``X``)."""
        _, gradient = self._objective.loss_gradient(self._W, self._alive_mask)
        return float(np.max(np.abs(gradient))) / self.n_rows


def _tight_clone(estimator: Any, tol: float, max_iter: int) -> tuple[Any, dict[str, Any]]:
    from sklearn.base import clone

    model = clone(estimator)
    changed: dict[str, Any] = {}
    if model.tol > tol:
        changed["tol"] = f"{model.tol:g} -> {tol:g} (forgetting needs the optimum)"
        model.set_params(tol=tol)
    if model.max_iter < max_iter:
        changed["max_iter"] = f"{model.max_iter} -> {max_iter} (to reach tol={tol:g})"
        model.set_params(max_iter=max_iter)
    return model, changed


def _fit_quietly(model: Any, X: Matrix, y: npt.NDArray[Any]) -> dict[str, Any]:
    """Fit ``model``; convergence warnings are recorded, not shown (polishing follows)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    messages = sorted({str(w.message).splitlines()[0] for w in caught})
    return {"fit_warnings": messages} if messages else {}
