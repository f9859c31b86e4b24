"""Which family each estimator gets, and that nothing falls back silently."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDRegressor
from sklearn.naive_bayes import BernoulliNB, CategoricalNB, ComplementNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

from lester_dagster.models import (
    DiscreteNBUnlearner,
    GaussianNBUnlearner,
    LinearUnlearner,
    LogisticUnlearner,
    NeighborsUnlearner,
    RefitUnlearner,
    fit_for_forgetting,
    unlearner_for,
)

X = np.abs(np.random.default_rng(0).normal(size=(40, 3)))
Y = np.arange(40) % 2


class MyRidge(Ridge):
    """A subclass may change what fit does."""


@pytest.mark.parametrize(
    ("estimator", "family", "strategy"),
    [
        (Ridge(), LinearUnlearner, "exact"),
        (LinearRegression(), LinearUnlearner, "exact"),
        (MultinomialNB(), DiscreteNBUnlearner, "exact"),
        (ComplementNB(), DiscreteNBUnlearner, "exact"),
        (BernoulliNB(), DiscreteNBUnlearner, "exact"),
        (GaussianNB(), GaussianNBUnlearner, "exact"),
        (KNeighborsClassifier(3), NeighborsUnlearner, "exact"),
        (KNeighborsRegressor(3), NeighborsUnlearner, "exact"),
        (LogisticRegression(), LogisticUnlearner, "newton+refine"),
        (CategoricalNB(), RefitUnlearner, "refit"),
        (SGDRegressor(), RefitUnlearner, "refit"),
        (DecisionTreeRegressor(), RefitUnlearner, "refit"),
        (MyRidge(), RefitUnlearner, "refit"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, (str, type)) else str(v),
)
def test_dispatch_on_the_exact_type(estimator: object, family: type, strategy: str) -> None:
    chosen, reason = unlearner_for(estimator, X, Y)
    assert chosen is family
    assert (reason is None) == (family is not RefitUnlearner)
    unlearner = fit_for_forgetting(estimator, X, Y)
    assert type(unlearner) is family and unlearner.strategy == strategy
    assert unlearner.model is not estimator  # a clone is fitted
    assert not hasattr(estimator, "n_features_in_")
    if family is RefitUnlearner:
        assert unlearner.fallback_reason == reason and type(estimator).__name__ in str(reason)


def test_lists_and_frames_are_accepted_as_arrays() -> None:
    import pandas as pd

    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    unlearner = fit_for_forgetting(Ridge(), frame, list(Y))
    assert isinstance(unlearner.X, np.ndarray) and unlearner.X.dtype == np.float64
    assert not hasattr(unlearner.model, "feature_names_in_")
