"""The shared machinery: row positions, errors, tombstones, compaction."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import MultinomialNB

from lester_dagster.errors import DuplicateRowError, LesterError, RowPositionError, UnlearningError
from lester_dagster.models import fit_for_forgetting


def _ridge(n: int = 50, sparse: bool = False) -> tuple[object, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(size=n)
    return fit_for_forgetting(Ridge(), sp.csr_matrix(X) if sparse else X, y), X, y


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ([3, 50], RowPositionError, r"out of range .* 50 rows \(valid: 0\.\.49\): 50"),
        ([-1], RowPositionError, r"out of range .*: -1"),
        ([2, 7, 2, 7, 9], DuplicateRowError, r"more than once: 2, 7; .*np\.unique"),
        ([1.0, 2.0], RowPositionError, r"must be integers, got dtype float64 \(1\.0, 2\.0\)"),
        (np.ones(50, dtype=bool), RowPositionError, r"boolean mask; pass np\.flatnonzero"),
        ([["a"]], RowPositionError, r"1-D sequence"),
        (["a"], RowPositionError, r"must be integers"),
    ],
)
def test_bad_row_positions_are_named_and_change_nothing(
    rows: object, error: type[Exception], message: str
) -> None:
    unlearner, _, _ = _ridge()
    coef = unlearner.model.coef_.copy()
    with pytest.raises(error, match=message) as info:
        unlearner.forget(rows)  # type: ignore[arg-type]
    assert isinstance(info.value, LesterError)
    assert np.array_equal(unlearner.model.coef_, coef) and unlearner.n_rows == 50
    assert not unlearner.history


def test_error_classes_inherit_the_matching_builtins() -> None:
    assert issubclass(RowPositionError, IndexError)
    assert issubclass(DuplicateRowError, ValueError)
    assert issubclass(UnlearningError, ValueError)


def test_positions_refer_to_the_current_matrix() -> None:
    unlearner, X, y = _ridge()
    unlearner.forget([0, 1])
    assert np.array_equal(unlearner.X, X[2:])  # position 0 is now the original row 2
    unlearner.forget([0])
    assert np.array_equal(unlearner.y, y[3:])
    with pytest.raises(RowPositionError, match=r"0\.\.46"):
        unlearner.forget([47])


def test_a_scalar_position_is_one_row() -> None:
    unlearner, _, y = _ridge()
    record = unlearner.forget(np.int64(4))
    assert record.rows_removed == 1 and np.array_equal(unlearner.y, np.delete(y, 4))


@pytest.mark.parametrize("sparse", [False, True])
def test_compaction_keeps_positions_and_the_model(sparse: bool) -> None:
    unlearner, X, y = _ridge(sparse=sparse)
    record = unlearner.forget(np.arange(0, 50, 2))  # half the rows: no compaction yet
    assert "compacted" not in record.detail
    record = unlearner.forget([0])  # now fewer than half are alive
    assert record.detail["compacted"] is True
    assert unlearner._X_all.shape[0] == 24 == unlearner.n_rows
    remaining = np.arange(1, 50, 2)[1:]
    dense = unlearner.X.toarray() if sparse else unlearner.X
    assert np.array_equal(dense, X[remaining]) and np.array_equal(unlearner.y, y[remaining])
    reference = Ridge(solver="cholesky").fit(X[remaining], y[remaining])
    np.testing.assert_allclose(unlearner.model.coef_, reference.coef_, rtol=1e-10)
    unlearner.forget([3])
    np.testing.assert_allclose(
        unlearner.model.coef_,
        Ridge(solver="cholesky")
        .fit(np.delete(X[remaining], 3, 0), np.delete(y[remaining], 3))
        .coef_,
        rtol=1e-10,
    )


def test_records_are_kept_in_history_and_serialisable() -> None:
    unlearner, _, _ = _ridge()
    first = unlearner.forget([1, 2])
    second = unlearner.forget([])
    assert unlearner.history == [first, second]
    meta = first.as_metadata()
    assert meta["component"] == "model:Ridge" and meta["strategy"] == "exact"
    assert meta["detail"]["rows_remaining"] == 48 and meta["seconds"] >= 0
    assert "Ridge strategy='exact', 48 rows" in repr(unlearner)


def test_an_update_that_fails_leaves_the_rows_in_place() -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    unlearner = fit_for_forgetting(MultinomialNB(class_prior=[0.5, 0.5]), X, y)
    with pytest.raises(UnlearningError, match=r"class\(es\) 0, but MultinomialNB"):
        unlearner.forget([0, 3])
    assert unlearner.n_rows == 4 and np.array_equal(unlearner.y, y)
    assert unlearner.model.classes_.tolist() == [0, 1]


@pytest.mark.parametrize("sparse", [False, True])
def test_adopt_shares_an_equal_matrix_and_refuses_others(sparse: bool) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + rng.logistic(size=60) > 0).astype(int)
    Xs = sp.csr_matrix(X) if sparse else X
    unlearner = fit_for_forgetting(LogisticRegression(), Xs, y)
    unlearner.forget([1, 2])  # tombstones: nothing adopted until compacted
    live = np.delete(X, [1, 2], axis=0)
    same = sp.csr_matrix(live) if sparse else live.copy()
    assert unlearner.adopt(same) is False
    unlearner.compact()
    other = live.copy()
    other[5, 2] += 1.0  # one value differs
    assert unlearner.adopt(sp.csr_matrix(other) if sparse else other) is False
    assert unlearner.adopt(same[:-1]) is False  # another shape
    assert unlearner.adopt(same) is True
    assert unlearner._X_all is same and unlearner._objective.X is same
    # the model keeps forgetting correctly on the adopted matrix
    unlearner.forget([0])
    reference = unlearner.reference_fit()
    np.testing.assert_allclose(unlearner.model.coef_, reference.coef_, atol=1e-8)


@pytest.mark.parametrize("sparse", [False, True])
def test_compact_into_takes_the_callers_kept_rows_without_copying_its_own(
    sparse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    from lester_dagster.models import base

    rng = np.random.default_rng(4)
    X = rng.normal(size=(70, 5))
    y = (X[:, 0] + rng.logistic(size=70) > 0).astype(int)
    live = np.delete(X, [3, 9], axis=0)

    def fitted() -> Any:
        unlearner = fit_for_forgetting(LogisticRegression(), sp.csr_matrix(X) if sparse else X, y)
        unlearner.forget([3, 9])
        return unlearner

    copies: list[int] = []
    real = base.subset_rows
    monkeypatch.setattr(base, "subset_rows", lambda M, rows: copies.append(1) or real(M, rows))
    unlearner = fitted()
    same = sp.csr_matrix(live) if sparse else live.copy()
    assert unlearner.compact_into(same) is True and copies == []
    assert unlearner._X_all is same and unlearner._objective.X is same
    unlearner.forget([0])  # keeps forgetting correctly on the taken matrix
    reference = unlearner.reference_fit()
    np.testing.assert_allclose(unlearner.model.coef_, reference.coef_, atol=1e-8)
    # a matrix that is not the kept rows is refused: compacted from its own rows instead
    other = live.copy()
    other[10, 1] += 1.0
    unlearner = fitted()
    assert unlearner.compact_into(sp.csr_matrix(other) if sparse else other) is False
    assert copies == [1] and unlearner._X_all.shape == live.shape
    assert np.array_equal(unlearner._X_all.toarray() if sparse else unlearner._X_all, live)


def test_a_compact_unlearner_pickles_without_its_row_positions() -> None:
    """The alive-row bookkeeping names row positions, which all move when one row leaves: a
    compact unlearner does not store it (a stored state would otherwise change in every row
    segment), and rebuilds it on loading; one with tombstones keeps it."""
    import pickle

    unlearner, _, _ = _ridge(60)
    state = unlearner.__getstate__()
    assert state["_alive"] is None and state["_alive_mask"] is None
    back = pickle.loads(pickle.dumps(unlearner))
    np.testing.assert_array_equal(back._alive, np.arange(60))
    assert back._alive_mask.dtype == bool and back._alive_mask.all()
    back.forget([5, 7])
    unlearner.forget([5, 7])
    np.testing.assert_allclose(back.model.coef_, unlearner.model.coef_)

    # with tombstones (rows forgotten, not yet compacted) the positions are stored
    assert unlearner._alive.size == 58 and unlearner._X_all.shape[0] == 60
    kept = pickle.loads(pickle.dumps(unlearner))
    np.testing.assert_array_equal(kept._alive, unlearner._alive)
    np.testing.assert_array_equal(kept._alive_mask, unlearner._alive_mask)
    np.testing.assert_allclose(kept.reference_fit().coef_, unlearner.reference_fit().coef_)
