"""The oracle suite: every model family, fit on D, forget R, compare with a fit on D \\ R.

See ``tests/models/oracle.py`` for the criteria (exact: 1e-9 relative on every fitted
attribute and identical predictions; newton: distance to a tight refit <= 1e-3 x the old
model's, >= 99.9% equal predictions; refit: identical to a cold refit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lester_dagster.errors import UnlearningError
from lester_dagster.models import fit_for_forgetting
from tests.models.oracle import (
    CASE_IDS,
    CASES,
    RARE_COLUMN,
    RARE_ROWS,
    Case,
    assert_matches,
    case,
    make_data,
    params,
    take,
)

STRATEGY = {"exact": {"exact"}, "newton": {"newton", "newton+refine"}, "refit": {"refit"}}
VARIANTS = [
    pytest.param(c, sparse, id=f"{c.id}-{'sparse' if sparse else 'dense'}")
    for c in CASES
    for sparse in (False, True)
    if c.sparse or not sparse
]


def _old_params(case: Case, model: Any) -> np.ndarray | None:
    return params(model) if case.kind == "newton" else None


@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_forgetting_a_random_subset_equals_a_refit_without_it(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=1)
    unlearner = fit_for_forgetting(case.make(), X, y)
    rng = np.random.default_rng(2)
    rows = rng.choice(X.shape[0], size=36, replace=False)
    old = _old_params(case, unlearner.model)
    record = unlearner.forget(rows)
    assert record.strategy in STRATEGY[case.kind]
    assert record.rows_removed == 36 and record.changed
    keep = np.setdiff1d(np.arange(X.shape[0]), rows)
    reference = case.fit_reference(take(X, keep), y[keep])
    assert_matches(case, unlearner.model, reference, X_test, old)
    assert unlearner.n_rows == keep.size
    assert np.array_equal(unlearner.y, y[keep])


@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_successive_forgets_keep_the_state_consistent(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=3)
    unlearner = fit_for_forgetting(case.make(), X, y)
    original = np.arange(X.shape[0])  # original index of every current row
    rng = np.random.default_rng(4)
    for k in (1, 7, 30, 2):
        positions = rng.choice(unlearner.n_rows, size=k, replace=False)
        old = _old_params(case, unlearner.model)
        unlearner.forget(positions)
        original = np.delete(original, positions)
        reference = case.fit_reference(take(X, original), y[original])
        assert_matches(case, unlearner.model, reference, X_test, old)
    assert len(unlearner.history) == 4
    assert [r.rows_removed for r in unlearner.history] == [1, 7, 30, 2]


@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_forgetting_the_last_rows_of_a_category_leaves_an_all_zero_column(
    case: Case, sparse: bool
) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=5)
    unlearner = fit_for_forgetting(case.make(), X, y)
    old = _old_params(case, unlearner.model)
    record = unlearner.forget(np.arange(RARE_ROWS))
    keep = np.arange(RARE_ROWS, X.shape[0])
    assert not take(X, keep)[:, RARE_COLUMN].sum()
    if case.id == "linear_regression_no_intercept" or case.id == "linear_regression":
        # without a penalty the Gram matrix is now singular: a recorded switch to refitting
        assert record.strategy == "refit" and unlearner.strategy == "refit"
        assert "condition number" in str(record.detail["reason"])
    else:
        assert record.strategy in STRATEGY[case.kind]
    reference = case.fit_reference(take(X, keep), y[keep])
    assert_matches(case, unlearner.model, reference, X_test, old)


CLASSIFIERS = [c for c in VARIANTS if c.values[0].data in ("multiclass", "counts", "gaussian")]


@pytest.mark.parametrize(("case", "sparse"), CLASSIFIERS)
def test_forgetting_the_last_rows_of_a_class_drops_the_class(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=6)
    unlearner = fit_for_forgetting(case.make(), X, y)
    old = _old_params(case, unlearner.model)
    assert unlearner.model.classes_.tolist() == [0, 1, 2]
    last = np.flatnonzero(y == 2)
    record = unlearner.forget(last)
    keep = np.flatnonzero(y != 2)
    reference = case.fit_reference(take(X, keep), y[keep])
    assert unlearner.model.classes_.tolist() == [0, 1]
    if case.kind == "newton":  # the model's shape changes: an explicit refit
        assert record.strategy == "refit" and record.detail["classes_removed"] == [2]
        old = None
    elif case.kind == "exact" and hasattr(reference, "class_count_"):
        assert record.detail["classes_removed"] == [2]
    if old is None and case.kind == "newton":
        np.testing.assert_allclose(params(unlearner.model), params(reference), atol=1e-6)
        # and the unlearner keeps working with the new classes
        before = params(unlearner.model)
        unlearner.forget([0, 1, 2])
        ref2 = case.fit_reference(take(X, keep[3:]), y[keep[3:]])
        assert_matches(case, unlearner.model, ref2, X_test, before)
    else:
        assert_matches(case, unlearner.model, reference, X_test, old)


@pytest.mark.parametrize(("case", "sparse"), CLASSIFIERS)
def test_forgetting_all_but_one_class(case: Case, sparse: bool) -> None:
    """Matches scikit-learn: naive Bayes and neighbours fit one class, the others raise."""
    X, y, X_test = make_data(case, sparse=sparse, seed=7)
    unlearner = fit_for_forgetting(case.make(), X, y)
    before = {k: np.copy(v) for k, v in unlearner.parameters(unlearner.model).items()}
    others = np.flatnonzero(y != 0)
    keep = np.flatnonzero(y == 0)
    try:
        reference = case.fit_reference(take(X, keep), y[keep])
    except ValueError:
        reference = None
    if reference is None:
        with pytest.raises(UnlearningError, match="class") as info:
            unlearner.forget(others)
        assert isinstance(info.value, ValueError)
        after = unlearner.parameters(unlearner.model)
        assert all(np.array_equal(before[k], after[k]) for k in before), "model changed"
        assert unlearner.n_rows == X.shape[0] and not unlearner.history
    else:
        unlearner.forget(others)
        assert unlearner.model.classes_.tolist() == [0]
        assert_matches(case, unlearner.model, reference, X_test, None)
        assert set(unlearner.model.predict(X_test)) == {0}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_forgetting_nothing_is_recorded_as_unchanged(case_id: str) -> None:
    c = case(case_id)
    X, y, _ = make_data(c, sparse=False, seed=8)
    unlearner = fit_for_forgetting(c.make(), X, y)
    before = {k: np.copy(v) for k, v in unlearner.parameters(unlearner.model).items()}
    record = unlearner.forget([])
    assert record.strategy == "unchanged" and not record.changed and record.rows_removed == 0
    after = unlearner.parameters(unlearner.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert unlearner.n_rows == X.shape[0]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_forgetting_every_row_is_an_error(case_id: str) -> None:
    c = case(case_id)
    X, y, _ = make_data(c, sparse=False, seed=9)
    unlearner = fit_for_forgetting(c.make(), X, y)
    unlearner.forget([5])
    with pytest.raises(UnlearningError, match=f"cannot remove all {X.shape[0] - 1} remaining"):
        unlearner.forget(np.arange(X.shape[0] - 1))
    assert unlearner.n_rows == X.shape[0] - 1


@pytest.mark.parametrize("case_id", ["ridge", "gaussian_nb", "logistic_multinomial", "linear_svc"])
def test_check_measures_the_distance_to_a_refit(case_id: str) -> None:
    c = case(case_id)
    X, y, _ = make_data(c, sparse=False, seed=10)
    unlearner = fit_for_forgetting(c.make(), X, y)
    record = unlearner.forget([3, 50, 99], check=True)
    assert record.distance_to_refit is not None
    assert record.distance_to_refit <= (1e-9 if c.kind == "refit" else 1e-6)
    assert record.detail["check_seconds"] >= 0
    assert unlearner.forget([1]).distance_to_refit is None  # only when asked
