"""The logistic-regression objective, its derivatives and a damped Newton solver.

``F(W) = sum_i w_i loss_i(W) + ||coef||^2 / (2C)`` over the rows with weight ``w_i = 1`` (the
live rows; dead rows have weight 0), for ``W`` of shape ``(n_outputs, n_features + intercept)``:
one output for a binary model (positive class = ``classes_[1]``), one per class for a
multinomial one. Parameters are flattened row by row (output-major). This module knows nothing
about unlearning; :mod:`lester_dagster.models.logistic` builds on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as la
from scipy.special import expit, logsumexp

from lester_dagster.models.linalg import (
    FloatArray,
    IntArray,
    Matrix,
    product,
    transposed_product,
    weighted_gram,
)

__all__ = ["LogisticObjective", "NewtonResult", "newton_solve", "woodbury_factors"]

_ARMIJO = 1e-4
_ROUNDING = 1e-12  # relative objective increase accepted as rounding noise near the optimum


class LogisticObjective:
    """``F`` and its derivatives on a fixed matrix ``X`` with class indices ``labels``."""

    def __init__(
        self, X: Matrix, labels: IntArray, n_classes: int, fit_intercept: bool, C: float
    ) -> None:
        self.X = X
        self.labels = labels
        self.n_classes = n_classes
        self.binary = n_classes == 2
        self.outputs = 1 if self.binary else n_classes
        self.fit_intercept = fit_intercept
        self.n_features = X.shape[1]
        self.width = self.n_features + int(fit_intercept)
        self.size = self.outputs * self.width
        self.penalty = 1.0 / float(C)
        #: Time spent computing Hessians (full passes over X) since construction.
        self.hessian_seconds = 0.0

    def replace_rows(self, X: Matrix, labels: IntArray) -> None:
        """Use another matrix (after compaction: the same live rows, fewer dead ones)."""
        self.X, self.labels = X, labels

    # -- parameters <-> scikit-learn ------------------------------------------------------------
    def from_model(self, model: Any) -> FloatArray:
        coef = np.asarray(model.coef_, dtype=np.float64)
        W = np.zeros((self.outputs, self.width))
        W[:, : self.n_features] = coef
        if self.fit_intercept:
            W[:, self.n_features] = np.asarray(model.intercept_, dtype=np.float64)
            if not self.binary:
                W[:, self.n_features] -= W[:, self.n_features].mean()
        return W

    def to_model(self, W: FloatArray, model: Any) -> None:
        model.coef_ = W[:, : self.n_features].copy()
        if self.fit_intercept:
            model.intercept_ = W[:, self.n_features].copy()
        else:
            model.intercept_ = np.zeros(self.outputs)

    def unflatten(self, vector: FloatArray) -> FloatArray:
        return vector.reshape(self.outputs, self.width)

    # -- pieces -------------------------------------------------------------------------------
    def _raw(self, X: Matrix, W: FloatArray) -> FloatArray:
        Z = product(X, W[:, : self.n_features].T)
        if self.fit_intercept:
            Z = Z + W[:, self.n_features]
        return Z

    def _loss_residual(self, Z: FloatArray, labels: IntArray) -> tuple[FloatArray, FloatArray]:
        """Per-row loss and the residual ``p - y`` (shape ``(n, outputs)``)."""
        if self.binary:
            z = Z[:, 0]
            y = labels.astype(np.float64)
            return np.logaddexp(0.0, z) - y * z, (expit(z) - y)[:, None]
        rows = np.arange(Z.shape[0])
        lse = logsumexp(Z, axis=1)
        P = np.exp(Z - lse[:, None])
        loss = lse - Z[rows, labels]
        P[rows, labels] -= 1.0
        return loss, P

    def _probabilities(self, Z: FloatArray) -> FloatArray:
        if self.binary:
            return np.asarray(expit(Z), dtype=np.float64)
        return np.asarray(np.exp(Z - logsumexp(Z, axis=1)[:, None]), dtype=np.float64)

    def _augment(self, rows: FloatArray) -> FloatArray:
        if not self.fit_intercept:
            return rows
        return np.hstack([rows, np.ones((rows.shape[0], 1))])

    # -- value, gradient, Hessian -------------------------------------------------------------
    def loss_gradient(self, W: FloatArray, mask: Any) -> tuple[float, FloatArray]:
        """``F(W)`` and its gradient (shape of ``W``) over the rows where ``mask`` is true."""
        loss, R = self._loss_residual(self._raw(self.X, W), self.labels)
        weights = np.asarray(mask, dtype=np.float64)
        R *= weights[:, None]
        coef = W[:, : self.n_features]
        value = float(loss @ weights) + 0.5 * self.penalty * float(np.sum(coef * coef))
        G = np.empty_like(W)
        G[:, : self.n_features] = transposed_product(self.X, R).T + self.penalty * coef
        if self.fit_intercept:
            G[:, self.n_features] = R.sum(axis=0)
        return value, G

    def rows_gradient(self, rows: FloatArray, labels: IntArray, W: FloatArray) -> FloatArray:
        """Sum of the loss gradients of the dense ``rows`` (no penalty)."""
        _, R = self._loss_residual(self._raw(rows, W), labels)
        return np.asarray(R.T @ self._augment(rows), dtype=np.float64)

    def hessian(self, W: FloatArray, mask: Any) -> FloatArray:
        """The Hessian of ``F`` (plus ``u u^T`` along the intercept null direction)."""
        weights = np.asarray(mask, dtype=np.float64)
        P = self._probabilities(self._raw(self.X, W))
        D = self.width
        H = np.zeros((self.size, self.size))
        for k in range(self.outputs):
            for j in range(k, self.outputs):
                if self.binary:
                    s = P[:, 0] * (1.0 - P[:, 0])
                else:
                    s = P[:, k] * (float(k == j) - P[:, j])
                block = weighted_gram(self.X, weights * s, intercept=self.fit_intercept)
                H[k * D : (k + 1) * D, j * D : (j + 1) * D] = block
                H[j * D : (j + 1) * D, k * D : (k + 1) * D] = block.T
        for k in range(self.outputs):
            idx = np.arange(k * D, k * D + self.n_features)
            H[idx, idx] += self.penalty
        if self.fit_intercept and not self.binary:
            u = np.zeros(self.size)
            u[np.arange(self.outputs) * D + self.n_features] = 1.0 / np.sqrt(self.outputs)
            H += np.outer(u, u)
        return H

    def inverse_hessian(self, W: FloatArray, mask: Any) -> FloatArray:
        started = time.perf_counter()
        H = self.hessian(W, mask)
        inverse = la.cho_solve(la.cho_factor(H, lower=True), np.eye(H.shape[0]))
        self.hessian_seconds += time.perf_counter() - started
        return np.asarray((inverse + inverse.T) / 2, dtype=np.float64)

    def hessian_factor(self, rows: FloatArray, W: FloatArray) -> FloatArray:
        """``U`` with ``U U^T`` = the Hessian terms of the dense ``rows`` at ``W``."""
        X = self._augment(rows)
        P = self._probabilities(self._raw(rows, W))
        if self.binary:
            return np.asarray((X * np.sqrt(P[:, 0] * (1.0 - P[:, 0]))[:, None]).T)
        sq = np.sqrt(P)
        # A_i = diag(sqrt p_i) - p_i sqrt(p_i)^T, so that A_i A_i^T = diag(p_i) - p_i p_i^T
        A = np.eye(self.outputs)[None] * sq[:, None, :] - P[:, :, None] * sq[:, None, :]
        U = np.einsum("icq,ij->cjiq", A, X)
        return np.asarray(U.reshape(self.size, rows.shape[0] * self.outputs), dtype=np.float64)


def woodbury_factors(inverse: FloatArray, U: FloatArray) -> tuple[FloatArray, FloatArray] | None:
    """``Z, M`` with ``(H - U U^T)^{-1} = H^{-1} + Z @ M`` (Woodbury), from ``H^{-1}``;
    ``None`` if the downdated matrix is (numerically) singular."""
    Z = inverse @ U
    capacitance = np.eye(U.shape[1]) - U.T @ Z
    try:
        factor = la.cho_factor((capacitance + capacitance.T) / 2, lower=True)
    except la.LinAlgError:
        return None
    if float(np.min(np.diag(factor[0]))) ** 2 <= 1e-12:
        return None
    return Z, np.asarray(la.cho_solve(factor, Z.T), dtype=np.float64)


@dataclass
class NewtonResult:
    """Where :func:`newton_solve` ended: parameters, gradient, inverse Hessian, counts."""

    W: FloatArray
    gradient: FloatArray
    inverse: FloatArray
    residual: float
    residual_before: float
    iterations: int
    hessians: int


def newton_solve(
    objective: LogisticObjective,
    W: FloatArray,
    mask: Any,
    tol: float,
    *,
    inverse: FloatArray | None = None,
    max_iter: int = 50,
    final_hessian: bool = False,
) -> NewtonResult:
    """Damped Newton iterations from ``W`` until ``max |grad F| / n <= tol``.

    Starts with ``inverse`` (e.g. a downdated inverse Hessian) if given, else computes the
    Hessian at ``W``. The Hessian is recomputed at the current point whenever an iteration
    reduces the residual less than tenfold, so convergence ends quadratic. Steps are
    backtracked (Armijo) on ``F``; near the optimum an increase of ``F`` within rounding noise is
    accepted. With ``final_hessian=True`` the returned inverse is recomputed at the final ``W``
    if ``W`` moved noticeably since it was last computed (the stored statistic of a model).
    """
    n = max(int(np.count_nonzero(mask)), 1)
    value, gradient = objective.loss_gradient(W, mask)
    residual = before = float(np.max(np.abs(gradient))) / n
    hessians = 0
    fresh = False
    if inverse is None:
        inverse, hessians, fresh = objective.inverse_hessian(W, mask), 1, True
    at = W
    iterations = 0
    while residual > tol and iterations < max_iter:
        step = -objective.unflatten(inverse @ gradient.ravel())
        slope = float(gradient.ravel() @ step.ravel())
        if slope >= 0 and not fresh:
            inverse, hessians, fresh = objective.inverse_hessian(W, mask), hessians + 1, True
            at = W
            continue
        t = 1.0
        while True:
            new_value, new_gradient = objective.loss_gradient(W + t * step, mask)
            allowed = value + _ARMIJO * t * slope + _ROUNDING * abs(value)
            if new_value <= allowed or t < 1e-10:
                break
            t /= 2
        W, value, gradient = W + t * step, new_value, new_gradient
        iterations += 1
        new_residual = float(np.max(np.abs(gradient))) / n
        slow = new_residual > residual / 10
        residual = new_residual
        fresh = False
        if slow and residual > tol:
            inverse, hessians, fresh = objective.inverse_hessian(W, mask), hessians + 1, True
            at = W
    if final_hessian and float(np.max(np.abs(W - at))) > 1e-6 * max(1.0, float(np.max(np.abs(W)))):
        inverse, hessians = objective.inverse_hessian(W, mask), hessians + 1
    return NewtonResult(W, gradient, inverse, residual, before, iterations, hessians)
