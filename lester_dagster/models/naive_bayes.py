"""Exact forgetting for naive Bayes: counts and per-class moments.

* ``MultinomialNB``, ``ComplementNB``, ``BernoulliNB``: the fitted ``class_count_`` and
  ``feature_count_`` *are* the sufficient statistics. Removing rows subtracts their
  (binarised, for Bernoulli) feature counts per class; the derived attributes
  (``feature_log_prob_``, ``class_log_prior_``, ``feature_all_``) are recomputed with
  scikit-learn's formulas from the estimator's own parameters (``alpha``, ``force_alpha``,
  ``fit_prior``, ``class_prior``, ``norm``, ``binarize``).
* ``GaussianNB``: per class the row count and the sums of ``x - c`` and ``(x - c)^2`` with a
  fixed shift ``c`` (the class mean at fit time), plus the same over all rows for the variance
  smoothing ``epsilon_ = var_smoothing * max_j var(X[:, j])``, which scikit-learn computes from
  the whole training matrix (so it changes when rows leave, and is updated exactly too).

**A class that loses its last row** disappears from ``classes_`` and from every per-class
attribute, exactly as a refit on the remaining rows would have it (the update's detail lists
it under ``classes_removed``). A classifier left with one class keeps working, as scikit-learn's
naive Bayes does (it then always predicts that class). With explicit priors (``class_prior`` /
``priors``) a vanished class makes the priors inconsistent; scikit-learn's fit would raise, so
the removal raises :class:`~lester_dagster.errors.UnlearningError` and nothing changes.

**Changed data** (:meth:`~DiscreteNBUnlearner.update`, exact): for the discrete models the
kept columns' feature counts lose the changed rows' old values and gain their new ones; new
(``-1``) columns are counted from ``X_new`` (``O(nnz)`` per column). ``GaussianNB`` recounts
its moments from ``X_new`` (``O(n d)``, i.e. a fit). If the classes present in ``y_new`` differ
from the model's, both recount everything (a fit on the new data). Negative values in the new
parts of ``X_new`` are rejected for ``MultinomialNB`` / ``ComplementNB`` as scikit-learn does.

**Affine column changes**: ``GaussianNB`` is exact in ``O(classes * k)``: with the shifts moved
to ``s c + t``, the centred sums scale by ``s`` and the squares by ``s^2`` (per class and over
all rows, so ``epsilon_`` follows). The discrete models go through ``update`` (the columns are
recounted; a shift that makes counts negative is an error for Multinomial / Complement NB).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from lester_dagster.errors import UnlearningError, preview
from lester_dagster.models.base import StoredRows, Unlearner, UpdateOutcome
from lester_dagster.models.linalg import (
    ColumnMap,
    FloatArray,
    IntArray,
    Matrix,
    dense_rows,
    take_rows,
)
from lester_dagster.models.refit import fit_in_place

__all__ = ["DiscreteNBUnlearner", "GaussianNBUnlearner"]

_ALPHA_LOWER_BOUND = 1e-10  # scikit-learn's floor for alpha when force_alpha=False


def _dense(value: Any) -> FloatArray:
    return np.asarray(value.toarray() if sp.issparse(value) else value, dtype=np.float64)


class _NaiveBayesUnlearner(Unlearner):
    """Shared parts: class bookkeeping and the check that explicit priors stay consistent."""

    _prior_param = "class_prior"

    def __init__(self, model: Any, X: Matrix, y: npt.NDArray[Any]) -> None:
        super().__init__(model, X, y, strategy="exact")

    @classmethod
    def fit(cls, estimator: Any, X: Matrix, y: npt.NDArray[Any]) -> Self:
        """Fit a clone of ``estimator`` on ``X``, ``y`` (already validated)."""
        from sklearn.base import clone

        if y.ndim != 1:
            raise UnlearningError(
                f"{type(estimator).__name__} needs a 1-D y, got shape {y.shape}; pass one "
                "label per row"
            )
        return cls(clone(estimator).fit(X, y), X, y)

    def _class_index(self, labels: npt.NDArray[Any]) -> IntArray:
        return np.searchsorted(self.model.classes_, labels).astype(np.intp)

    def _vanishing(self, removed: IntArray, counts: FloatArray) -> IntArray:
        """Indices of the classes that ``removed`` empties (counts are per class)."""
        taken = np.bincount(self._class_index(self._y_all[removed]), minlength=counts.size)
        return np.flatnonzero(counts - taken <= 0.5)

    def _check_removal(self, removed: IntArray) -> None:
        gone = self._vanishing(removed, self._counts())
        if gone.size and getattr(self.model, self._prior_param) is not None:
            raise UnlearningError(
                f"removing these rows leaves no row of class(es) "
                f"{preview(self.model.classes_[gone].tolist())}, but "
                f"{type(self.model).__name__} was given explicit priors "
                f"({self._prior_param}=...) for all {self.model.classes_.size} classes; "
                "scikit-learn's fit would raise on the remaining rows. Refit with priors for "
                "the remaining classes, or keep at least one row of each class"
            )

    def _counts(self) -> FloatArray:
        return np.asarray(self.model.class_count_, dtype=np.float64)


class DiscreteNBUnlearner(_NaiveBayesUnlearner):
    """Exact forgetting for ``MultinomialNB``, ``ComplementNB`` and ``BernoulliNB``."""

    @staticmethod
    def estimator_types() -> tuple[type, ...]:
        from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

        return (MultinomialNB, ComplementNB, BernoulliNB)

    def _update(self, removed: IntArray) -> UpdateOutcome:
        from sklearn.naive_bayes import BernoulliNB

        model = self.model
        rows = take_rows(self._X_all, removed)
        if type(model) is BernoulliNB and model.binarize is not None:
            from sklearn.preprocessing import binarize

            rows = binarize(rows, threshold=model.binarize)
        index = self._class_index(self._y_all[removed])
        n_classes = model.classes_.size
        onehot = np.zeros((index.size, n_classes))
        onehot[np.arange(index.size), index] = 1.0
        delta = rows.T @ onehot
        delta = delta.toarray() if sp.issparse(delta) else np.asarray(delta)
        feature_count = model.feature_count_ - delta.T
        class_count = model.class_count_ - onehot.sum(axis=0)
        keep = class_count > 0.5
        detail: dict[str, Any] = {}
        if not keep.all():
            detail["classes_removed"] = model.classes_[~keep].tolist()
        classes = model.classes_[keep]
        feature_count, class_count = feature_count[keep], class_count[keep]
        flp, extra = self._feature_log_prob(feature_count, class_count)
        class_log_prior = self._class_log_prior(class_count, classes.size)
        model.classes_, model.class_count_, model.feature_count_ = (
            classes,
            class_count,
            feature_count,
        )
        model.feature_log_prob_, model.class_log_prior_ = flp, class_log_prior
        for name, value in extra.items():
            setattr(model, name, value)
        return UpdateOutcome("exact", detail=detail)

    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        from sklearn.naive_bayes import BernoulliNB

        model = self.model
        X, y = self._X_all, self._y_all
        present = np.unique(y)
        if present.size != model.classes_.size or not np.array_equal(present, model.classes_):
            fit_in_place(model, X, y)
            return UpdateOutcome(
                "exact", detail={"method": "recount: the classes in y_new differ (a fit)"}
            )
        rows_new = X[changed]
        fresh = X[:, columns.fresh]
        if type(model) is not BernoulliNB:
            for part in (rows_new, fresh):
                values = part.data if sp.issparse(part) else part
                if values.size and float(np.min(values)) < 0:
                    raise UnlearningError(
                        f"Negative values in data passed to {type(model).__name__} (the new "
                        "rows or columns of X_new): scikit-learn's fit rejects them; this "
                        "model needs counts or frequencies"
                    )
        rows_old = old.rows(changed)
        if type(model) is BernoulliNB and model.binarize is not None:
            from sklearn.preprocessing import binarize

            rows_old, rows_new, fresh = (
                binarize(m, threshold=model.binarize) if m.shape[0] and m.shape[1] else m
                for m in (rows_old, rows_new, fresh)
            )
        n_classes = model.classes_.size
        feature_count = np.zeros((n_classes, columns.n_new))
        feature_count[:, columns.kept_new] = model.feature_count_[:, columns.kept_old]
        class_count = np.asarray(model.class_count_, dtype=np.float64).copy()
        for rows, labels, sign, cols in (
            (rows_old, old.y(changed), -1.0, columns.kept_old),
            (rows_new, y[changed], 1.0, columns.kept_new),
        ):
            if changed.size:
                onehot = self._onehot(labels, n_classes)
                feature_count[:, columns.kept_new] += sign * _dense((rows[:, cols]).T @ onehot).T
                class_count += sign * onehot.sum(axis=0)
        if columns.fresh.size:
            onehot = self._onehot(y, n_classes)
            feature_count[:, columns.fresh] = _dense(fresh.T @ onehot).T
        flp, extra = self._feature_log_prob(feature_count, class_count)
        model.class_count_, model.feature_count_ = class_count, feature_count
        model.feature_log_prob_ = flp
        model.class_log_prior_ = self._class_log_prior(class_count, n_classes)
        for name, value in extra.items():
            setattr(model, name, value)
        if not columns.identity:
            model.n_features_in_ = columns.n_new
            model.__dict__.pop("feature_names_in_", None)
        return UpdateOutcome("exact", detail={"method": "counts of changed rows / new columns"})

    def _onehot(self, labels: npt.NDArray[Any], n_classes: int) -> FloatArray:
        index = self._class_index(labels)
        onehot = np.zeros((index.size, n_classes))
        onehot[np.arange(index.size), index] = 1.0
        return onehot

    def _alpha(self) -> Any:
        model = self.model
        alpha: Any = model.alpha if isinstance(model.alpha, Real) else np.asarray(model.alpha)
        if np.min(alpha) < _ALPHA_LOWER_BOUND and not model.force_alpha:
            return np.maximum(alpha, _ALPHA_LOWER_BOUND)
        return alpha

    def _feature_log_prob(
        self, feature_count: FloatArray, class_count: FloatArray
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        from sklearn.naive_bayes import BernoulliNB, ComplementNB

        alpha = self._alpha()
        if type(self.model) is ComplementNB:
            feature_all = feature_count.sum(axis=0)
            comp_count = feature_all + alpha - feature_count
            logged = np.log(comp_count / comp_count.sum(axis=1, keepdims=True))
            flp = logged / logged.sum(axis=1, keepdims=True) if self.model.norm else -logged
            return flp, {"feature_all_": feature_all}
        smoothed_fc = feature_count + alpha
        if type(self.model) is BernoulliNB:
            smoothed_cc = class_count + alpha * 2
        else:
            smoothed_cc = smoothed_fc.sum(axis=1)
        return np.log(smoothed_fc) - np.log(np.reshape(smoothed_cc, (-1, 1))), {}

    def _class_log_prior(self, class_count: FloatArray, n_classes: int) -> FloatArray:
        model = self.model
        if model.class_prior is not None:
            return np.log(np.asarray(model.class_prior, dtype=np.float64))
        if model.fit_prior:
            with np.errstate(divide="ignore"):
                prior: FloatArray = np.log(class_count) - np.log(class_count.sum())
            return prior
        return np.full(n_classes, -np.log(n_classes))

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        names = ["class_count_", "feature_count_", "class_log_prior_", "feature_log_prob_"]
        if hasattr(model, "feature_all_"):
            names.append("feature_all_")
        return {name: np.asarray(getattr(model, name), dtype=np.float64) for name in names}


class GaussianNBUnlearner(_NaiveBayesUnlearner):
    """Exact forgetting for ``GaussianNB`` (dense ``X``, as scikit-learn requires)."""

    _prior_param = "priors"

    @staticmethod
    def estimator_types() -> tuple[type, ...]:
        from sklearn.naive_bayes import GaussianNB

        return (GaussianNB,)

    def __init__(self, model: Any, X: Matrix, y: npt.NDArray[Any]) -> None:
        super().__init__(model, X, y)
        self._count_moments(X, y)

    def _count_moments(self, X: Matrix, y: npt.NDArray[Any]) -> None:
        """Per-class and global centred sums and squares of ``X`` (shifts: the means)."""
        model = self.model
        index = self._class_index(y)
        self._shift = np.array(model.theta_, dtype=np.float64)  # (classes, features)
        self._sum = np.zeros_like(self._shift)
        self._squares = np.zeros_like(self._shift)
        for k in range(self._shift.shape[0]):
            centred = X[index == k] - self._shift[k]
            self._sum[k] = centred.sum(axis=0)
            self._squares[k] = (centred * centred).sum(axis=0)
        self._global_shift = np.asarray(X.mean(axis=0), dtype=np.float64)
        centred = X - self._global_shift
        self._global_sum = centred.sum(axis=0)
        self._global_squares = (centred * centred).sum(axis=0)

    def _update(self, removed: IntArray) -> UpdateOutcome:
        model = self.model
        rows = dense_rows(self._X_all, removed)
        index = self._class_index(self._y_all[removed])
        total, squares = self._sum.copy(), self._squares.copy()
        for k in np.unique(index):
            centred = rows[index == k] - self._shift[k]
            total[k] -= centred.sum(axis=0)
            squares[k] -= (centred * centred).sum(axis=0)
        centred = rows - self._global_shift
        global_sum = self._global_sum - centred.sum(axis=0)
        global_squares = self._global_squares - (centred * centred).sum(axis=0)
        counts = model.class_count_ - np.bincount(index, minlength=total.shape[0])
        keep = counts > 0.5
        detail: dict[str, Any] = {}
        if not keep.all():
            detail["classes_removed"] = model.classes_[~keep].tolist()
        n = float(self.n_rows)
        global_mean = global_sum / n
        epsilon = model.var_smoothing * float(
            np.max(np.maximum(global_squares / n - global_mean * global_mean, 0.0))
        )
        counts, shift, total, squares = counts[keep], self._shift[keep], total[keep], squares[keep]
        mean = total / counts[:, None]
        var = np.maximum(squares / counts[:, None] - mean * mean, 0.0)
        # commit
        self._shift, self._sum, self._squares = shift, total, squares
        self._global_sum, self._global_squares = global_sum, global_squares
        model.classes_ = model.classes_[keep]
        model.class_count_ = counts
        model.theta_ = shift + mean
        model.var_ = var + epsilon
        model.epsilon_ = epsilon
        if model.priors is None:
            model.class_prior_ = counts / counts.sum()
        return UpdateOutcome("exact", detail=detail)

    def _replace(self, old: StoredRows, changed: IntArray, columns: ColumnMap) -> UpdateOutcome:
        fit_in_place(self.model, self._X_all, self._y_all)
        self._count_moments(self._X_all, self._y_all)
        return UpdateOutcome("exact", detail={"method": "recount (a fit on X_new, O(n d))"})

    def _affine(
        self, columns: IntArray, scale: FloatArray, shift: FloatArray
    ) -> UpdateOutcome | None:
        model = self.model
        # x' - (s c + t) = s (x - c): centred sums scale by s, squares by s^2
        self._shift[:, columns] = self._shift[:, columns] * scale + shift
        self._sum[:, columns] *= scale
        self._squares[:, columns] *= scale * scale
        self._global_shift[columns] = self._global_shift[columns] * scale + shift
        self._global_sum[columns] *= scale
        self._global_squares[columns] *= scale * scale
        counts = np.asarray(model.class_count_, dtype=np.float64)
        n = float(self.n_rows)
        global_mean = self._global_sum / n
        epsilon = model.var_smoothing * float(
            np.max(np.maximum(self._global_squares / n - global_mean * global_mean, 0.0))
        )
        mean = self._sum / counts[:, None]
        var = np.maximum(self._squares / counts[:, None] - mean * mean, 0.0)
        model.theta_ = self._shift + mean
        model.var_ = var + epsilon
        model.epsilon_ = epsilon
        return UpdateOutcome("exact", detail={"method": "moments rescaled"})

    def parameters(self, model: Any) -> dict[str, FloatArray]:
        names = ["class_count_", "class_prior_", "theta_", "var_", "epsilon_"]
        return {name: np.atleast_1d(np.asarray(getattr(model, name), float)) for name in names}
