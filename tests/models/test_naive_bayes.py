"""Naive Bayes specifics: parameters that shape the update, priors, the variance smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.naive_bayes import BernoulliNB, ComplementNB, GaussianNB, MultinomialNB

from lester_dagster.errors import UnlearningError
from lester_dagster.models import DiscreteNBUnlearner, GaussianNBUnlearner, fit_for_forgetting
from tests.models.oracle import relative_error


def _counts(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, size=(n, 7)).astype(float) * rng.uniform(0.2, 3.0, 7)  # tf-idf-like
    y = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    return X, y


def _assert_same(model: object, reference: object, names: list[str]) -> None:
    for name in names:
        error = relative_error(getattr(model, name), getattr(reference, name))
        assert error <= 1e-9, (name, error)


@pytest.mark.parametrize(
    "estimator",
    [
        MultinomialNB(alpha=np.linspace(0.1, 1.0, 7)),
        MultinomialNB(alpha=1e-12, force_alpha=False),
        MultinomialNB(fit_prior=False),
        MultinomialNB(class_prior=[0.2, 0.3, 0.5]),
        ComplementNB(norm=False, alpha=0.3),
        BernoulliNB(binarize=None),
        BernoulliNB(binarize=1.0, fit_prior=False),
    ],
    ids=repr,
)
@pytest.mark.parametrize("sparse", [False, True])
def test_parameters_of_the_discrete_models_are_honoured(estimator: object, sparse: bool) -> None:
    X, y = _counts()
    if isinstance(estimator, BernoulliNB) and estimator.binarize is None:
        X = (X > 1.0).astype(float)
    data = sp.csr_matrix(X) if sparse else X
    with (
        pytest.warns(UserWarning, match="alpha too small")
        if getattr(estimator, "force_alpha", True) is False
        else _quiet()
    ):
        unlearner = fit_for_forgetting(estimator, data, y)
    assert isinstance(unlearner, DiscreteNBUnlearner)
    unlearner.forget([0, 10, 20, 30])
    keep = np.setdiff1d(np.arange(120), [0, 10, 20, 30])
    with _quiet():
        reference = type(estimator)(**estimator.get_params()).fit(X[keep], y[keep])
    names = ["class_count_", "feature_count_", "class_log_prior_", "feature_log_prob_"]
    _assert_same(unlearner.model, reference, names)
    assert np.array_equal(unlearner.model.predict(X), reference.predict(X))
    assert np.allclose(unlearner.model.predict_proba(X), reference.predict_proba(X), rtol=1e-9)


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *args: object) -> None:
        self._context.__exit__(*args)


def test_explicit_priors_and_a_vanishing_class_raise() -> None:
    X, y = _counts()
    unlearner = fit_for_forgetting(GaussianNB(priors=[0.3, 0.3, 0.4]), X, y)
    assert isinstance(unlearner, GaussianNBUnlearner)
    theta = unlearner.model.theta_.copy()
    with pytest.raises(UnlearningError, match=r"class\(es\) 'c'.*priors=\.\.\.\) for all 3"):
        unlearner.forget(np.flatnonzero(y == "c"))
    assert np.array_equal(unlearner.model.theta_, theta) and unlearner.n_rows == 120
    unlearner.forget(np.flatnonzero(y == "c")[:-1])  # one row of 'c' left: fine
    assert unlearner.model.classes_.tolist() == ["a", "b", "c"]


def test_gaussian_smoothing_follows_the_whole_datas_variance() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    X[:4, 2] = 1e3  # four outliers dominate the largest variance, hence epsilon_
    y = np.arange(80) % 2
    unlearner = fit_for_forgetting(GaussianNB(var_smoothing=1e-2), X, y)
    before = unlearner.model.epsilon_
    unlearner.forget([0, 1, 2, 3])
    reference = GaussianNB(var_smoothing=1e-2).fit(X[4:], y[4:])
    assert unlearner.model.epsilon_ < before / 100
    _assert_same(unlearner.model, reference, ["epsilon_", "var_", "theta_", "class_prior_"])


def test_gaussian_with_a_single_row_left_in_a_class() -> None:
    X, y = _counts(seed=2)
    unlearner = fit_for_forgetting(GaussianNB(), X, y)
    rows_c = np.flatnonzero(y == "c")
    unlearner.forget(rows_c[1:])
    keep = np.setdiff1d(np.arange(120), rows_c[1:])
    reference = GaussianNB().fit(X[keep], y[keep])
    _assert_same(unlearner.model, reference, ["theta_", "var_", "class_count_", "epsilon_"])
    assert np.all(unlearner.model.var_ > 0)


def test_gaussian_rejects_sparse_input_like_sklearn() -> None:
    X, y = _counts()
    with pytest.raises(TypeError, match=r"dense data is required|sparse"):
        fit_for_forgetting(GaussianNB(), sp.csr_matrix(X), y)


def test_two_dimensional_y_falls_back_to_refit() -> None:
    X, y = _counts()
    with pytest.raises(UnlearningError, match="1-D y"):
        DiscreteNBUnlearner.fit(MultinomialNB(), X, np.c_[y, y])
