"""Neighbours (exact by rebuilding) and the recorded refit for everything else."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors, RadiusNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from lester_dagster.errors import UnlearningError
from lester_dagster.models import NeighborsUnlearner, RefitUnlearner, fit_for_forgetting


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


@pytest.mark.parametrize(
    "estimator",
    [NearestNeighbors(n_neighbors=3), RadiusNeighborsRegressor(radius=1.5)],
    ids=lambda e: type(e).__name__,
)
def test_other_neighbour_models_are_rebuilt_exactly(estimator: object) -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(estimator, X, y.astype(float))
    assert isinstance(unlearner, NeighborsUnlearner) and unlearner.strategy == "exact"
    unlearner.forget([0, 5])
    keep = np.delete(np.arange(120), [0, 5])
    assert np.array_equal(unlearner.model._fit_X, X[keep])
    record = unlearner.forget([1], check=True)
    assert record.distance_to_refit == 0.0 and record.detail["index"]


def test_fewer_rows_than_neighbours_fits_but_cannot_predict_like_sklearn() -> None:
    X, y = _data(n=8)
    unlearner = fit_for_forgetting(KNeighborsClassifier(n_neighbors=5), X, y)
    unlearner.forget([0, 1, 2, 3])
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        unlearner.model.predict(X)


def test_a_cold_refit_equals_a_fresh_fit() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(SGDClassifier(random_state=3), X, y)
    assert isinstance(unlearner, RefitUnlearner)
    assert "no incremental update for SGDClassifier" in str(unlearner.fallback_reason)
    record = unlearner.forget([0, 1], check=True)
    assert record.strategy == "refit" and record.detail["warm_start"] is False
    assert record.distance_to_refit == 0.0
    reference = SGDClassifier(random_state=3).fit(X[2:], y[2:])
    assert np.array_equal(unlearner.model.coef_, reference.coef_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_warm_refit_is_recorded_and_restores_the_parameter() -> None:
    X, y = _data()
    unlearner = RefitUnlearner.fit(
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0), X, y,
        warm_start=True,
    )  # fmt: skip
    before = [w.copy() for w in unlearner.model.coefs_]
    record = unlearner.forget([0, 1, 2], check=True)
    assert (
        record.detail["warm_start"] is True and "not equal to a cold refit" in record.detail["note"]
    )
    assert unlearner.model.get_params()["warm_start"] is False
    assert any(not np.array_equal(a, b) for a, b in zip(before, unlearner.model.coefs_))
    assert record.distance_to_refit is not None and record.distance_to_refit > 0


def test_growing_ensembles_refit_cold_even_when_warm_is_asked() -> None:
    X, y = _data()
    unlearner = RefitUnlearner.fit(
        RandomForestClassifier(n_estimators=5, random_state=0), X, y, warm_start=True
    )
    assert unlearner.warm_start is False and "cold" in unlearner.adjustments["warm_start"]
    unlearner.forget([0])
    reference = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[1:], y[1:])
    assert np.array_equal(unlearner.model.predict_proba(X), reference.predict_proba(X))


def test_a_failing_refit_raises_and_keeps_the_model() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(LinearSVC(), sp.csr_matrix(X), y)
    coef = unlearner.model.coef_.copy()
    with pytest.raises(UnlearningError, match=r"refitting LinearSVC on the remaining \d+ rows"):
        unlearner.forget(np.flatnonzero(y == 1))
    assert np.array_equal(unlearner.model.coef_, coef) and unlearner.n_rows == 120


def test_pipelines_are_refitted_as_a_whole() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(
        make_pipeline(StandardScaler(), SGDClassifier(random_state=0)), X, y
    )
    assert unlearner.strategy == "refit" and "Pipeline" in str(unlearner.fallback_reason)
    unlearner.forget([3])
    reference = make_pipeline(StandardScaler(), SGDClassifier(random_state=0)).fit(
        np.delete(X, 3, 0), np.delete(y, 3)
    )
    assert np.array_equal(unlearner.model.predict(X), reference.predict(X))
