"""Ridge / LinearRegression specifics: statistics, singular Gram matrices, recorded choices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression, Ridge

from lester_dagster.errors import UnlearningError
from lester_dagster.models import LinearUnlearner, fit_for_forgetting
from lester_dagster.models.linear import CONDITION_LIMIT
from tests.models.oracle import relative_error


def _data(n: int = 200, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5, d) + rng.uniform(-50, 50, d)
    return X, X @ rng.normal(size=d) + 7.0 + rng.normal(size=n)


def test_statistics_equal_the_augmented_normal_equations() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(Ridge(alpha=2.0), X, y)
    assert isinstance(unlearner, LinearUnlearner)
    shift = X.mean(axis=0)
    A = np.hstack([X - shift, np.ones((200, 1))])
    penalty = np.diag([2.0] * 8 + [0.0])
    np.testing.assert_allclose(unlearner._gram, A.T @ A + penalty, rtol=1e-12)
    np.testing.assert_allclose(unlearner._rhs, A.T @ y, rtol=1e-12)
    identity = unlearner._inverse @ unlearner._gram
    np.testing.assert_allclose(identity, np.eye(9), atol=1e-10)


def test_large_offsets_stay_exact_thanks_to_the_shift() -> None:
    X, y = _data()
    X = X + 1e5  # features far from zero: an unshifted Gram matrix would lose ~10 digits
    unlearner = fit_for_forgetting(LinearRegression(), X, y)
    unlearner.forget(np.arange(0, 60, 3))
    keep = np.setdiff1d(np.arange(200), np.arange(0, 60, 3))
    reference = LinearRegression().fit(X[keep], y[keep])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9
    assert relative_error(unlearner.model.intercept_, reference.intercept_) <= 1e-9


def test_fit_records_that_the_coefficients_were_recomputed() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(Ridge(solver="sparse_cg", tol=1e-2), sp.csr_matrix(X), y)
    assert "recomputed from the normal equations" in unlearner.adjustments["coef_"]
    reference = Ridge(solver="cholesky").fit(X, y)
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9


def test_removing_many_rows_at_once_reinverts_instead_of_woodbury() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(Ridge(), X, y)
    assert "reinverted" not in unlearner.forget([0, 1]).detail
    record = unlearner.forget(np.arange(10))  # 2k >= d + 1
    assert record.detail["reinverted"] is True and record.strategy == "exact"
    reference = Ridge(solver="cholesky").fit(X[12:], y[12:])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9


def test_rank_and_singular_values_of_the_old_matrix_are_removed() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(LinearRegression(), X, y)
    assert hasattr(unlearner.model, "singular_")
    record = unlearner.forget([4])
    assert record.detail["attributes_removed"] == ["rank_", "singular_"]
    assert not hasattr(unlearner.model, "rank_") and not hasattr(unlearner.model, "singular_")
    unlearner.model.predict(X[:3])


def test_a_rank_deficient_linear_regression_refits_from_the_start() -> None:
    X, y = _data()
    X = np.hstack([X, X[:, :1] * 2.0])  # collinear columns: sklearn's lstsq min-norm solution
    unlearner = fit_for_forgetting(LinearRegression(), X, y)
    assert unlearner.strategy == "refit"
    assert unlearner.fallback_reason is not None and "condition number" in unlearner.fallback_reason
    record = unlearner.forget([1, 2, 3])
    assert record.strategy == "refit" and "condition number" in record.detail["reason"]
    keep = np.delete(np.arange(200), [1, 2, 3])
    reference = LinearRegression().fit(X[keep], y[keep])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9
    assert unlearner.model.rank_ == reference.rank_ == 8


def test_becoming_singular_switches_to_refit_for_good() -> None:
    X, y = _data(n=40, d=6)
    X[:3, 5] = 0.0
    X[3:, 5] = 0.0
    X[:3, 5] = 1.0  # a column only the first three rows have
    unlearner = fit_for_forgetting(LinearRegression(), X, y)
    assert unlearner.strategy == "exact"
    assert unlearner.forget([0]).strategy == "exact"
    record = unlearner.forget([0, 1])  # the column is all-zero now
    assert record.strategy == "refit" and unlearner.strategy == "refit"
    assert "fallback" in unlearner.adjustments
    assert unlearner.forget([5]).strategy == "refit"
    keep = np.delete(np.arange(3, 40), 5)
    reference = LinearRegression().fit(X[keep], y[keep])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9


def test_the_conditioning_bound_triggers_an_exact_check_only_when_needed() -> None:
    X, y = _data(n=400)
    unlearner = fit_for_forgetting(LinearRegression(), X, y)
    assert unlearner.condition is not None and unlearner.condition < CONDITION_LIMIT
    details = [unlearner.forget([i]).detail for i in range(5)]
    assert not any("condition_checked" in d for d in details)
    unlearner._lambda_min_bound = 1e-30
    assert unlearner.forget([0]).detail["condition_checked"] is True
    assert unlearner.strategy == "exact"


def test_ridge_never_needs_the_condition_check() -> None:
    X, y = _data(n=30, d=40)  # more features than rows: fine with a penalty
    unlearner = fit_for_forgetting(Ridge(alpha=0.1), X, y)
    record = unlearner.forget([0, 1, 2])
    assert record.strategy == "exact" and "condition_checked" not in record.detail
    reference = Ridge(alpha=0.1, solver="cholesky").fit(X[3:], y[3:])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-9


def test_unsupported_configurations_are_refused_with_the_reason() -> None:
    X, y = _data()
    with pytest.raises(UnlearningError, match="positive=True"):
        LinearUnlearner.fit(LinearRegression(positive=True), X, y)
    fallback = fit_for_forgetting(LinearRegression(positive=True), X, y)
    assert fallback.strategy == "refit" and "positive=True" in str(fallback.fallback_reason)
    two_targets = np.c_[y, -y]
    assert fit_for_forgetting(Ridge(), X, two_targets).strategy == "refit"


def test_check_uses_an_exact_sparse_reference() -> None:
    X, y = _data()
    unlearner = fit_for_forgetting(LinearRegression(), sp.csr_matrix(X), y)
    record = unlearner.forget([0, 1], check=True)
    assert record.distance_to_refit is not None and record.distance_to_refit < 1e-6


def test_refinement_absorbs_a_drifted_inverse() -> None:
    """Rounding in repeated Woodbury downdates makes G^-1 drift; one refinement step against
    the exactly maintained G removes a small drift without re-inverting."""
    X, y = _data()
    unlearner = fit_for_forgetting(Ridge(), X, y)
    unlearner._inverse *= 1.0 + 1e-8  # a drift of 1e-8 relative
    record = unlearner.forget([0])
    assert "reinverted" not in record.detail
    reference = Ridge(solver="cholesky").fit(X[1:], y[1:])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-12
    unlearner._inverse *= 1.0 + 1e-3  # too much drift: re-inverted
    assert unlearner.forget([0]).detail["reinverted"] is True
    reference = Ridge(solver="cholesky").fit(X[2:], y[2:])
    assert relative_error(unlearner.model.coef_, reference.coef_) <= 1e-12
