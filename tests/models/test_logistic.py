"""LogisticRegression specifics: tight fitting, Newton vs refinement, fallbacks, the criterion."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from lester_dagster.errors import UnlearningError
from lester_dagster.models import LogisticUnlearner, RefitUnlearner, fit_for_forgetting
from tests.models.oracle import assert_newton, case, make_data, params

BINARY = case("logistic_binary")


def _fit(**options: object) -> tuple[LogisticUnlearner, object, np.ndarray, object]:
    X, y, X_test = make_data(BINARY, sparse=True, seed=11, n=600)
    unlearner = LogisticUnlearner.fit(LogisticRegression(C=0.5), X, y, **options)  # type: ignore[arg-type]
    return unlearner, X, y, X_test


def test_fitting_is_tight_and_says_what_it_changed() -> None:
    unlearner, _, _, _ = _fit()
    adjustments = unlearner.adjustments
    assert adjustments["tol"].startswith("0.0001 -> 1e-10")
    assert adjustments["max_iter"].startswith("100 -> 1000")
    assert adjustments["polish"]["residual_after"] <= 1e-10
    assert unlearner.model.tol == 1e-10 and unlearner.model.max_iter == 1000
    assert unlearner.residual() <= 1e-10
    # the stored inverse Hessian belongs to the final model
    fresh = unlearner._objective.inverse_hessian(unlearner._W, unlearner._alive_mask)
    scale = float(np.max(np.abs(fresh)))
    np.testing.assert_allclose(unlearner._inverse, fresh, rtol=0, atol=1e-6 * scale)


def test_a_tighter_estimator_is_left_as_it_is() -> None:
    X, y, _ = make_data(BINARY, sparse=False, seed=12)
    unlearner = fit_for_forgetting(LogisticRegression(tol=1e-12, max_iter=5000), X, y)
    assert "tol" not in unlearner.adjustments and "max_iter" not in unlearner.adjustments


def test_default_tolerance_leaves_a_deletion_unlearnt() -> None:
    """Why the tight fit (ANCHORS.md): at sklearn's default tol, a warm-started refit after a
    deletion may stop at once; our update moves much closer to the new optimum."""
    X, y, X_test = make_data(BINARY, sparse=False, seed=13, n=600)
    loose = LogisticRegression(C=0.5, warm_start=True).fit(X, y)
    before = params(loose)
    keep = np.arange(1, 600)
    loose.fit(X[keep], y[keep])
    reference = BINARY.fit_reference(X[keep], y[keep])
    with pytest.raises(AssertionError, match="is not <="):
        assert_newton(BINARY, loose, before, reference, X_test)
    unlearner = fit_for_forgetting(LogisticRegression(C=0.5), X, y)
    old = params(unlearner.model)
    unlearner.forget([0])
    new, old_distance = assert_newton(BINARY, unlearner.model, old, reference, X_test)
    assert new <= 1e-6 * old_distance


def test_an_unchanged_model_fails_the_criterion() -> None:
    unlearner, X, y, X_test = _fit()
    old = params(unlearner.model)
    keep = np.arange(30, 600)
    reference = BINARY.fit_reference(X[keep], y[keep])
    with pytest.raises(AssertionError, match="distance to the refit"):
        assert_newton(BINARY, unlearner.model, old, reference, X_test)


def test_refinement_is_recorded_with_the_residual() -> None:
    unlearner, X, y, X_test = _fit()
    old = params(unlearner.model)
    record = unlearner.forget(np.arange(60))
    assert record.strategy == "newton+refine"
    assert record.residual_grad_norm is not None and record.residual_grad_norm <= 1e-10
    assert record.detail["residual_after_newton"] > 1e-10 and record.detail["refine_steps"] >= 1
    reference = BINARY.fit_reference(X[60:], y[60:])
    assert_newton(BINARY, unlearner.model, old, reference, X_test)


def test_a_small_removal_needs_no_refinement() -> None:
    """The Newton step's residual is second order in the change (~1/n^2 for one row of n):
    below the threshold (``tol``, here 1e-8) no refinement runs."""
    rng = np.random.default_rng(0)
    X = sp.random(20000, 8, density=0.5, random_state=1, format="csr")
    y = (np.asarray(X @ rng.normal(size=8)).ravel() + rng.logistic(size=20000) > 0).astype(int)
    unlearner = LogisticUnlearner.fit(LogisticRegression(), X, y, tol=1e-8)
    record = unlearner.forget([5])
    assert record.strategy == "newton" and record.residual_grad_norm is not None
    assert record.residual_grad_norm <= 1e-8 and "refine_steps" not in record.detail
    record = unlearner.forget(np.arange(2000))  # a large removal does need refinement
    assert record.strategy == "newton+refine" and record.residual_grad_norm <= 1e-8


def test_without_the_residual_check_only_the_newton_step_runs() -> None:
    unlearner, X, y, X_test = _fit(residual_check=False)
    old = params(unlearner.model)
    record = unlearner.forget([0, 1, 2])
    assert record.strategy == "newton" and record.residual_grad_norm is None
    assert record.detail["residual_check"] is False
    reference = BINARY.fit_reference(X[3:], y[3:])
    assert_newton(BINARY, unlearner.model, old, reference, X_test)
    assert unlearner.residual() > 0  # measurable on demand


def test_all_but_one_class_raises_and_changes_nothing() -> None:
    unlearner, _, y, _ = _fit()
    coef = unlearner.model.coef_.copy()
    with pytest.raises(UnlearningError, match=r"leaves only class 'no'.* at least two classes"):
        unlearner.forget(np.flatnonzero(y == "yes"))
    assert np.array_equal(unlearner.model.coef_, coef) and unlearner.n_rows == 600


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # saga, small data
@pytest.mark.parametrize(
    ("estimator", "reason"),
    [
        (LogisticRegression(l1_ratio=1.0, solver="saga"), "penalty 'l1'"),
        (LogisticRegression(C=np.inf), "penalty None"),
        (LogisticRegression(solver="liblinear"), "penalises the intercept"),
        (LogisticRegression(class_weight="balanced"), "class_weight"),
    ],
)
def test_other_configurations_fall_back_to_a_recorded_refit(
    estimator: LogisticRegression, reason: str
) -> None:
    X, y, _ = make_data(BINARY, sparse=False, seed=14)
    unlearner = fit_for_forgetting(estimator, X, y)
    assert isinstance(unlearner, RefitUnlearner) and unlearner.strategy == "refit"
    assert reason in str(unlearner.fallback_reason)
    record = unlearner.forget([0])
    assert record.strategy == "refit" and reason in record.detail["reason"]
    with pytest.raises(UnlearningError, match="cannot maintain"):
        LogisticUnlearner.fit(estimator, X, y)


def test_too_many_parameters_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import lester_dagster.models.logistic as logistic

    monkeypatch.setattr(logistic, "MAX_PARAMETERS", 5)
    X, y, _ = make_data(BINARY, sparse=False, seed=15)
    unlearner = fit_for_forgetting(LogisticRegression(), X, y)
    assert isinstance(unlearner, RefitUnlearner)
    assert "13 parameters" in str(unlearner.fallback_reason)


def test_compaction_keeps_the_objective_in_step() -> None:
    unlearner, X, y, X_test = _fit()
    unlearner.forget(np.arange(250))
    old = params(unlearner.model)
    record = unlearner.forget(np.arange(60))  # now fewer than half the stored rows are alive
    assert record.detail["compacted"] is True
    # the objective reads the stored matrix itself, not a second copy (pickled once)
    assert unlearner._objective.X is unlearner._X_all
    assert unlearner._X_all.shape[0] == X.shape[0] - 310
    reference = BINARY.fit_reference(X[310:], y[310:])
    assert_newton(BINARY, unlearner.model, old, reference, X_test)
    old = params(unlearner.model)
    unlearner.forget([0, 1])
    reference = BINARY.fit_reference(X[312:], y[312:])
    assert_newton(BINARY, unlearner.model, old, reference, X_test)


def test_the_step_also_corrects_the_stored_residual_of_a_loose_fit() -> None:
    """The Newton step starts from the exact gradient of the new objective (stored gradient
    minus the removed rows' terms), so even a loosely fitted model lands on the new optimum."""
    X, y, X_test = make_data(BINARY, sparse=False, seed=16, n=5000)
    unlearner = LogisticUnlearner.fit(
        LogisticRegression(C=0.5), X, y, tol=1e-5, residual_check=False
    )
    assert unlearner.adjustments["polish"]["residual_after"] > 1e-6  # really loose
    old = params(unlearner.model)
    unlearner.forget([100])
    reference = BINARY.fit_reference(np.delete(X, 100, axis=0), np.delete(y, 100))
    assert_newton(BINARY, unlearner.model, old, reference, X_test)
