"""Changed training data: ``update()`` and ``affine_columns()`` against a fit on the new data.

Oracle style (see ``tests/models/oracle.py`` for the criteria): every family is fitted on
``(X, y)``, then its training data changes (an affine map of some columns, rows with new values
and targets, a dropped and an added column), and the model is compared with an independent
scikit-learn fit on the new data; exact families within 1e-9 relative on every fitted
attribute, logistic regression by the distance ratio (<= 1e-3 x the old model's distance to a
tight refit) and >= 99.9% equal predictions, refit families bit for bit. A ``forget()`` after
the change must still equal a refit (the stored statistics are valid again).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from lester_dagster.errors import DuplicateRowError, LesterError, RowPositionError, UnlearningError
from lester_dagster.models import (
    LinearUnlearner,
    LogisticUnlearner,
    Unlearner,
    fit_for_forgetting,
)
from lester_dagster.models.linalg import (
    AffineColumns,
    dense_rows,
    product,
    subset_rows,
    take_rows,
    transposed_product,
    weighted_gram,
)
from lester_dagster.models.objective import LogisticObjective
from tests.models.oracle import (
    CASES,
    Case,
    assert_matches,
    case,
    make_data,
    params,
    relative_error,
)

STRATEGY = {"exact": {"exact"}, "newton": {"newton", "newton+refine"}, "refit": {"refit"}}
VARIANTS = [
    pytest.param(c, sparse, id=f"{c.id}-{'sparse' if sparse else 'dense'}")
    for c in CASES
    for sparse in (False, True)
    if c.sparse or not sparse
]
#: Families whose affine_columns has a fast path (no update(), no pass over the rows).
AFFINE_FAST = {
    "ridge",
    "ridge_no_intercept",
    "linear_regression",
    "linear_regression_no_intercept",
    "gaussian_nb",
    "logistic_binary",
    "logistic_multinomial",
}


def _dense(X: Any) -> np.ndarray:
    """A dense float64 copy (never the caller's array)."""
    return np.array(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _like(X: np.ndarray, sparse: bool) -> Any:
    return sp.csr_matrix(X) if sparse else X


def _old(c: Case, model: Any) -> np.ndarray | None:
    return params(model) if c.kind == "newton" else None


def _affine_map(c: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two columns (a dense one and a one-hot one) with random scale and shift; count data
    keeps non-negative values (Multinomial / Complement NB reject negative ones)."""
    columns = np.array([1, 8])
    if c.data == "counts":
        return columns, rng.uniform(0.5, 2.0, 2), rng.uniform(0.0, 1.0, 2)
    sign = rng.choice([-1.0, 1.0], 2)
    return columns, sign * rng.uniform(0.4, 2.5, 2), rng.normal(scale=2.0, size=2)


def _new_values(c: Case, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if c.data == "counts":
        return rng.poisson(1.5, size=shape).astype(float)
    return rng.normal(size=shape) + 0.5


def _changed_targets(c: Case, y: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> Any:
    new = y.copy()
    if c.data == "regression":
        new[rows] = rng.normal(size=rows.size) * 3
    else:  # all changed rows get one class (class counts change; every class keeps rows)
        new[rows] = np.unique(y)[0]
    return new


def _snapshot(unlearner: Unlearner) -> dict[str, Any]:
    return {
        "params": {k: np.copy(v) for k, v in unlearner.parameters(unlearner.model).items()},
        "X": _dense(unlearner.X),
        "y": unlearner.y.copy(),
        "history": len(unlearner.history),
    }


def _assert_unchanged(unlearner: Unlearner, before: dict[str, Any]) -> None:
    after = unlearner.parameters(unlearner.model)
    assert set(after) == set(before["params"])
    for name, value in before["params"].items():
        assert np.array_equal(after[name], value), f"{name} changed"
    assert np.array_equal(_dense(unlearner.X), before["X"])
    assert np.array_equal(unlearner.y, before["y"])
    assert len(unlearner.history) == before["history"]


# -- (a) affine column maps ---------------------------------------------------------------------
@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_affine_columns_equals_a_refit_on_the_mapped_data(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=11)
    original = _dense(X)
    unlearner = fit_for_forgetting(case.make(), X, y)
    columns, scale, shift = _affine_map(case, np.random.default_rng(12))
    old = _old(case, unlearner.model)
    record = unlearner.affine_columns(columns, scale, shift)
    X_new = original.copy()
    X_new[:, columns] = X_new[:, columns] * scale + shift
    assert record.strategy in STRATEGY[case.kind] and record.changed
    assert record.rows_removed == 0 and record.detail["rows_remaining"] == X.shape[0]
    assert ("via" not in record.detail) == (case.id in AFFINE_FAST), record.detail
    assert np.allclose(_dense(unlearner.X), X_new, rtol=1e-12, atol=1e-12)
    assert np.array_equal(_dense(X), original), "the caller's matrix was modified"
    reference = case.fit_reference(_like(X_new, sparse), y)
    assert_matches(case, unlearner.model, reference, X_test, old)


@pytest.mark.parametrize("case_id", ["ridge", "ridge_no_intercept", "logistic_multinomial"])
def test_affine_maps_compose_and_forget_still_works(case_id: str) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=True, seed=13)
    unlearner = fit_for_forgetting(c.make(), X, y)
    X_new = _dense(X)
    for columns, scale, shift in (([0, 2], [2.0, -0.5], [1.0, 3.0]), ([2], [3.0], [-2.0])):
        unlearner.affine_columns(columns, scale, shift)
        X_new[:, columns] = X_new[:, columns] * np.array(scale) + np.array(shift)
    assert isinstance(unlearner._X_all, AffineColumns)  # still the original sparse matrix
    base = unlearner._X_all.base
    assert sp.issparse(base) and np.shares_memory(base.data, X.data)  # no copy, still sparse
    rows = np.array([0, 5, 17, 40])
    keep = np.setdiff1d(np.arange(X.shape[0]), rows)
    old = _old(c, unlearner.model)
    unlearner.forget(rows)
    reference = c.fit_reference(sp.csr_matrix(X_new[keep]), y[keep])
    assert_matches(c, unlearner.model, reference, X_test, old)
    assert np.allclose(_dense(unlearner.X), X_new[keep], rtol=1e-12, atol=1e-12)


class _Untouchable:
    """A stand-in for the stored matrix that fails on any use but its shape."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def __getitem__(self, key: Any) -> Any:
        raise AssertionError("affine_columns read the training rows")

    def __matmul__(self, other: Any) -> Any:
        raise AssertionError("affine_columns read the training rows")

    @property
    def T(self) -> Any:
        raise AssertionError("affine_columns read the training rows")


@pytest.mark.parametrize("case_id", ["ridge", "ridge_no_intercept", "gaussian_nb", "logistic"])
def test_the_affine_fast_path_does_not_read_the_rows(case_id: str) -> None:
    """O(d^2) independent of n: the rows are not touched (logistic: without residual check)."""
    c = case("logistic_multinomial" if case_id == "logistic" else case_id)
    X, y, X_test = make_data(c, sparse=False, seed=14)
    if case_id == "logistic":
        unlearner: Unlearner = LogisticUnlearner.fit(c.make(), X, y, residual_check=False)
    else:
        unlearner = fit_for_forgetting(c.make(), X, y)
    start = np.zeros(0)
    if isinstance(unlearner, LogisticUnlearner):  # the reparametrised old optimum
        start = params(unlearner.model)
        start[[3, 7, 15, 19, 27, 31]] /= np.tile([1.5, -2.0], 3)
        start[-3:] -= start[[3, 7, 15, 19, 27, 31]].reshape(3, 2) @ np.array([0.5, 1.0])
    unlearner._X_all = _Untouchable(X.shape)
    record = unlearner.affine_columns([3, 7], [1.5, -2.0], [0.5, 1.0])
    assert "via" not in record.detail and "hessian_recomputed" not in record.detail
    assert isinstance(unlearner._X_all, AffineColumns)
    unlearner._X_all.base = X  # give the rows back: the statistics must be right
    X_new = X.copy()
    X_new[:, [3, 7]] = X_new[:, [3, 7]] * np.array([1.5, -2.0]) + np.array([0.5, 1.0])
    reference = c.fit_reference(X_new, y)
    if case_id == "logistic":  # one Newton step for the penalty change, no refinement
        target = params(reference)
        after = float(np.max(np.abs(params(unlearner.model) - target)))
        before = float(np.max(np.abs(start - target)))
        assert after <= 0.1 * before  # measured: 0.06 for this (large) change
    else:
        assert_matches(c, unlearner.model, reference, X_test, None)


def test_the_logistic_affine_path_computes_no_hessian(monkeypatch: pytest.MonkeyPatch) -> None:
    c = case("logistic_multinomial")
    X, y, X_test = make_data(c, sparse=True, seed=15)
    unlearner = fit_for_forgetting(c.make(), X, y)
    old = params(unlearner.model)

    def no_hessian(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Hessian was computed")

    monkeypatch.setattr(LogisticObjective, "hessian", no_hessian)
    # what a scaler's refit after a deletion does: a small change of scale and mean
    record = unlearner.affine_columns([0, 4], [1.05, 0.97], [0.1, -0.05])
    assert record.strategy in STRATEGY["newton"] and "via" not in record.detail
    assert record.detail.get("hessians_recomputed", 0) == 0
    assert record.residual_grad_norm is not None and record.residual_grad_norm <= 1e-10
    monkeypatch.undo()
    X_new = _dense(X)
    X_new[:, [0, 4]] = X_new[:, [0, 4]] * np.array([1.05, 0.97]) + np.array([0.1, -0.05])
    assert_matches(c, unlearner.model, c.fit_reference(sp.csr_matrix(X_new), y), X_test, old)


@pytest.mark.parametrize("case_id", ["logistic_binary", "logistic_multinomial"])
@pytest.mark.parametrize("sparse", [False, True])
def test_the_transformed_inverse_hessian_is_exact(case_id: str, sparse: bool) -> None:
    """Without the residual check, the stored H^{-1} after affine_columns is the inverse
    Hessian of the new objective at the reparametrised old parameters, computed afresh."""
    c = case(case_id)
    X, y, _ = make_data(c, sparse=sparse, seed=16)
    unlearner = LogisticUnlearner.fit(c.make(), X, y, residual_check=False)
    W = unlearner._W.copy()
    everything = np.ones(X.shape[0], dtype=bool)
    unlearner._inverse = unlearner._objective.inverse_hessian(W, everything)  # exactly at W
    columns, scale, shift = np.array([2, 9]), np.array([0.5, -3.0]), np.array([4.0, 1.0])
    unlearner.affine_columns(columns, scale, shift)
    d = X.shape[1]
    W_new = W.copy()
    W_new[:, columns] = W[:, columns] / scale
    W_new[:, d] = W[:, d] - W_new[:, columns] @ shift
    X_new = _dense(X)
    X_new[:, columns] = X_new[:, columns] * scale + shift
    objective = LogisticObjective(
        _like(X_new, sparse), unlearner._labels, unlearner.model.classes_.size, True, c.make().C
    )
    expected = objective.inverse_hessian(W_new, everything)
    assert relative_error(unlearner._inverse, expected) < 1e-10


@pytest.mark.parametrize("case_id", ["ridge", "ridge_no_intercept", "linear_regression"])
def test_linear_statistics_after_an_affine_map_match_the_new_data(case_id: str) -> None:
    c = case(case_id)
    X, y, _ = make_data(c, sparse=True, seed=17)
    unlearner = fit_for_forgetting(c.make(), X, y)
    assert isinstance(unlearner, LinearUnlearner)
    record = unlearner.affine_columns([1, 5], [-2.0, 0.25], [3.0, -1.0])
    assert "reinverted" not in record.detail  # the rescaled + Woodbury-updated inverse is right
    X_new = _dense(unlearner.X)
    gram = weighted_gram(X_new, intercept=unlearner.fit_intercept, shift=unlearner._shift)
    d = X.shape[1]
    gram[np.arange(d), np.arange(d)] += unlearner.alpha
    assert unlearner._gram is not None and unlearner._inverse is not None
    assert relative_error(unlearner._gram, gram) < 1e-12
    assert relative_error(unlearner._inverse, np.linalg.inv(gram)) < 1e-9
    if unlearner._colsum is not None:
        assert relative_error(unlearner._colsum, X_new.sum(axis=0)) < 1e-12


@pytest.mark.parametrize(
    "case_id", ["ridge", "logistic_binary", "multinomial_nb", "knn_classifier"]
)
def test_a_zero_scale_goes_through_update(case_id: str) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=False, seed=18)
    unlearner = fit_for_forgetting(c.make(), X, y)
    old = _old(c, unlearner.model)
    record = unlearner.affine_columns([2], 0.0, 1.0)
    assert "via" in record.detail and record.detail["columns_new"] == 1
    X_new = X.copy()
    X_new[:, 2] = 1.0
    assert_matches(c, unlearner.model, c.fit_reference(X_new, y), X_test, old)


def test_an_identity_map_and_an_unchanged_update_are_recorded_as_unchanged() -> None:
    c = case("ridge")
    X, y, _ = make_data(c, sparse=False, seed=19)
    unlearner = fit_for_forgetting(c.make(), X, y)
    before = _snapshot(unlearner)
    assert unlearner.affine_columns([0, 1], 1.0, 0.0).strategy == "unchanged"
    record = unlearner.update(X, y, changed_rows=[], old_columns=np.arange(X.shape[1]))
    assert record.strategy == "unchanged" and not record.changed
    before["history"] += 2
    _assert_unchanged(unlearner, before)


@pytest.mark.parametrize("sparse", [False, True])
def test_the_affine_wrapper_computes_what_the_mapped_matrix_gives(sparse: bool) -> None:
    rng = np.random.default_rng(20)
    X = rng.normal(size=(40, 5)) * (rng.random((40, 5)) < 0.5)
    columns, scale, shift = np.array([1, 3]), np.array([2.0, -0.5]), np.array([1.0, 4.0])
    stored = AffineColumns.apply(_like(X, sparse), columns, scale, shift)
    stored = AffineColumns.apply(stored, np.array([3]), np.array([3.0]), np.array([-1.0]))
    mapped = X.copy()
    mapped[:, 1] = mapped[:, 1] * 2.0 + 1.0
    mapped[:, 3] = (mapped[:, 3] * -0.5 + 4.0) * 3.0 - 1.0
    rows = np.array([3, 0, 17])
    assert np.allclose(_dense(stored.materialize()), mapped, rtol=1e-14, atol=1e-14)
    assert sp.issparse(stored.materialize()) == sparse
    assert np.allclose(_dense(take_rows(stored, rows)), mapped[rows], rtol=1e-14)
    assert np.allclose(dense_rows(stored, rows), mapped[rows], rtol=1e-14)
    assert np.allclose(_dense(subset_rows(stored, rows).materialize()), mapped[rows])
    M, R = rng.normal(size=(5, 3)), rng.normal(size=(40, 2))
    assert np.allclose(product(stored, M), mapped @ M, rtol=1e-12)
    assert np.allclose(product(stored, M[:, 0]), mapped @ M[:, 0], rtol=1e-12)
    assert np.allclose(transposed_product(stored, R), mapped.T @ R, rtol=1e-12)
    assert np.allclose(transposed_product(stored, R[:, 0]), mapped.T @ R[:, 0], rtol=1e-12)
    w, shift = rng.random(40), rng.normal(size=5)
    for intercept in (False, True):
        for s in (None, shift):
            expected = weighted_gram(mapped, w, intercept=intercept, shift=s)
            got = weighted_gram(stored, w, intercept=intercept, shift=s)
            assert relative_error(got, expected) < 1e-12, (intercept, s is None)


# -- (b) changed rows ---------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_update_with_changed_rows_equals_a_refit(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=21)
    unlearner = fit_for_forgetting(case.make(), X, y)
    unlearner.forget([3, 30, 300])  # tombstones in the stored matrix
    rng = np.random.default_rng(22)
    X_new, y_new = np.delete(_dense(X), [3, 30, 300], axis=0), np.delete(y, [3, 30, 300])
    rows = rng.choice(X_new.shape[0], size=12, replace=False)
    X_new[rows, :6] = _new_values(case, rng, (12, 6))
    y_new = _changed_targets(case, y_new, rows, rng)
    old = _old(case, unlearner.model)
    record = unlearner.update(
        _like(X_new, sparse), y_new, changed_rows=rows, old_columns=np.arange(X.shape[1])
    )
    assert record.strategy in STRATEGY[case.kind] and record.changed
    assert record.detail["rows_changed"] == 12 and record.detail["columns_new"] == 0
    assert unlearner.n_rows == X_new.shape[0] and unlearner._X_all.shape[0] == X_new.shape[0]
    assert np.array_equal(unlearner.y, y_new)
    assert np.array_equal(_dense(unlearner.X), X_new)
    reference = case.fit_reference(_like(X_new, sparse), y_new)
    assert_matches(case, unlearner.model, reference, X_test, old)


@pytest.mark.parametrize("case_id", ["logistic_binary", "logistic_multinomial"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_logistic_row_change_is_one_exact_newton_step(case_id: str, sparse: bool) -> None:
    """Rows only: the gradient and inverse Hessian at the current W are swapped exactly, so
    (without the residual check) the model is W - H_new(W)^{-1} g_new(W), computed afresh."""
    c = case(case_id)
    X, y, _ = make_data(c, sparse=sparse, seed=25)
    unlearner = LogisticUnlearner.fit(c.make(), X, y, residual_check=False)
    everything = np.ones(X.shape[0], dtype=bool)
    W = unlearner._W.copy()
    unlearner._inverse = unlearner._objective.inverse_hessian(W, everything)
    unlearner._gradient = unlearner._objective.loss_gradient(W, everything)[1]
    X_new = _dense(X)
    X_new[[9, 40], :6] += 0.5
    y_new = y.copy()
    y_new[9] = next(v for v in np.unique(y) if v != y[9])  # a label flip too
    record = unlearner.update(
        _like(X_new, sparse), y_new, changed_rows=[9, 40], old_columns=range(12)
    )
    assert record.strategy == "newton" and "hessian_recomputed" not in record.detail
    labels = np.searchsorted(unlearner.model.classes_, y_new)
    fresh = LogisticObjective(_like(X_new, sparse), labels, labels.max() + 1, True, c.make().C)
    inverse = fresh.inverse_hessian(W, everything)
    step = fresh.unflatten(inverse @ fresh.loss_gradient(W, everything)[1].ravel())
    assert relative_error(unlearner._inverse, inverse) < 1e-10
    assert relative_error(unlearner._W, W - step) < 1e-10


def test_many_changed_rows_reinvert_and_stay_exact() -> None:
    c = case("ridge")
    X, y, X_test = make_data(c, sparse=False, seed=23)
    unlearner = fit_for_forgetting(c.make(), X, y)
    rng = np.random.default_rng(24)
    rows = rng.choice(X.shape[0], size=100, replace=False)
    X_new = X.copy()
    X_new[rows, :6] = rng.normal(size=(100, 6))
    y_new = _changed_targets(c, y, rows, rng)
    record = unlearner.update(X_new, y_new, changed_rows=rows, old_columns=np.arange(12))
    assert record.detail.get("reinverted") is True
    assert_matches(c, unlearner.model, c.fit_reference(X_new, y_new), X_test, None)


# -- (c) dropped and new columns ----------------------------------------------------------------
def _reshaped(
    c: Case, X: Any, X_test: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column 2 dropped, column 4 re-encoded (new values: -1), a new column in front."""
    X_d, test = _dense(X), _dense(X_test)
    n, d = X_d.shape
    new_col = _new_values(c, rng, (n + test.shape[0],))
    redone = np.abs(X_d[:, 4] * 0.7 + 0.3)
    keep = [j for j in range(d) if j != 2]
    X_new = np.column_stack([new_col[:n], X_d[:, keep]])
    X_new[:, 1 + keep.index(4)] = redone
    test_new = np.column_stack([new_col[n:], test[:, keep]])
    test_new[:, 1 + keep.index(4)] = np.abs(test[:, 4] * 0.7 + 0.3)
    old_columns = np.array([-1, *keep])
    old_columns[1 + keep.index(4)] = -1
    return X_new, test_new, old_columns


@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_update_with_dropped_and_new_columns_equals_a_refit(case: Case, sparse: bool) -> None:
    X, y, X_test = make_data(case, sparse=sparse, seed=31)
    unlearner = fit_for_forgetting(case.make(), X, y)
    rng = np.random.default_rng(32)
    X_new, test_new, old_columns = _reshaped(case, X, X_test, rng)
    rows = np.array([5, 50, 150])
    X_new[rows, 6:9] = _new_values(case, rng, (3, 3))
    y_new = _changed_targets(case, y, rows, rng)
    old = _old(case, unlearner.model)
    record = unlearner.update(
        _like(X_new, sparse), y_new, changed_rows=rows, old_columns=old_columns
    )
    assert record.strategy in STRATEGY[case.kind]
    assert record.detail["columns_new"] == 2 and record.detail["columns_dropped"] == 2
    assert record.detail["n_features"] == X_new.shape[1] == X.shape[1]
    reference = case.fit_reference(_like(X_new, sparse), y_new)
    assert_matches(case, unlearner.model, reference, _like(test_new, sparse), old)
    assert getattr(unlearner.model, "n_features_in_", X_new.shape[1]) == X_new.shape[1]


@pytest.mark.parametrize("case_id", ["ridge", "linear_regression_no_intercept", "multinomial_nb"])
def test_the_number_of_columns_can_change(case_id: str) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=True, seed=33)
    unlearner = fit_for_forgetting(c.make(), X, y)
    X_d = _dense(X)
    rng = np.random.default_rng(34)
    extra = _new_values(c, rng, (X.shape[0], 3))
    X_new = np.hstack([X_d[:, [0, 1, 3, 5, 6, 7]], extra])  # 6 dropped, 3 added
    old_columns = np.array([0, 1, 3, 5, 6, 7, -1, -1, -1])
    unlearner.update(sp.csr_matrix(X_new), y, changed_rows=[], old_columns=old_columns)
    test_new = np.hstack([_dense(X_test)[:, [0, 1, 3, 5, 6, 7]], _new_values(c, rng, (1000, 3))])
    reference = c.fit_reference(sp.csr_matrix(X_new), y)
    assert_matches(c, unlearner.model, reference, test_new, None)
    fitted = "feature_count_" if c.id == "multinomial_nb" else "coef_"
    assert np.shape(getattr(unlearner.model, fitted))[-1] == 9


@pytest.mark.parametrize("case_id", ["ridge", "ridge_no_intercept", "linear_regression"])
@pytest.mark.parametrize("sparse", [False, True])
def test_linear_update_keeps_gram_and_inverse_exact_without_reinverting(
    case_id: str, sparse: bool
) -> None:
    """The Woodbury path of update() itself is right (the drift check does not hide it)."""
    c = case(case_id)
    rng = np.random.default_rng(35)
    X = rng.normal(size=(300, 40)) * (rng.random((300, 40)) < 0.3) + (np.arange(40) % 3 == 0)
    y = X @ rng.normal(size=40) + rng.normal(size=300)
    unlearner = fit_for_forgetting(c.make(), _like(X, sparse), y)
    assert isinstance(unlearner, LinearUnlearner)
    keep = [j for j in range(40) if j not in (2, 30)]  # 2 dropped, 3 new, 2 rows changed
    X_new = np.hstack([rng.normal(size=(300, 1)), X[:, keep], rng.normal(size=(300, 2)) + 1.0])
    old_columns = np.array([-1, *keep, -1, -1])
    X_new[[7, 8], 5:20] += 1.0
    y_new = _changed_targets(c, y, np.array([7, 8]), rng)
    record = unlearner.update(
        _like(X_new, sparse), y_new, changed_rows=[7, 8], old_columns=old_columns
    )
    assert record.detail["woodbury_rank"] == 2 * 3 + 2 * 2 and "reinverted" not in record.detail
    gram = weighted_gram(X_new, intercept=unlearner.fit_intercept, shift=unlearner._shift)
    d = X_new.shape[1]
    gram[np.arange(d), np.arange(d)] += unlearner.alpha
    A = X_new
    if unlearner._shift is not None:
        A = np.hstack([X_new - unlearner._shift, np.ones((300, 1))])
    assert unlearner._gram is not None and unlearner._inverse is not None
    assert relative_error(unlearner._gram, gram) < 1e-12
    assert relative_error(unlearner._rhs, A.T @ y_new) < 1e-12
    assert relative_error(unlearner._inverse, np.linalg.inv(gram)) < 1e-9
    if unlearner._colsum is not None:
        assert relative_error(unlearner._colsum, X_new.sum(axis=0)) < 1e-12
        assert abs(unlearner._ysum - y_new.sum()) < 1e-9 * abs(y_new).sum()
    reference = c.fit_reference(_like(X_new, sparse), y_new)
    for name in ("coef_", "intercept_"):
        assert relative_error(getattr(unlearner.model, name), getattr(reference, name)) < 1e-9


# -- (d) forget() after update() ------------------------------------------------------------------
@pytest.mark.parametrize(("case", "sparse"), VARIANTS)
def test_forget_after_update_and_affine_equals_a_refit(case: Case, sparse: bool) -> None:
    """The statistics kept for forgetting are valid again after the data changed."""
    X, y, X_test = make_data(case, sparse=sparse, seed=41)
    unlearner = fit_for_forgetting(case.make(), X, y)
    rng = np.random.default_rng(42)
    X_new, test_new, old_columns = _reshaped(case, X, X_test, rng)
    unlearner.update(_like(X_new, sparse), y, changed_rows=[], old_columns=old_columns)
    columns, scale, shift = _affine_map(case, rng)
    unlearner.affine_columns(columns, scale, shift)
    X_new[:, columns] = X_new[:, columns] * scale + shift
    test_new[:, columns] = test_new[:, columns] * scale + shift
    current = np.arange(X.shape[0])
    for k in (1, 25):
        positions = rng.choice(current.size, size=k, replace=False)
        old = _old(case, unlearner.model)
        record = unlearner.forget(positions)
        assert record.strategy in STRATEGY[case.kind]
        current = np.delete(current, positions)
        reference = case.fit_reference(_like(X_new[current], sparse), y[current])
        assert_matches(case, unlearner.model, reference, _like(test_new, sparse), old)


def test_logistic_stored_inverse_is_the_hessian_at_the_new_optimum() -> None:
    c = case("logistic_multinomial")
    X, y, X_test = make_data(c, sparse=True, seed=43)
    unlearner = LogisticUnlearner.fit(c.make(), X, y)
    X_new, _, old_columns = _reshaped(c, X, X_test, np.random.default_rng(44))
    record = unlearner.update(sp.csr_matrix(X_new), y, changed_rows=[], old_columns=old_columns)
    assert record.detail["hessians_computed"] >= 1 and record.detail["hessian_seconds"] > 0
    objective = LogisticObjective(sp.csr_matrix(X_new), unlearner._labels, 3, True, c.make().C)
    expected = objective.inverse_hessian(unlearner._W, np.ones(X.shape[0], dtype=bool))
    assert relative_error(unlearner._inverse, expected) < 1e-6
    assert unlearner.residual() <= unlearner.tol


# -- class and conditioning changes ---------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["logistic_binary", "multinomial_nb", "gaussian_nb"])
def test_a_new_class_in_y_new_refits_or_recounts(case_id: str) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=False, seed=51)
    unlearner = fit_for_forgetting(c.make(), X, y)
    y_new = y.astype(object) if case_id == "logistic_binary" else y.copy()
    rows = np.array([1, 2, 3, 4, 5])
    y_new[rows] = "maybe" if case_id == "logistic_binary" else 7
    record = unlearner.update(X, y_new, changed_rows=rows, old_columns=np.arange(12))
    reference = c.fit_reference(X, y_new)
    assert np.array_equal(unlearner.model.classes_, reference.classes_)
    if c.kind == "newton":
        assert record.strategy == "refit" and record.detail["classes_added"] == ["maybe"]
        np.testing.assert_allclose(params(unlearner.model), params(reference), atol=1e-6)
        unlearner.forget([0])  # and it keeps working
    else:
        assert record.strategy == "exact" and "recount" in record.detail["method"]
        assert_matches(c, unlearner.model, reference, X_test, None)


def test_linear_regression_refits_on_a_singular_update_and_returns_to_exact() -> None:
    c = case("linear_regression")
    X, y, X_test = make_data(c, sparse=False, seed=52)
    unlearner = fit_for_forgetting(c.make(), X, y)
    X_dup = np.hstack([X, X[:, [0]]])  # a copy of column 0: the Gram matrix is singular
    record = unlearner.update(X_dup, y, changed_rows=[], old_columns=[*range(12), -1])
    assert record.strategy == "refit" and unlearner.fallback_reason is not None
    assert "condition number" in str(record.detail["reason"])
    record = unlearner.update(X, y, changed_rows=[], old_columns=np.arange(12))  # col 12 dropped
    assert record.strategy == "refit" and "exact_again" in record.detail
    assert unlearner.strategy == "exact" and unlearner.fallback_reason is None
    assert_matches(c, unlearner.model, c.fit_reference(X, y), X_test, None)
    unlearner.forget([4, 9])
    keep = np.setdiff1d(np.arange(X.shape[0]), [4, 9])
    assert_matches(c, unlearner.model, c.fit_reference(X[keep], y[keep]), X_test, None)


def test_check_measures_the_distance_after_an_update() -> None:
    c = case("ridge")
    X, y, _ = make_data(c, sparse=False, seed=53)
    unlearner = fit_for_forgetting(c.make(), X, y)
    X_new = X.copy()
    X_new[7] += 1.0
    record = unlearner.update(X_new, y, changed_rows=[7], old_columns=np.arange(12), check=True)
    assert record.distance_to_refit is not None and record.distance_to_refit < 1e-9
    record = unlearner.affine_columns([0], 2.0, 1.0, check=True)
    assert record.distance_to_refit is not None and record.distance_to_refit < 1e-9


# -- errors leave the model unchanged -------------------------------------------------------------
ERROR_CASES = ["ridge", "logistic_multinomial", "gaussian_nb", "multinomial_nb", "linear_svc"]


def _other_label(y: np.ndarray, row: int) -> np.ndarray:
    changed = y.copy()
    changed[row] = next(v for v in y if v != y[row])
    return changed


def _with_nan(X: np.ndarray) -> np.ndarray:
    out = X.copy()
    out[3, 0] = np.nan
    return out


BAD_UPDATES: list[Any] = [
    pytest.param(lambda X, y, ok: (X[1:], y[1:], [], ok), UnlearningError,
                 r"X_new has 359 rows", id="rows"),
    pytest.param(lambda X, y, ok: (X, y[1:], [], ok), UnlearningError, r"one entry per row",
                 id="y-rows"),
    pytest.param(lambda X, y, ok: (X, y, [], ok[1:]), UnlearningError, r"one entry per column",
                 id="cols-len"),
    pytest.param(lambda X, y, ok: (X, y, [], [*ok[:-1], ok.size]), UnlearningError,
                 r"out of range", id="cols-high"),
    pytest.param(lambda X, y, ok: (X, y, [], [-2, *ok[1:]]), UnlearningError, r"out of range",
                 id="cols-low"),
    pytest.param(lambda X, y, ok: (X, y, [], [0, *ok[:-1]]), UnlearningError,
                 r"more than one new column", id="cols-duplicate"),
    pytest.param(lambda X, y, ok: (X, y, [], ok.astype(float)), UnlearningError,
                 r"must be integers", id="cols-float"),
    pytest.param(lambda X, y, ok: (X, y, [4, 4], ok), DuplicateRowError, r"more than once",
                 id="rows-duplicate"),
    pytest.param(lambda X, y, ok: (X, y, [X.shape[0]], ok), RowPositionError, r"out of range",
                 id="rows-range"),
    pytest.param(lambda X, y, ok: (X, _other_label(y, 10), [11], ok), UnlearningError,
                 r"rows 10, which are not in changed_rows", id="y-outside"),
    pytest.param(lambda X, y, ok: (_with_nan(X), y, [], [-1, *ok[1:]]), UnlearningError,
                 r"NaN", id="nan"),
    pytest.param(lambda X, y, ok: (X[:, :0], y, [], []), UnlearningError, r"no columns",
                 id="no-columns"),
]  # fmt: skip


@pytest.mark.parametrize("case_id", ERROR_CASES)
@pytest.mark.parametrize(("bad", "error", "message"), BAD_UPDATES)
def test_bad_updates_raise_and_change_nothing(
    case_id: str, bad: Any, error: type[Exception], message: str
) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=False, seed=61)
    unlearner = fit_for_forgetting(c.make(), X, y)
    X_new, y_new, rows, old_columns = bad(X.copy(), y.copy(), np.arange(X.shape[1]))
    before = _snapshot(unlearner)
    with pytest.raises(error, match=message) as info:
        unlearner.update(X_new, y_new, changed_rows=rows, old_columns=old_columns)
    assert isinstance(info.value, LesterError)
    _assert_unchanged(unlearner, before)
    old = _old(c, unlearner.model)
    unlearner.forget([0, 1])
    assert_matches(c, unlearner.model, c.fit_reference(X[2:], y[2:]), X_test, old)


@pytest.mark.parametrize("case_id", ERROR_CASES)
@pytest.mark.parametrize(
    ("columns", "scale", "shift", "message"),
    [
        ([12], 1.5, 0.0, r"out of range for 12 columns"),
        ([-1], 1.5, 0.0, r"out of range"),
        ([1, 1], 1.5, 0.0, r"more than once"),
        ([1, 2], [1.5, 2.0, 3.0], 0.0, r"scale must be a scalar or one value per column"),
        ([1], 1.5, np.inf, r"shift must be finite"),
        ([True], 1.5, 0.0, r"column indices"),
        ([1.0], 1.5, 0.0, r"column indices"),
        ([1], "2", 0.0, r"scale must be numeric"),
    ],
)
def test_bad_affine_maps_raise_and_change_nothing(
    case_id: str, columns: Any, scale: Any, shift: Any, message: str
) -> None:
    c = case(case_id)
    X, y, _ = make_data(c, sparse=False, seed=62)
    unlearner = fit_for_forgetting(c.make(), X, y)
    before = _snapshot(unlearner)
    with pytest.raises(UnlearningError, match=message):
        unlearner.affine_columns(columns, scale, shift)
    _assert_unchanged(unlearner, before)


@pytest.mark.parametrize("how", ["update", "affine"])
def test_multinomial_nb_rejects_negative_values_and_changes_nothing(how: str) -> None:
    c = case("multinomial_nb")
    X, y, _ = make_data(c, sparse=True, seed=63)
    unlearner = fit_for_forgetting(c.make(), X, y)
    before = _snapshot(unlearner)
    with pytest.raises(UnlearningError, match="Negative values"):
        if how == "affine":
            unlearner.affine_columns([0], 1.0, -10.0)
        else:
            X_new = _dense(X)
            X_new[5, 3] = -1.0
            unlearner.update(sp.csr_matrix(X_new), y, changed_rows=[5], old_columns=range(12))
    _assert_unchanged(unlearner, before)


def test_family_errors_leave_the_model_unchanged() -> None:
    logistic = case("logistic_binary")
    X, y, _ = make_data(logistic, sparse=False, seed=64)
    unlearner = fit_for_forgetting(logistic.make(), X, y)
    before = _snapshot(unlearner)
    y_one = np.full_like(y, y[0])
    with pytest.raises(UnlearningError, match="needs at least two classes"):
        unlearner.update(X, y_one, changed_rows=np.arange(X.shape[0]), old_columns=range(12))
    _assert_unchanged(unlearner, before)
    gaussian = case("gaussian_nb")
    X, y, _ = make_data(gaussian, sparse=False, seed=65)
    unlearner = fit_for_forgetting(gaussian.make(), X, y)
    before = _snapshot(unlearner)
    with pytest.raises(UnlearningError, match="refitting GaussianNB"):  # sparse X: sklearn raises
        unlearner.update(sp.csr_matrix(X), y, changed_rows=[0], old_columns=range(12))
    _assert_unchanged(unlearner, before)


@pytest.mark.parametrize("case_id", ["ridge", "logistic_multinomial"])
def test_a_failure_inside_the_family_update_restores_the_stored_data(
    case_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = case(case_id)
    X, y, X_test = make_data(c, sparse=True, seed=66)
    unlearner = fit_for_forgetting(c.make(), X, y)
    unlearner.forget([0, 1, 2])
    before = _snapshot(unlearner)
    inverse = np.copy(unlearner._inverse)  # type: ignore[attr-defined]
    target = "_solve" if case_id == "ridge" else "_step"

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(type(unlearner), target, fail)
    X_new = _dense(unlearner.X)
    X_new[4] += 1.0
    with pytest.raises(RuntimeError, match="interrupted"):
        unlearner.update(sp.csr_matrix(X_new), unlearner.y, changed_rows=[4], old_columns=range(12))
    monkeypatch.undo()
    _assert_unchanged(unlearner, before)
    assert np.allclose(unlearner._inverse, inverse, rtol=1e-9, atol=1e-12)  # type: ignore[attr-defined]
    old = _old(c, unlearner.model)
    unlearner.forget([0])
    keep = np.arange(4, X.shape[0])
    assert_matches(c, unlearner.model, c.fit_reference(X[keep], y[keep]), X_test, old)
