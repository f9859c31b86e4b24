"""The prototype's approach to forgetting, re-implemented as the benchmark's baseline.

The Lester prototype (PAPER.md, "Where the prototype falls short") updates its artifacts after
a deletion without touching the encoders' fitted statistics and without converging the model:

* **instance deletion**: the rows whose provenance mentions a deleted record leave the prepared
  training and test rows, X_train / y_train and X_test / y_test; every other X entry stays as it
  was encoded before (no scaler mean/scale or vocabulary update, no re-encoding);
* **value deletion**: in the rows derived from a deleted value, the X columns of every feature
  block whose source-column lineage includes the deleted column are set to 0 (a recompute
  would encode the missing value, e.g. a standardised word count of 0 is ``-mean / scale``,
  not 0); the prepared value becomes missing;
* **model**: one full-batch gradient-descent step from the old coefficients on the remaining
  rows, on scikit-learn's L2-regularised logistic objective written as a mean,
  ``F(w, b) = 1/n sum_i log(1 + exp(-s_i (x_i.w + b))) + ||w||^2 / (2 C n)``, with the step size
  ``1 / L``, ``L = sigma_max([X, 1])^2 / (4 n) + 1 / (C n)`` the smoothness constant of ``F``
  (``sigma_max`` from a power iteration on the training matrix when the state is built, kept
  like the other statistics; with fewer rows the bound only gets looser, so the step stays a
  descent step). This is the textbook safe step: a larger one can overshoot, a smaller one
  moves less.

Everything happens in memory, as in the prototype (no durable writes). Only binary logistic
regression (the running example's model) is supported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import PlanError
from lester_dagster.features.matrix import Block, FeatureMatrix
from lester_dagster.frame import Prov

__all__ = ["PrototypeState", "lipschitz_sigma2"]

FloatArray = npt.NDArray[np.float64]


def lipschitz_sigma2(X: Any, iterations: int = 50, seed: int = 0) -> float:
    """An estimate of ``sigma_max([X, 1])^2`` (power iteration on ``[X, 1]^T [X, 1]``), times
    1.01 so that the step ``1 / L`` stays on the safe side of the estimate."""
    _, d = X.shape
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d + 1)
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(iterations):
        u = X @ v[:d] + v[d]
        w = np.concatenate([np.asarray(X.T @ u).ravel(), [u.sum()]])
        value = float(np.linalg.norm(w))
        if value == 0.0:
            return 0.0
        v = w / value
    return 1.01 * value


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def _drop(
    X: Any, prov: Prov, y: npt.NDArray[Any], frame: pd.DataFrame, rows: npt.NDArray[np.intp]
) -> tuple[Any, Prov, npt.NDArray[Any], pd.DataFrame]:
    keep = np.ones(prov.n, dtype=bool)
    keep[rows] = False
    kept = np.flatnonzero(keep)
    return X[kept], prov.take(kept), y[kept], frame.iloc[kept].reset_index(drop=True)


def _zero_columns(X: Any, rows: npt.NDArray[np.intp], columns: npt.NDArray[np.intp]) -> Any:
    """X with entries (rows x columns) set to 0 (CSR edited in its stored entries)."""
    if rows.size == 0 or columns.size == 0:
        return X
    if not sp.issparse(X):
        out = np.array(X, copy=True)
        out[np.ix_(rows, columns)] = 0.0
        return out
    out = sp.csr_matrix(X, copy=True)
    wanted = np.zeros(out.shape[1], dtype=bool)
    wanted[columns] = True
    for row in rows:
        start, stop = out.indptr[row], out.indptr[row + 1]
        hit = wanted[out.indices[start:stop]]
        out.data[start:stop][hit] = 0.0
    out.eliminate_zeros()
    return out


@dataclass
class PrototypeState:
    """Training and test artifacts updated the prototype's way (see the module docstring)."""

    X: Any
    prov: Prov
    y: npt.NDArray[Any]
    frame: pd.DataFrame
    X_test: Any
    prov_test: Prov
    y_test: npt.NDArray[Any]
    test_frame: pd.DataFrame
    blocks: tuple[Block, ...]
    resolve: Any
    resolve_test: Any
    classes: npt.NDArray[Any]
    coef: FloatArray
    intercept: float
    C: float
    sigma2: float
    steps: int = 0

    @classmethod
    def of(
        cls,
        X_train: FeatureMatrix,
        y_train: npt.ArrayLike,
        frame: pd.DataFrame,
        X_test: FeatureMatrix,
        y_test: npt.ArrayLike,
        test_frame: pd.DataFrame,
        model: Any,
    ) -> PrototypeState:
        """The baseline's state from the stored artifacts before any deletion (copied) and the
        fitted binary ``LogisticRegression`` ``model``."""
        classes = np.asarray(getattr(model, "classes_", []))
        coef = np.asarray(getattr(model, "coef_", np.zeros((0, 0))), dtype=np.float64)
        l2 = getattr(model, "penalty", "l2") in ("l2", "deprecated") and not getattr(
            model, "l1_ratio", 0.0
        )  # scikit-learn >= 1.8 says L2 by l1_ratio=0 and penalty="deprecated"
        if classes.size != 2 or coef.shape[0] != 1 or not l2 or not model.fit_intercept:
            raise PlanError(
                f"the prototype-style baseline needs a binary L2 LogisticRegression with an "
                f"intercept, got {model!r} with classes {classes.tolist()}; benchmark the "
                "running example's model"
            )
        return cls(
            X=X_train.X.copy(),
            prov=X_train.prov,
            y=np.array(y_train, copy=True),
            frame=frame.copy(),
            X_test=X_test.X.copy(),
            prov_test=X_test.prov,
            y_test=np.array(y_test, copy=True),
            test_frame=test_frame.copy(),
            blocks=X_train.blocks,
            resolve=X_train.resolve,
            resolve_test=X_test.resolve,
            classes=classes,
            coef=coef[0].copy(),
            intercept=float(np.asarray(model.intercept_).ravel()[0]),
            C=float(model.C),
            sigma2=lipschitz_sigma2(X_train.X),
        )

    # -- the two kinds of request ---------------------------------------------------------------
    def forget(self, source: str, keys: Iterable[Any]) -> int:
        """Instance deletion: drop the rows of these keys everywhere, then one gradient step.
        Returns the number of training rows removed."""
        wanted = list(keys)
        rows = self.prov.rows_mentioning(source, self.resolve(source, wanted, strict=False))
        test_rows = self.prov_test.rows_mentioning(
            source, self.resolve_test(source, wanted, strict=False)
        )
        self.X, self.prov, self.y, self.frame = _drop(self.X, self.prov, self.y, self.frame, rows)
        self.X_test, self.prov_test, self.y_test, self.test_frame = _drop(
            self.X_test, self.prov_test, self.y_test, self.test_frame, test_rows
        )
        self.gradient_step()
        return int(rows.size)

    def forget_values(self, source: str, keys: Iterable[Any], columns: Iterable[str]) -> int:
        """Value deletion: zero the X columns fed by these source columns in the rows of these
        keys, blank the prepared columns derived from them, then one gradient step. Returns
        the number of training rows changed."""
        wanted, deleted = list(keys), set(columns)
        blocks = [b for b in self.blocks if any(r.source == source and r.column in deleted
                                                 for r in b.lineage)]  # fmt: skip
        if not blocks:
            return 0
        cols = np.concatenate([np.arange(b.start, b.stop, dtype=np.intp) for b in blocks])
        inputs = sorted({c for b in blocks for c in b.inputs})
        rows = self.prov.rows_mentioning(source, self.resolve(source, wanted, strict=False))
        test_rows = self.prov_test.rows_mentioning(
            source, self.resolve_test(source, wanted, strict=False)
        )
        self.X = _zero_columns(self.X, rows, cols)
        self.X_test = _zero_columns(self.X_test, test_rows, cols)
        for frame, hit in ((self.frame, rows), (self.test_frame, test_rows)):
            if hit.size:
                for column in inputs:
                    if column not in frame.columns:  # not kept by the training state
                        continue
                    frame[column] = frame[column].astype(object)
                    frame.iloc[hit, list(frame.columns).index(column)] = None
        self.gradient_step()
        return int(rows.size)

    # -- the model --------------------------------------------------------------------------------
    def step_size(self) -> float:
        n = max(1, self.prov.n)
        return 1.0 / (self.sigma2 / (4.0 * n) + 1.0 / (self.C * n))

    def gradient_step(self) -> None:
        """One gradient-descent step on the remaining rows with step ``1 / L``."""
        n = self.prov.n
        if n == 0:
            return
        target = (np.asarray(self.y) == self.classes[1]).astype(np.float64)
        z = np.asarray(self.X @ self.coef).ravel() + self.intercept
        residual = (_sigmoid(z) - target) / n
        grad_w = np.asarray(self.X.T @ residual).ravel() + self.coef / (self.C * n)
        grad_b = float(residual.sum())
        eta = self.step_size()
        self.coef = self.coef - eta * grad_w
        self.intercept -= eta * grad_b
        self.steps += 1

    def parameters(self) -> dict[str, FloatArray]:
        """Parameters named and shaped as the model unlearners report them."""
        return {"coef_": self.coef[None, :].copy(), "intercept_": np.array([self.intercept])}

    def predict_test(self) -> npt.NDArray[Any]:
        z = np.asarray(self.X_test @ self.coef).ravel() + self.intercept
        return np.asarray(np.where(z > 0, self.classes[1], self.classes[0]))
