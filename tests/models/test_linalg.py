"""The matrix helpers the model families share (models.linalg)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Ridge

from lester_dagster.models.linalg import (
    add_product,
    as_training_data,
    max_abs_difference,
    numeric_parameters,
    weighted_gram,
)


def test_as_training_data_validates_shapes() -> None:
    X, y = as_training_data(sp.coo_matrix(np.eye(3)), [1, 2, 3])
    assert sp.isspmatrix_csr(X) and X.dtype == np.float64 and y.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="X must be 2-D"):
        as_training_data(np.ones(3), [1, 2, 3])
    with pytest.raises(ValueError, match=r"one entry per row of X \(3 rows\), got shape \(2,\)"):
        as_training_data(np.ones((3, 2)), [1, 2])
    with pytest.raises(ValueError, match="no rows"):
        as_training_data(np.ones((0, 2)), [])


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shifted", [False, True])
def test_weighted_gram_matches_the_definition(
    sparse: bool, intercept: bool, weighted: bool, shifted: bool
) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5)) * (rng.random((40, 5)) < 0.5)
    w = rng.random(40) if weighted else None
    shift = rng.normal(size=5) if shifted else None
    A = X - (shift if shifted else 0.0)
    if intercept:
        A = np.hstack([A, np.ones((40, 1))])
    expected = A.T @ (A * (w if weighted else np.ones(40))[:, None])
    got = weighted_gram(sp.csr_matrix(X) if sparse else X, w, intercept=intercept, shift=shift)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.flags.c_contiguous


def test_add_product_updates_in_place() -> None:
    rng = np.random.default_rng(2)
    target = rng.normal(size=(6, 6))
    left, right = rng.normal(size=(6, 2)), rng.normal(size=(2, 6))
    expected = target + 0.5 * left @ right
    view = target
    add_product(target, left, right, 0.5)
    assert view is target
    np.testing.assert_allclose(target, expected, rtol=1e-14)
    with pytest.raises(ValueError, match="C-contiguous"):
        add_product(np.asfortranarray(target), left, right, 1.0)


def test_parameter_helpers() -> None:
    model = Ridge().fit(np.eye(3), [1.0, 2.0, 3.0])
    params = numeric_parameters(model)
    assert set(params) == {"coef_", "intercept_"}  # plain ints (n_features_in_) are metadata
    assert max_abs_difference(params, params) == 0.0
    assert max_abs_difference({"a": np.ones(2)}, {"a": np.ones(3)}) == float("inf")
    assert np.isnan(max_abs_difference({"a": np.ones(2)}, {"b": np.ones(2)}))
