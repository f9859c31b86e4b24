"""Training and decremental updates (unlearning) per model family.

``fit_for_forgetting(estimator, X, y)`` fits a clone of a scikit-learn estimator together with
what it needs to forget training rows later; ``unlearner.forget(rows)`` removes rows (positions
in the current training matrix), updates ``unlearner.model`` in place and returns an
:class:`~lester_dagster.features.record.UpdateRecord`; ``unlearner.update(X_new, y_new, ...)``
and ``unlearner.affine_columns(columns, scale, shift)`` absorb changed columns of the remaining
rows (an encoder's fitted state moved). See :mod:`.dispatch` for which family (and strategy)
each estimator gets.
"""

from __future__ import annotations

from lester_dagster.models.base import Unlearner, UpdateOutcome
from lester_dagster.models.dispatch import fit_for_forgetting, unlearner_for
from lester_dagster.models.linalg import AffineColumns
from lester_dagster.models.linear import LinearUnlearner
from lester_dagster.models.logistic import LogisticUnlearner
from lester_dagster.models.naive_bayes import DiscreteNBUnlearner, GaussianNBUnlearner
from lester_dagster.models.refit import NeighborsUnlearner, RefitUnlearner

__all__ = [
    "AffineColumns",
    "DiscreteNBUnlearner",
    "GaussianNBUnlearner",
    "LinearUnlearner",
    "LogisticUnlearner",
    "NeighborsUnlearner",
    "RefitUnlearner",
    "Unlearner",
    "UpdateOutcome",
    "fit_for_forgetting",
    "unlearner_for",
]
