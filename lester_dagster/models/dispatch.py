"""Choosing the unlearner for an estimator: :func:`fit_for_forgetting`.

Dispatch is on the estimator's *exact* type (a subclass may change what ``fit`` does, so it
gets the safe strategy, a recorded refit) and then on its configuration: a family declares what
it cannot maintain (``unsupported``), and such estimators are refitted too, with the reason in
``fallback_reason`` and in every update record. Nothing falls back silently.

============================================  =====================  =====================
estimator                                     unlearner              strategy
============================================  =====================  =====================
Ridge, LinearRegression                       LinearUnlearner        exact (refit once a
                                                                     LinearRegression's Gram
                                                                     matrix is singular)
MultinomialNB, ComplementNB, BernoulliNB      DiscreteNBUnlearner    exact
GaussianNB                                    GaussianNBUnlearner    exact
KNeighbors*, RadiusNeighbors*,                NeighborsUnlearner     exact (index rebuilt)
NearestNeighbors
LogisticRegression (finite L2, lbfgs /        LogisticUnlearner      newton / newton+refine
newton-cg / newton-cholesky / sag / saga)
anything else (SGD*, LinearSVC, trees,        RefitUnlearner         refit
ensembles, MLPs, pipelines, other configs)
============================================  =====================  =====================

For family options (e.g. ``LogisticUnlearner.fit(..., residual_check=False)`` or
``RefitUnlearner.fit(..., warm_start=True)``) call the family's ``fit`` directly.

When upstream encoders change the remaining rows' columns, ``unlearner.update(X_new, y_new,
changed_rows=..., old_columns=...)`` and ``unlearner.affine_columns(columns, scale, shift)``
keep the model equal to a refit on the new data:

==========================  ===============================  ==================================
family                      update()                         affine_columns()
==========================  ===============================  ==================================
Ridge, LinearRegression     exact: Gram pieces + Woodbury    exact, O(d^2 k), rows not read
                            (re-inversion if cheaper)
LogisticRegression          newton(+refine): rows only: one  intercept: reparametrised, Newton
                            Woodbury swap; columns changed:  step for the penalty change, no
                            Hessian recomputed (O(n P^2))    Hessian; else via update()
MultinomialNB, ComplementNB exact: counts of changed rows    via update() (columns recounted)
BernoulliNB                 and new columns
GaussianNB                  exact: recount (a fit)           exact, O(classes k)
neighbours                  exact: index rebuilt             via update()
RefitUnlearner              refit                            via update()
==========================  ===============================  ==================================
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from lester_dagster.models.base import Unlearner
from lester_dagster.models.linalg import as_training_data
from lester_dagster.models.linear import LinearUnlearner
from lester_dagster.models.logistic import LogisticUnlearner
from lester_dagster.models.naive_bayes import DiscreteNBUnlearner, GaussianNBUnlearner
from lester_dagster.models.refit import NeighborsUnlearner, RefitUnlearner

__all__ = ["fit_for_forgetting", "unlearner_for"]


def unlearner_for(estimator: Any, X: Any, y: npt.ArrayLike) -> tuple[type[Unlearner], str | None]:
    """The unlearner class for ``estimator`` on ``X``, ``y``, and why it refits (or ``None``)."""
    X, y_arr = as_training_data(X, y)
    kind = type(estimator)
    for family in (LinearUnlearner, LogisticUnlearner):
        if kind in family.estimator_types():
            reason = family.unsupported(estimator, X, y_arr)
            if reason is None:
                return family, None
            return RefitUnlearner, f"{kind.__name__}: {reason}"
    for simple in (DiscreteNBUnlearner, GaussianNBUnlearner, NeighborsUnlearner):
        if kind in simple.estimator_types():
            if y_arr.ndim != 1 and simple is not NeighborsUnlearner:
                return RefitUnlearner, f"{kind.__name__}: y must be 1-D"
            return simple, None
    return RefitUnlearner, f"no incremental update for {kind.__name__}"


def fit_for_forgetting(estimator: Any, X: Any, y: npt.ArrayLike) -> Unlearner:
    """Fit a clone of ``estimator`` on ``X``, ``y`` so that it can forget rows later.

    ``X``: a dense array or a scipy.sparse matrix (kept as float64 CSR; it is not copied when
    it already is one, so do not modify it afterwards); ``y``: one target per row. Returns the
    family's :class:`~lester_dagster.models.base.Unlearner`; its ``model`` is the fitted
    estimator, its ``strategy`` what :meth:`~Unlearner.forget` will do, and its
    ``adjustments`` what differs from a plain ``estimator.fit(X, y)`` (for LogisticRegression:
    the tightened ``tol`` / ``max_iter`` and the Newton polish; for Ridge / LinearRegression:
    coefficients recomputed from the normal equations).
    """
    X_arr, y_arr = as_training_data(X, y)
    family, reason = unlearner_for(estimator, X_arr, y_arr)
    if family is RefitUnlearner:
        return RefitUnlearner.fit(estimator, X_arr, y_arr, reason=reason or "")
    return family.fit(estimator, X_arr, y_arr)
