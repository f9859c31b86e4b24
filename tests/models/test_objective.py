"""The logistic objective: its formulas are checked against scikit-learn before we trust them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from lester_dagster.models.objective import LogisticObjective, newton_solve, woodbury_factors


def _data(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 6)) + np.array([0.0, 1.0, 0.0, -1.0, 2.0, 0.0])
    score = X @ rng.normal(size=6)
    y = np.digitize(
        score + rng.logistic(size=300), np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    )
    return X, y


def _objective(model: LogisticRegression, X: object, y: np.ndarray) -> LogisticObjective:
    labels = np.searchsorted(model.classes_, y)
    return LogisticObjective(X, labels, model.classes_.size, model.fit_intercept, model.C)


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_gradient_vanishes_at_sklearns_tight_optimum(
    classes: int, fit_intercept: bool, sparse: bool
) -> None:
    """F = sum loss + ||coef||^2 / (2C) is scikit-learn's objective divided by C."""
    X, y = _data(classes)
    model = LogisticRegression(
        C=0.3, fit_intercept=fit_intercept, solver="newton-cholesky", tol=1e-12, max_iter=500
    ).fit(X, y)
    objective = _objective(model, sp.csr_matrix(X) if sparse else X, y)
    _, gradient = objective.loss_gradient(objective.from_model(model), np.ones(300, dtype=bool))
    assert np.max(np.abs(gradient)) / 300 < 1e-10
    # ... and not at a perturbed point (the check can fail)
    W = objective.from_model(model)
    W[0, 0] += 1e-3
    _, gradient = objective.loss_gradient(W, np.ones(300, dtype=bool))
    assert np.max(np.abs(gradient)) / 300 > 1e-6


@pytest.mark.parametrize("classes", [2, 3])
def test_gradient_and_hessian_match_finite_differences(classes: int) -> None:
    X, y = _data(classes, seed=1)
    model = LogisticRegression(C=2.0).fit(X, y)
    objective = _objective(model, X, y)
    mask = np.ones(300, dtype=bool)
    mask[::7] = False  # dead rows must not count
    W = objective.from_model(model) + 0.01
    _, gradient = objective.loss_gradient(W, mask)
    H = objective.hessian(W, mask)
    rng = np.random.default_rng(0)
    direction = rng.normal(size=W.shape)
    if classes > 2:  # the null direction is regularised by u u^T: stay orthogonal to it
        direction[:, -1] -= direction[:, -1].mean()
    h = 1e-5
    plus, g_plus = objective.loss_gradient(W + h * direction, mask)
    minus, g_minus = objective.loss_gradient(W - h * direction, mask)
    assert (plus - minus) / (2 * h) == pytest.approx(float(np.sum(gradient * direction)), rel=1e-6)
    np.testing.assert_allclose(
        ((g_plus - g_minus) / (2 * h)).ravel(), H @ direction.ravel(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("classes", [2, 4])
def test_hessian_factor_reproduces_the_removed_rows_terms(classes: int) -> None:
    X, y = _data(classes, seed=2)
    model = LogisticRegression().fit(X, y)
    objective = _objective(model, X, y)
    W = objective.from_model(model)
    everything = np.ones(300, dtype=bool)
    without = everything.copy()
    without[[3, 40, 41]] = False
    U = objective.hessian_factor(X[[3, 40, 41]], W)
    difference = objective.hessian(W, everything) - objective.hessian(W, without)
    np.testing.assert_allclose(U @ U.T, difference, atol=1e-10)
    rows_gradient = objective.rows_gradient(X[[3, 40, 41]], objective.labels[[3, 40, 41]], W)
    _, g_all = objective.loss_gradient(W, everything)
    _, g_without = objective.loss_gradient(W, without)
    np.testing.assert_allclose(rows_gradient, g_all - g_without, atol=1e-10)


def test_woodbury_factors_give_the_downdated_inverse() -> None:
    rng = np.random.default_rng(3)
    B = rng.normal(size=(6, 6))
    H = B @ B.T + 6 * np.eye(6)
    U = rng.normal(size=(6, 2)) * 0.5
    Z, M = woodbury_factors(np.linalg.inv(H), U)  # type: ignore[misc]
    np.testing.assert_allclose(np.linalg.inv(H) + Z @ M, np.linalg.inv(H - U @ U.T), rtol=1e-10)
    assert woodbury_factors(np.linalg.inv(H), np.linalg.cholesky(H)) is None  # H - H = 0


def test_newton_solve_reaches_the_optimum_from_far_away() -> None:
    X, y = _data(3, seed=4)
    model = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12).fit(X, y)
    objective = _objective(model, X, y)
    mask = np.ones(300, dtype=bool)
    result = newton_solve(objective, np.zeros((3, 7)), mask, 1e-12, final_hessian=True)
    assert result.residual <= 1e-12 and result.iterations > 2 and result.hessians >= 2
    np.testing.assert_allclose(result.W, objective.from_model(model), atol=1e-8)
    fresh = objective.inverse_hessian(result.W, mask)
    np.testing.assert_allclose(result.inverse, fresh, rtol=1e-6, atol=1e-9)
