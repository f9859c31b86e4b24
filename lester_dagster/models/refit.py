"""Families whose update *is* a fit on the remaining rows.

* :class:`NeighborsUnlearner` (``KNeighbors*``, ``RadiusNeighbors*``, ``NearestNeighbors``):
  the fitted state of a neighbours model is its training data plus a search index, so dropping
  the rows and rebuilding the index (one ``fit`` on the remaining rows: a copy, plus
  ``O(n log n)`` for a tree index) is the exact update. Strategy ``exact``. As with
  scikit-learn, a model left with fewer rows than ``n_neighbors`` fits, but ``predict`` raises.
* :class:`RefitUnlearner` (everything else: ``SGDClassifier``, ``LinearSVC``, trees, ensembles,
  MLPs, pipelines, and configurations the other families do not cover, e.g. an L1-penalised
  LogisticRegression): an explicit, recorded refit on the remaining rows. Strategy ``refit``;
  the record's detail names the reason (``fallback_reason``) and whether the refit was warm:

  - ``warm_start=False`` (default): a cold refit of a clone, i.e. exactly what ``fit`` on the
    remaining rows gives (bit-identical when the estimator's ``random_state`` is fixed). Nothing
    learnt from the removed rows survives.
  - ``warm_start=True`` (estimators with a ``warm_start`` parameter: SGD*, MLP*, ensembles,
    ...): the refit starts from the current parameters (scikit-learn's ``warm_start``; for SGD
    the learning-rate schedule restarts, for an MLP ``max_iter`` more epochs run, for forests
    only *new* trees would be added, so they do not qualify and refit cold). Faster, but the
    result still depends on the removed rows through its starting point; the record says so.

Both classes fit on ``X_new`` in :meth:`~lester_dagster.models.base.Unlearner.update`
(``affine_columns`` goes through it); a warm refit needs an unchanged number of columns.

In both classes the fit happens on a clone, whose state is swapped into ``model`` only when it
succeeded: a refit that fails (e.g. ``LinearSVC`` left with one class) raises
:class:`~lester_dagster.errors.UnlearningError` and leaves the model as it was.
"""

from __future__ import annotations

import copy
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from lester_dagster.errors import UnlearningError
from lester_dagster.models.base import StoredRows, Unlearner, UpdateOutcome
from lester_dagster.models.linalg import ColumnMap, FloatArray, IntArray, Matrix

__all__ = ["NeighborsUnlearner", "RefitUnlearner", "fit_in_place"]

#: Estimators whose ``warm_start`` adds members instead of continuing to train: a warm refit
#: would keep every member fitted on the removed rows, so they are always refitted cold.
_GROWING_ENSEMBLES = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "BaggingClassifier",
    "BaggingRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "IsolationForest",
)


def fit_in_place(model: Any, X: Matrix, y: npt.NDArray[Any], *, warm: bool = False) -> None:
    """Fit ``model`` on ``X``, ``y`` through a copy and swap the fitted state in on success.

    ``warm=False`` fits a clone (unfitted copy); ``warm=True`` a deep copy with
    ``warm_start=True``, restored to the model's own setting afterwards. A failing fit raises
    :class:`UnlearningError` (the model is untouched).
    """
    from sklearn.base import clone

    if warm:
        fresh = copy.deepcopy(model)
        own = fresh.get_params()["warm_start"]
        fresh.set_params(warm_start=True)
    else:
        fresh = clone(model)
    try:
        fresh.fit(X, y)
    except Exception as exc:
        raise UnlearningError(
            f"refitting {type(model).__name__} on the remaining {X.shape[0]} rows failed "
            f"({type(exc).__name__}: {exc}); the model was left unchanged. Keep rows that "
            "the model needs (e.g. of at least two classes) or drop the model"
        ) from exc
    if warm:
        fresh.set_params(warm_start=own)
    model.__dict__.clear()
    model.__dict__.update(fresh.__dict__)


class NeighborsUnlearner(Unlearner):
    """Exact forgetting for neighbours models: drop the rows, rebuild the index."""

    @staticmethod
    def estimator_types() -> tuple[type, ...]:
        from sklearn.neighbors import (
            KNeighborsClassifier,
            KNeighborsRegressor,
            NearestNeighbors,
            RadiusNeighborsClassifier,
            RadiusNeighborsRegressor,
        )

        return (
            KNeighborsClassifier,
            KNeighborsRegressor,
            RadiusNeighborsClassifier,
            RadiusNeighborsRegressor,
            NearestNeighbors,
        )

    @classmethod
    def fit(cls, estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> Self:
        """Fit a clone of ``estimator`` on ``X``, ``y`` (already validated)."""
        from sklearn.base import clone

        return cls(clone(estimator).fit(X, y), X, y)

    def __init__(self, model: Any, X: Matrix, y: npt.NDArray[Any]) -> None:
        super().__init__(model, X, y, strategy="exact")

    def _update(self, removed: IntArray) -> UpdateOutcome:
        fit_in_place(self.model, self.X, self.y)
        return UpdateOutcome("exact", detail={"index": str(self.model._fit_method)})

    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        fit_in_place(self.model, self._X_all, self._y_all)
        return UpdateOutcome("exact", detail={"index": str(self.model._fit_method)})

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        """The stored training rows and their (encoded) targets: the whole fitted state."""
        fitted = model._fit_X
        params = {"_fit_X": np.asarray(fitted.toarray() if sp.issparse(fitted) else fitted, float)}
        target = getattr(model, "_y", None)
        if target is not None:
            params["_y"] = np.asarray(target, dtype=np.float64)
        return params


class RefitUnlearner(Unlearner):
    """Forgetting by an explicit, recorded refit on the remaining rows (see module docs)."""

    def __init__(
        self,
        model: Any,
        X: Matrix,
        y: npt.NDArray[Any],
        *,
        reason: str,
        warm_start: bool = False,
    ) -> None:
        super().__init__(model, X, y, strategy="refit")
        self.fallback_reason = reason
        params = model.get_params(deep=False)
        self.warm_start = (
            warm_start and "warm_start" in params and type(model).__name__ not in _GROWING_ENSEMBLES
        )
        if warm_start and not self.warm_start:
            self.adjustments["warm_start"] = (
                f"{type(model).__name__} cannot continue training (no warm_start parameter, "
                "or warm_start adds ensemble members): refits are cold"
            )

    @classmethod
    def fit(
        cls,
        estimator: Any,
        X: Matrix,
        y: npt.NDArray[Any],
        *,
        reason: str = "no incremental update for this estimator",
        warm_start: bool = False,
    ) -> Self:
        """Fit a clone of ``estimator`` on ``X``, ``y`` (already validated)."""
        from sklearn.base import clone

        return cls(clone(estimator).fit(X, y), X, y, reason=reason, warm_start=warm_start)

    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        # a warm start needs the same number of features
        warm = self.warm_start and columns.n_new == columns.n_old
        fit_in_place(self.model, self._X_all, self._y_all, warm=warm)
        return UpdateOutcome("refit", detail={"reason": self.fallback_reason, "warm_start": warm})

    def _update(self, removed: IntArray) -> UpdateOutcome:
        fit_in_place(self.model, self.X, self.y, warm=self.warm_start)
        detail: dict[str, Any] = {"reason": self.fallback_reason, "warm_start": self.warm_start}
        if self.warm_start:
            detail["note"] = (
                "warm-started from the parameters learnt with the removed rows: not equal to a "
                "cold refit, use check=True to measure the distance"
            )
        return UpdateOutcome("refit", detail=detail)
