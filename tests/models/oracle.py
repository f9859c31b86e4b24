"""The oracle for model unlearning: compare an unlearner's model with a fit on D \\ R.

Every model family is a :class:`Case`: an estimator, the data it is fitted on, the kind of
guarantee (``exact``, ``newton``, ``refit``) and an *independent* reference fit (scikit-learn
itself, never our code):

* ``exact``: every fitted attribute in ``Case.attributes`` within ``RTOL = 1e-9`` relative to
  the attribute's largest absolute value (``ATOL = 1e-12`` for attributes that are ~0), equal
  ``classes_``, and identical predictions on a held-out set (classifiers: labels; regressors
  and neighbour distances: within ``RTOL``). Linear references are fitted on *dense* data with
  an exact solver (Cholesky / lstsq): scikit-learn's sparse solvers stop at ``tol``.
* ``newton``: the reference is a tightly converged refit (newton-cholesky, ``tol=1e-10``).
  The updated model's distance to it (max abs over ``coef_`` and ``intercept_``, intercepts
  centred for multinomial models) must be at most ``1e-3`` times the *old* model's distance
  to it (so an unchanged model fails), and predictions on the held-out set must agree on at
  least 99.9% of the rows.
* ``refit``: a cold refit with a fixed ``random_state``; must equal the reference exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.naive_bayes import BernoulliNB, ComplementNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

RTOL = 1e-9
ATOL = 1e-12
DISTANCE_RATIO = 1e-3
AGREEMENT = 0.999
N_ROWS = 360
N_TEST = 1000
DENSE = 6
LEVELS = 6  # one-hot columns (levels 1..LEVELS; level 0 is dropped); level LEVELS is rare
RARE_ROWS = 3
RARE_COLUMN = DENSE + LEVELS - 1


@dataclass(frozen=True)
class Case:
    """One model family under test."""

    id: str
    make: Callable[[], Any]
    data: str  # regression | binary | multiclass | counts | gaussian
    kind: str  # exact | newton | refit
    attributes: tuple[str, ...] = ()
    reference: Callable[[], Any] | None = None
    sparse: bool = True

    def fit_reference(self, X: Any, y: np.ndarray) -> Any:
        model = (self.reference or self.make)()
        if self.attributes == LINEAR and sp.issparse(X):
            X = X.toarray()  # exact dense solvers (see module docstring)
        return model.fit(X, y)


LINEAR = ("coef_", "intercept_")


def _tight_logistic(**params: Any) -> Callable[[], Any]:
    return lambda: LogisticRegression(**params, solver="newton-cholesky", tol=1e-10, max_iter=1000)


DISCRETE_NB = ("class_count_", "feature_count_", "class_log_prior_", "feature_log_prob_")
CASES = [
    Case("ridge", lambda: Ridge(alpha=1.5), "regression", "exact", LINEAR,
         lambda: Ridge(alpha=1.5, solver="cholesky")),
    Case("ridge_no_intercept", lambda: Ridge(alpha=0.7, fit_intercept=False), "regression",
         "exact", LINEAR, lambda: Ridge(alpha=0.7, fit_intercept=False, solver="cholesky")),
    Case("linear_regression", LinearRegression, "regression", "exact", LINEAR),
    Case("linear_regression_no_intercept", lambda: LinearRegression(fit_intercept=False),
         "regression", "exact", LINEAR),
    Case("multinomial_nb", lambda: MultinomialNB(alpha=0.5), "counts", "exact", DISCRETE_NB),
    Case("complement_nb", lambda: ComplementNB(norm=True), "counts", "exact",
         (*DISCRETE_NB, "feature_all_")),
    Case("bernoulli_nb", lambda: BernoulliNB(binarize=0.5), "counts", "exact", DISCRETE_NB),
    Case("gaussian_nb", GaussianNB, "gaussian", "exact",
         ("class_count_", "class_prior_", "theta_", "var_", "epsilon_"), sparse=False),
    Case("knn_classifier", lambda: KNeighborsClassifier(5), "multiclass", "exact"),
    Case("knn_regressor", lambda: KNeighborsRegressor(4, weights="distance"), "regression",
         "exact"),
    Case("logistic_binary", lambda: LogisticRegression(C=0.5), "binary", "newton",
         reference=_tight_logistic(C=0.5)),
    Case("logistic_multinomial", lambda: LogisticRegression(C=2.0), "multiclass", "newton",
         reference=_tight_logistic(C=2.0)),
    Case("logistic_no_intercept", lambda: LogisticRegression(fit_intercept=False), "binary",
         "newton", reference=_tight_logistic(fit_intercept=False)),
    Case("sgd_classifier", lambda: SGDClassifier(random_state=0), "binary", "refit",
         ("coef_", "intercept_", "t_")),
    Case("linear_svc", lambda: LinearSVC(random_state=0), "multiclass", "refit",
         ("coef_", "intercept_", "n_iter_")),
    Case("decision_tree", lambda: DecisionTreeClassifier(random_state=0), "multiclass",
         "refit", ("feature_importances_",)),
]  # fmt: skip
CASE_IDS = [case.id for case in CASES]


def case(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def make_data(case: Case, *, sparse: bool, seed: int = 0, n: int = N_ROWS) -> tuple[Any, ...]:
    """``X, y, X_test`` for ``case``: dense columns, then a one-hot block (first level dropped,
    the last level has only ``RARE_ROWS`` rows, among the first rows); sparse as CSR."""
    rng = np.random.default_rng(seed)
    total = n + N_TEST
    level = rng.integers(0, LEVELS, size=total)  # level 0 is the dropped reference level
    level[:RARE_ROWS] = LEVELS  # the rare level: the first training rows ...
    level[n : n + 20] = LEVELS  # ... and a few test rows
    onehot = np.zeros((total, LEVELS))
    onehot[level > 0, level[level > 0] - 1] = 1.0
    if case.data == "counts":
        dense = rng.poisson(1.5, size=(total, DENSE)).astype(float)
    else:
        dense = rng.normal(size=(total, DENSE)) + np.array([0.0, 1.0, -2.0, 0.5, 3.0, 0.0])
    X_all = np.hstack([dense, onehot])
    w = rng.normal(size=X_all.shape[1])
    score = X_all @ w
    if case.data == "regression":
        y_all = score + rng.normal(scale=0.5, size=total)
    elif case.data == "binary":
        y_all = np.where(score + rng.logistic(size=total) > np.median(score), "yes", "no")
    else:  # multiclass / counts / gaussian: three classes
        cut = np.quantile(score, [0.35, 0.7])
        y_all = np.digitize(score + rng.normal(scale=0.7, size=total), cut)
    X, X_test = X_all[:n], X_all[n:]
    if sparse:
        X, X_test = sp.csr_matrix(X), sp.csr_matrix(X_test)
    return X, y_all[:n], X_test


def take(X: Any, rows: np.ndarray) -> Any:
    return X[rows]


def _dense(value: Any) -> np.ndarray:
    return np.asarray(value.toarray() if sp.issparse(value) else value, dtype=np.float64)


def relative_error(mine: Any, reference: Any) -> float:
    """max |mine - reference| / max |reference| (absolute where the reference is ~0)."""
    a, b = np.atleast_1d(_dense(mine)), np.atleast_1d(_dense(reference))
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    return diff / scale if scale > ATOL else diff


def params(model: Any) -> np.ndarray:
    """``coef_`` and ``intercept_`` as one vector, intercepts centred when there are several."""
    intercept = np.atleast_1d(np.array(model.intercept_, dtype=np.float64))
    if intercept.size > 1:
        intercept = intercept - intercept.mean()
    return np.concatenate([np.ravel(model.coef_), intercept])


def assert_exact(case: Case, model: Any, reference: Any, X_test: Any) -> None:
    for name in case.attributes:
        error = relative_error(getattr(model, name), getattr(reference, name))
        assert error <= RTOL, f"{case.id}: {name} differs from a refit by {error:.3g} (relative)"
    if hasattr(reference, "classes_"):
        assert np.array_equal(model.classes_, reference.classes_), (model.classes_, reference)
    assert_same_predictions(case, model, reference, X_test)


def assert_same_predictions(case: Case, model: Any, reference: Any, X_test: Any) -> None:
    mine, theirs = model.predict(X_test), reference.predict(X_test)
    if is_classifier(reference):
        assert np.array_equal(mine, theirs), f"{case.id}: predictions differ"
    else:
        assert relative_error(mine, theirs) <= RTOL, f"{case.id}: predictions differ"
    if hasattr(reference, "kneighbors"):
        d_mine, i_mine = model.kneighbors(X_test)
        d_ref, i_ref = reference.kneighbors(X_test)
        assert relative_error(d_mine, d_ref) <= RTOL
        assert np.array_equal(i_mine, i_ref)


def assert_newton(
    case: Case, model: Any, old_params: np.ndarray, reference: Any, X_test: Any
) -> tuple[float, float]:
    """The distance criterion and prediction agreement; returns (new, old) distances."""
    target = params(reference)
    new = float(np.max(np.abs(params(model) - target)))
    old = float(np.max(np.abs(old_params - target)))
    assert new <= DISTANCE_RATIO * old, (
        f"{case.id}: distance to the refit {new:.3g} is not <= {DISTANCE_RATIO} x the old "
        f"model's distance {old:.3g}"
    )
    assert np.array_equal(model.classes_, reference.classes_)
    agreement = float(np.mean(model.predict(X_test) == reference.predict(X_test)))
    assert agreement >= AGREEMENT, f"{case.id}: predictions agree on {agreement:.2%} only"
    return new, old


def assert_matches(
    case: Case, model: Any, reference: Any, X_test: Any, old_params: np.ndarray | None
) -> None:
    """Dispatch on the case's kind (see the module docstring)."""
    if case.kind == "exact":
        assert_exact(case, model, reference, X_test)
    elif case.kind == "newton":
        assert old_params is not None
        assert_newton(case, model, old_params, reference, X_test)
    else:
        for name in case.attributes:
            assert relative_error(getattr(model, name), getattr(reference, name)) == 0.0, name
        assert np.array_equal(model.predict(X_test), reference.predict(X_test))


def fresh(case: Case) -> Any:
    return clone(case.make())
