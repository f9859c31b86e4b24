"""The matrix helpers the model families share: the stored training matrix and its views.

A family's :class:`~lester_dagster.models.base.Unlearner` keeps its training matrix as a float64
CSR matrix or C-ordered ndarray (:data:`Matrix`), after :meth:`Unlearner.affine_columns` possibly
as an :class:`AffineColumns` (the previous matrix plus a per-column scale and offset). The
functions here read it whatever it is: a few rows dense (:func:`dense_rows`), products with it
(:func:`product`, :func:`transposed_product`), weighted Gram matrices (:func:`weighted_gram`);
plus what the families' updates need besides: the validated column map of a changed matrix
(:func:`column_map`), low-rank inverse updates (:func:`low_rank_factors`, :func:`add_product`),
and parameter distances (:func:`numeric_parameters`, :func:`max_abs_difference`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from lester_dagster.errors import UnlearningError, preview

__all__ = [
    "AffineColumns",
    "ColumnMap",
    "FloatArray",
    "IntArray",
    "Matrix",
    "add_product",
    "as_training_data",
    "check_finite",
    "column_map",
    "dense_rows",
    "elementwise_differs",
    "low_rank_factors",
    "max_abs_difference",
    "numeric_parameters",
    "product",
    "subset_rows",
    "take_rows",
    "transposed_product",
    "weighted_gram",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
#: A training matrix: a C-ordered float64 ndarray or a float64 ``scipy.sparse`` CSR matrix.
Matrix = Any

_GRAM_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class ColumnMap:
    """Validated ``old_columns`` of :meth:`Unlearner.update` (see :func:`column_map`)."""

    old_columns: IntArray  # per new column: its old index, or -1
    n_old: int
    kept_new: IntArray  # new indices of the columns that keep their values
    kept_old: IntArray  # ... and their old indices
    fresh: IntArray  # new indices of the columns marked -1
    dropped: IntArray  # old indices that no new column maps to

    @property
    def n_new(self) -> int:
        return int(self.old_columns.size)

    @property
    def identity(self) -> bool:
        """Whether every column is the old column at the same index."""
        return self.n_new == self.n_old and bool(
            np.array_equal(self.old_columns, np.arange(self.n_old))
        )

    def describe(self) -> dict[str, Any]:
        return {
            "n_features": self.n_new,
            "columns_new": int(self.fresh.size),
            "columns_dropped": int(self.dropped.size),
        }


def as_training_data(X: Any, y: Any) -> tuple[Matrix, npt.NDArray[Any]]:
    """``X`` as a float64 CSR matrix or C-ordered ndarray, ``y`` as an ndarray; checks shapes.

    Sparse input of another format becomes CSR; pandas frames become plain arrays (their column
    names are not kept: the model is fitted on the array).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
    else:
        X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    y_arr = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D (rows x features), got shape {X.shape}; reshape a single feature "
            "with X.reshape(-1, 1)"
        )
    if y_arr.ndim not in (1, 2) or y_arr.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have one entry per row of X ({X.shape[0]} rows), got shape {y_arr.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError("X has no rows: a model needs data to be fitted")
    return X, y_arr


class AffineColumns:
    """A stored training matrix kept as ``base * scale + offset`` column by column.

    :meth:`Unlearner.affine_columns` wraps the stored matrix in one instead of rewriting it:
    the change costs ``O(d)``, and a sparse ``base`` stays sparse (a shift would make every
    implicit zero of the column a stored value). Products, Gram matrices and row copies are
    computed from ``base`` algebraically (:func:`product`, :func:`transposed_product`,
    :func:`weighted_gram`, :func:`dense_rows`); :meth:`materialize` builds the matrix itself
    (``O(nnz + n * shifted columns)`` for CSR: shifted columns become dense there). ``scale``
    is nonzero (a zero scale goes through :meth:`Unlearner.update`).
    """

    def __init__(self, base: Matrix, scale: FloatArray, offset: FloatArray) -> None:
        self.base = base
        self.scale = scale
        self.offset = offset
        self.shape: tuple[int, int] = (int(base.shape[0]), int(base.shape[1]))
        self.ndim = 2

    def __repr__(self) -> str:
        moved = np.flatnonzero((self.scale != 1.0) | (self.offset != 0.0))
        return f"<AffineColumns {self.shape} of {type(self.base).__name__}, columns {moved}>"

    @classmethod
    def apply(
        cls, X: Matrix, columns: IntArray, scale: FloatArray, shift: FloatArray
    ) -> AffineColumns:
        """``X`` with ``X[:, columns] -> scale * X[:, columns] + shift`` (composed with the
        maps ``X`` already carries; the base matrix is shared, not copied)."""
        if isinstance(X, AffineColumns):
            base, a, b = X.base, X.scale.copy(), X.offset.copy()
        else:
            base, a, b = X, np.ones(X.shape[1]), np.zeros(X.shape[1])
        a[columns] *= scale
        b[columns] = b[columns] * scale + shift
        return cls(base, a, b)

    def subset(self, rows: IntArray) -> AffineColumns:
        """The rows ``rows``, still as a base matrix (copied rows) with the same maps."""
        return AffineColumns(self.base[rows], self.scale, self.offset)

    def materialize(self, rows: IntArray | None = None) -> Matrix:
        """The matrix (or its rows ``rows``) as a CSR matrix or C-ordered ndarray."""
        base = self.base if rows is None else self.base[rows]
        if not sp.issparse(base):
            return np.ascontiguousarray(base * self.scale + self.offset)
        out = sp.csr_matrix(base, dtype=np.float64, copy=True)
        out.data *= self.scale[out.indices]
        shifted = np.flatnonzero(self.offset)
        if shifted.size:
            m, k = out.shape[0], shifted.size
            extra = sp.csr_matrix(
                (np.tile(self.offset[shifted], m), np.tile(shifted, m), np.arange(m + 1) * k),
                shape=out.shape,
            )
            out = sp.csr_matrix(out + extra)
        return out

    def dense(self, rows: IntArray) -> FloatArray:
        return dense_rows(self.base, rows) * self.scale + self.offset


def subset_rows(X: Matrix, rows: IntArray) -> Matrix:
    """The rows ``rows`` of a stored matrix, keeping an :class:`AffineColumns` lazy."""
    if isinstance(X, AffineColumns):
        return X.subset(rows)
    return X[rows]


def take_rows(X: Matrix, rows: IntArray) -> Matrix:
    """The rows ``rows`` of ``X`` (same kind: CSR or ndarray), as a new matrix; an
    :class:`AffineColumns` is materialised."""
    if isinstance(X, AffineColumns):
        return X.materialize(rows)
    return X[rows]


def dense_rows(X: Matrix, rows: IntArray) -> FloatArray:
    """The rows ``rows`` of ``X`` as a dense (len(rows), n_features) float64 array."""
    if isinstance(X, AffineColumns):
        return X.dense(rows)
    part = X[rows]
    if sp.issparse(part):
        return np.asarray(part.toarray(), dtype=np.float64)
    return np.asarray(part, dtype=np.float64)


def product(X: Matrix, M: FloatArray) -> FloatArray:
    """``X @ M`` as an ndarray, for ``M`` of shape ``(d,)`` or ``(d, m)``."""
    if isinstance(X, AffineColumns):
        scale = X.scale if M.ndim == 1 else X.scale[:, None]
        return np.asarray(X.base @ (M * scale), dtype=np.float64) + X.offset @ M
    return np.asarray(X @ M, dtype=np.float64)


def transposed_product(X: Matrix, R: FloatArray) -> FloatArray:
    """``X^T @ R`` as an ndarray, for ``R`` of shape ``(n,)`` or ``(n, m)``."""
    if isinstance(X, AffineColumns):
        out = np.asarray(X.base.T @ R, dtype=np.float64)
        if R.ndim == 1:
            return out * X.scale + X.offset * float(R.sum())
        return out * X.scale[:, None] + np.outer(X.offset, R.sum(axis=0))
    return np.asarray(X.T @ R, dtype=np.float64)


def column_map(old_columns: npt.ArrayLike, n_old: int, n_new: int) -> ColumnMap:
    """Validate ``old_columns`` (one old index or ``-1`` per new column; no old index twice)."""
    arr = np.asarray(old_columns)
    if arr.ndim != 1 or arr.size != n_new:
        raise UnlearningError(
            f"update(): old_columns must give one entry per column of X_new ({n_new}), got "
            f"shape {arr.shape}; use -1 for a new column"
        )
    if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
        raise UnlearningError(
            f"update(): old_columns must be integers (old column index or -1), got dtype "
            f"{arr.dtype} ({preview(arr.tolist())})"
        )
    arr = arr.astype(np.intp)
    bad = np.flatnonzero((arr < -1) | (arr >= n_old))
    if bad.size:
        raise UnlearningError(
            f"update(): old_columns out of range at new column(s) {preview(bad.tolist())} "
            f"(values {preview(arr[bad].tolist())}); valid: -1 (new column) or 0..{n_old - 1}"
        )
    kept = arr >= 0
    kept_old = arr[kept]
    ordered = np.sort(kept_old)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise UnlearningError(
            f"update(): old column(s) {preview(np.unique(repeated).tolist())} mapped to more "
            "than one new column; a copy of a column is a new column: mark it -1"
        )
    return ColumnMap(
        old_columns=arr,
        n_old=n_old,
        kept_new=np.flatnonzero(kept).astype(np.intp),
        kept_old=kept_old,
        fresh=np.flatnonzero(~kept).astype(np.intp),
        dropped=np.setdiff1d(np.arange(n_old, dtype=np.intp), kept_old),
    )


def elementwise_differs(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Per row, whether ``a`` and ``b`` differ (NaN equals NaN)."""
    try:
        different = np.asarray(np.not_equal(a, b), dtype=bool)
    except TypeError:  # e.g. strings against numbers: every row differs
        return np.ones(a.shape[0], dtype=bool)
    if different.shape != a.shape:
        return np.ones(a.shape[0], dtype=bool)
    if np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating):
        different = np.logical_and(different, np.logical_not(np.isnan(a) & np.isnan(b)))
    if different.ndim > 1:
        return np.asarray(different.reshape(different.shape[0], -1).any(axis=1), dtype=bool)
    return np.asarray(different, dtype=bool)


def check_finite(X: Matrix, rows: IntArray, columns: IntArray) -> None:
    """The parts of ``X_new`` that :meth:`Unlearner.update` reads as new must be finite."""
    parts = []
    if rows.size:
        parts.append(X[rows])
    if columns.size:
        parts.append(X[:, columns])
    for part in parts:
        values = part.data if sp.issparse(part) else part
        if not np.all(np.isfinite(values)):
            raise UnlearningError(
                "update(): X_new has NaN or infinite values in its changed rows or new "
                "columns; scikit-learn's fit rejects them (impute or drop them upstream)"
            )


def weighted_gram(
    X: Matrix,
    weights: FloatArray | None = None,
    *,
    intercept: bool,
    shift: FloatArray | None = None,
) -> FloatArray:
    """``A^T diag(weights) A`` for ``A = [X - shift, 1]`` (or ``X - shift`` without intercept).

    ``weights=None`` means all ones. For dense ``X`` the shift is applied to the data (chunks of
    rows, so memory stays bounded); for sparse ``X`` it is applied algebraically to
    ``X^T W X`` (keeping ``X`` sparse). An :class:`AffineColumns` ``B * s + o`` is handled as
    ``A = (B - (shift - o) / s) diag(s)``.
    """
    if isinstance(X, AffineColumns):
        moved = (X.offset if shift is None else X.offset - shift) != 0.0
        base_shift = ((shift if shift is not None else 0.0) - X.offset) / X.scale
        G = weighted_gram(
            X.base, weights, intercept=intercept, shift=base_shift if moved.any() else None
        )
        scale = np.append(X.scale, 1.0) if intercept else X.scale
        G *= scale[:, None]
        G *= scale[None, :]
        return G
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if sp.issparse(X):
        Xw = X if weights is None else sp.diags_array(w) @ X
        M = np.ascontiguousarray((X.T @ Xw).toarray(), dtype=np.float64)
        v = np.asarray(Xw.sum(axis=0), dtype=np.float64).ravel()
        total = float(w.sum())
        if shift is not None:
            M -= np.outer(shift, v) + np.outer(v, shift) - total * np.outer(shift, shift)
            v = v - total * shift
    else:
        M = np.zeros((d, d))
        v = np.zeros(d)
        for start in range(0, n, _GRAM_CHUNK_ROWS):
            part = X[start : start + _GRAM_CHUNK_ROWS]
            if shift is not None:
                part = part - shift
            scaled = part * w[start : start + _GRAM_CHUNK_ROWS, None]
            M += scaled.T @ part
            v += scaled.sum(axis=0)
        total = float(w.sum())
    if not intercept:
        return M
    G = np.empty((d + 1, d + 1))
    G[:d, :d] = M
    G[:d, d] = v
    G[d, :d] = v
    G[d, d] = total
    return G


def add_product(target: FloatArray, left: FloatArray, right: FloatArray, alpha: float) -> None:
    """``target += alpha * left @ right`` in place (C-ordered float64 ``target``), by BLAS
    ``gemm`` on the transposed view: no temporary of ``target``'s size."""
    from scipy.linalg import blas

    if not target.flags.c_contiguous or target.dtype != np.float64:
        raise ValueError("add_product needs a C-contiguous float64 target")
    out = blas.dgemm(
        alpha, np.asfortranarray(right.T), np.asfortranarray(left.T), beta=1.0,
        c=target.T, overwrite_c=True,
    )  # fmt: skip
    if not np.shares_memory(out, target):  # pragma: no cover - BLAS made a copy
        target[...] = out.T


def low_rank_factors(
    inverse: FloatArray | None,
    U: FloatArray,
    C_inverse: FloatArray,
    *,
    Z: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray] | None:
    """``Z, M`` with ``(A + U C U^T)^{-1} = A^{-1} - Z @ M`` (Woodbury), from ``A^{-1}``
    (``inverse``; or ``Z = A^{-1} U`` given directly), ``U`` (``p x r``) and ``C^{-1}``
    (``r x r``, symmetric, may be indefinite: updates and downdates at once). ``None`` when the
    capacitance matrix ``C^{-1} + U^T A^{-1} U`` is (numerically) singular: recompute the
    inverse instead."""
    import scipy.linalg as la

    if Z is None:
        assert inverse is not None
        Z = inverse @ U
    capacitance = C_inverse + U.T @ Z
    capacitance = (capacitance + capacitance.T) / 2
    if not np.all(np.isfinite(capacitance)) or np.linalg.cond(capacitance) > 1e12:
        return None
    M = la.solve(capacitance, Z.T, assume_a="sym", check_finite=False)
    return Z, np.asarray(M, dtype=np.float64)


def numeric_parameters(model: Any) -> dict[str, FloatArray]:
    """The public fitted attributes of ``model`` that are numeric arrays (or lists of them).

    Lists of arrays (an MLP's ``coefs_``) are flattened into one array per attribute. Objects
    without array form (a tree's ``tree_``) are left out.
    """
    params: dict[str, FloatArray] = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.number) for v in value)
        ):
            params[name] = np.concatenate([np.ravel(v).astype(np.float64) for v in value])
        elif isinstance(value, (np.ndarray, np.number, float)) and not isinstance(value, bool):
            arr = np.asarray(value)
            if np.issubdtype(arr.dtype, np.number):
                params[name] = np.atleast_1d(arr.astype(np.float64))
    return params


def max_abs_difference(mine: Mapping[str, FloatArray], other: Mapping[str, FloatArray]) -> float:
    """Largest absolute difference over the parameters both sides have; ``inf`` on a shape
    mismatch (e.g. different classes), ``nan`` if nothing is comparable."""
    common = [name for name in mine if name in other]
    if not common:
        return float("nan")
    worst = 0.0
    for name in common:
        a, b = np.asarray(mine[name]), np.asarray(other[name])
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))))
    return worst
