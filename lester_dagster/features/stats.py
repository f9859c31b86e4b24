"""Sufficient statistics that decremental encoders keep: exact moment sums and value tallies.

Both kinds are *exactly invertible*: removing rows undoes adding them bit for bit, whatever
the order and number of updates, so the statistics after any sequence of ``forget`` /
``replace`` calls equal the statistics computed from scratch on the current rows.

* :class:`ExactMoments` keeps, per column, the count of non-missing values and the exact sums
  of the values and of their squares, as Python integers (each float64 is an integer multiple
  of ``2**-1074``, so the sums need no rounding). Mean and variance are then computed once,
  correctly rounded, from the exact sums: no cancellation, however much was removed (a
  textbook float downdate of M2 loses all precision when the remaining variance is small,
  e.g. when the rows that carried the spread are removed).
* :class:`NumericTally` (sorted distinct values with counts) and :class:`ObjectTally`
  (a dict of counts) are multisets of one column's values: categories, modes, order
  statistics (min, max, k-th value) and the sorted column itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from lester_dagster.errors import DecrementalError, preview

__all__ = ["NAN_KEY", "ExactMoments", "NumericTally", "ObjectTally", "Tally", "tally_of"]

Array = npt.NDArray[Any]

# Sums are kept as integers scaled by 2**_OFFSET (values) and 2**(2 * _OFFSET) (squares):
# np.frexp gives x = m * 2**(e - 53) with an integer m (|m| < 2**53) and e >= -1073.
_OFFSET = 1126
_LIMB = 18
_LIMB_MASK = (1 << _LIMB) - 1
_CHUNK = 1 << 16  # rows per vectorised pass (cache-sized; int64 limb sums stay far below 2**63)


class _NanKey:
    """The one key under which :class:`ObjectTally` counts every float NaN."""

    _instance: _NanKey | None = None

    def __new__(cls) -> _NanKey:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "nan"

    def __reduce__(self) -> str:
        return "NAN_KEY"


NAN_KEY = _NanKey()


def _exact_sums(values: Array) -> tuple[int, int]:
    """Exact sum of ``values`` (finite float64) and of their squares, as scaled integers."""
    s1 = s2 = 0
    for start in range(0, len(values), _CHUNK):
        mant, exp = np.frexp(values[start : start + _CHUNK])
        m = (mant * float(1 << 53)).astype(np.int64)
        sign = np.sign(m)
        am = np.abs(m)
        a = am >> (2 * _LIMB)
        b = (am >> _LIMB) & _LIMB_MASK
        c = am & _LIMB_MASK
        # Group by exponent (a stable radix sort of small ints), then sum limbs exactly in int64.
        key = (exp + 2048).astype(np.int16)
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        parts = np.stack([sign * a, sign * b, sign * c, a * a, a * b, a * c, b * b, b * c, c * c])
        sums = np.add.reduceat(parts[:, order], starts, axis=1).T.tolist()
        for e, (sa, sb, sc, aa, ab, ac, bb, bc, cc) in zip(
            (key[starts].astype(np.int64) - 2048 - 53).tolist(), sums, strict=True
        ):
            s1 += ((sa << (2 * _LIMB)) + (sb << _LIMB) + sc) << (e + _OFFSET)
            sq = (
                (aa << (4 * _LIMB))
                + (2 * ab << (3 * _LIMB))
                + ((2 * ac + bb) << (2 * _LIMB))
                + (2 * bc << _LIMB)
                + cc
            )
            s2 += sq << (2 * (e + _OFFSET))
    return s1, s2


class ExactMoments:
    """Per column: non-missing count, exact sum and exact sum of squares (NaN = missing).

    ``mean()`` and ``var()`` (population variance, as scikit-learn's ``var_``) are the
    correctly rounded values of the exact quantities; a column without values gives NaN.
    """

    def __init__(self, count: list[int], s1: list[int], s2: list[int]) -> None:
        self.count = count
        self.s1 = s1
        self.s2 = s2

    @classmethod
    def of(cls, X: Array) -> ExactMoments:
        """The statistics of a 2-d float array (rows x columns); NaN entries are skipped."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise DecrementalError(f"expected a 2-d array of numbers, got shape {X.shape}")
        present = ~np.isnan(X)
        if np.isinf(X[present]).any():
            raise DecrementalError(
                "infinite values cannot be tracked exactly (scikit-learn rejects them too); "
                "replace them before encoding"
            )
        sums = [_exact_sums(X[present[:, j], j]) for j in range(X.shape[1])]
        return cls(present.sum(axis=0).tolist(), [s[0] for s in sums], [s[1] for s in sums])

    @property
    def n_columns(self) -> int:
        return len(self.count)

    def update(self, other: ExactMoments, sign: int) -> None:
        """Add (``sign=1``) or remove (``sign=-1``) the rows summarised by ``other``."""
        count = [n + sign * m for n, m in zip(self.count, other.count, strict=True)]
        if min(count, default=0) < 0:
            raise DecrementalError(
                "more values removed than were fitted in some column "
                f"(counts would become {preview(count)}); remove only rows the encoder was "
                "fitted on"
            )
        self.count = count
        self.s1 = [x + sign * y for x, y in zip(self.s1, other.s1, strict=True)]
        self.s2 = [x + sign * y for x, y in zip(self.s2, other.s2, strict=True)]

    def mean(self) -> npt.NDArray[np.float64]:
        return np.array(
            [_ratio(s, n << _OFFSET) if n else math.nan for n, s in zip(self.count, self.s1)],
            dtype=np.float64,
        )

    def var(self) -> npt.NDArray[np.float64]:
        out = []
        for n, s1, s2 in zip(self.count, self.s1, self.s2, strict=True):
            out.append(_ratio(n * s2 - s1 * s1, (n * n) << (2 * _OFFSET)) if n else math.nan)
        return np.array(out, dtype=np.float64)


def _ratio(num: int, den: int) -> float:
    """``num / den`` correctly rounded; +-inf where the float range ends (as float math gives)."""
    try:
        return num / den
    except OverflowError:
        return math.inf if num > 0 else -math.inf


def _same_value(a: Array, b: Array) -> npt.NDArray[np.bool_]:
    equal: npt.NDArray[np.bool_] = a == b
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        equal |= np.isnan(a) & np.isnan(b)
    return equal


class NumericTally:
    """A multiset of one numeric column's values: sorted distinct ``values`` and ``counts``.

    NaN (if present) is one distinct value, sorted last, as in ``np.unique``. The dtype of
    ``values`` is the column's (promoted when later values need a wider type, e.g. an int
    column that gained a NaN).
    """

    def __init__(self, values: Array, counts: npt.NDArray[np.int64]) -> None:
        self.values = values
        self.counts = counts

    @classmethod
    def of(cls, column: Array) -> NumericTally:
        values, counts = np.unique(np.asarray(column), return_counts=True)
        return cls(values, counts.astype(np.int64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def check_update(self, column: Array, sign: int) -> None:
        """Raise (changing nothing) if removing ``column`` is impossible."""
        if sign > 0:
            return
        u, c = np.unique(np.asarray(column), return_counts=True)
        idx = np.searchsorted(self.values, u)
        inside = idx < len(self.values)
        found = inside.copy()
        found[inside] = _same_value(self.values[idx[inside]], u[inside])
        if not found.all():
            raise DecrementalError(
                f"cannot remove values that were never fitted: {preview(u[~found].tolist())}; "
                "remove only rows the encoder was fitted on, with their values as fitted"
            )
        if (self.counts[idx] < c).any():
            bad = u[self.counts[idx] < c].tolist()
            raise DecrementalError(
                f"values removed more often than they were fitted: {preview(bad)}; "
                "remove each fitted row once"
            )

    def update(self, column: Array, sign: int) -> bool:
        """Add or remove ``column``'s values; returns whether the set of distinct values changed."""
        column = np.asarray(column)
        self.check_update(column, sign)
        if len(column) == 0:
            return False
        if column.dtype != self.values.dtype:
            dtype = np.result_type(self.values.dtype, column.dtype)
            self.values = self.values.astype(dtype)
            column = column.astype(dtype)
        u, c = np.unique(column, return_counts=True)
        idx = np.searchsorted(self.values, u)
        inside = idx < len(self.values)
        found = inside.copy()
        found[inside] = _same_value(self.values[idx[inside]], u[inside])
        counts = self.counts  # validated above: update in place, O(changed values)
        counts[idx[found]] += sign * c[found]
        if sign < 0:
            gone = idx[counts[idx] == 0]
            if len(gone) == 0:
                return False
            self.values = np.delete(self.values, gone)
            self.counts = np.delete(counts, gone)
            return True
        if found.all():
            return False
        self.values = np.insert(self.values, idx[~found], u[~found])
        self.counts = np.insert(counts, idx[~found], c[~found])
        return True

    def present(self) -> Array:
        """The distinct values (sorted, NaN last)."""
        return self.values

    def _finite(self) -> tuple[Array, npt.NDArray[np.int64]]:
        if self.values.dtype.kind == "f" and len(self.values) and np.isnan(self.values[-1]):
            return self.values[:-1], self.counts[:-1]
        return self.values, self.counts

    def minmax(self) -> tuple[Any, Any]:
        """Smallest and largest non-NaN value (NaN, NaN when there is none)."""
        values, _ = self._finite()
        if len(values) == 0:
            return math.nan, math.nan
        return values[0], values[-1]

    def kth(self, *k: int) -> list[Any]:
        """The ``k``-th smallest non-NaN values (0-based, counting repeats)."""
        values, counts = self._finite()
        positions = np.searchsorted(np.cumsum(counts), np.array(k), side="right")
        return [values[p] for p in positions.tolist()]

    def n_finite(self) -> int:
        return int(self._finite()[1].sum())

    def mode(self) -> Any:
        """The most frequent non-NaN value, the smallest one on ties (as ``scipy.stats.mode``)."""
        values, counts = self._finite()
        return values[int(np.argmax(counts))] if len(values) else math.nan

    def expand(self) -> Array:
        """The sorted column itself (each value repeated by its count)."""
        return np.repeat(self.values, self.counts)


def _key(value: Any) -> Hashable:
    if isinstance(value, float) and math.isnan(value):
        return NAN_KEY
    key: Hashable = value
    return key


def _safe_min(items: list[Any]) -> Any:
    """scikit-learn's tie-break for the most frequent value (``impute._base._safe_min``)."""
    try:
        return min(items)
    except TypeError:
        return min(items, key=lambda x: (str(type(x)), str(x)))


class ObjectTally:
    """A multiset of one object (text) column's values; every float NaN counts as one value."""

    def __init__(self, counts: dict[Hashable, int]) -> None:
        self.counts = counts

    @staticmethod
    def _count(column: Array) -> Counter[Hashable]:
        raw: Counter[Hashable] = Counter(np.asarray(column, dtype=object).tolist())
        out: Counter[Hashable] = Counter()
        for value, n in raw.items():
            out[_key(value)] += n
        return out

    @classmethod
    def of(cls, column: Array) -> ObjectTally:
        return cls(dict(cls._count(column)))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def check_update(self, column: Array, sign: int) -> None:
        if sign > 0:
            return
        delta = self._count(column)
        bad = [v for v, n in delta.items() if self.counts.get(v, 0) < n]
        if bad:
            raise DecrementalError(
                f"cannot remove values that were not fitted (that often): {preview(bad)}; "
                "remove only rows the encoder was fitted on, with their values as fitted"
            )

    def update(self, column: Array, sign: int) -> bool:
        self.check_update(column, sign)
        changed = False
        for value, n in self._count(column).items():
            new = self.counts.get(value, 0) + sign * n
            if new == 0:
                del self.counts[value]
                changed = True
            else:
                changed |= value not in self.counts
                self.counts[value] = new
        return changed

    def present(self) -> Array:
        """The distinct values (unordered), NaN as ``np.nan``."""
        values = [np.nan if v is NAN_KEY else v for v in self.counts]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def mode(self) -> Any:
        """The most frequent value, the smallest on ties (scikit-learn's rule); NaN if empty."""
        if not self.counts:
            return math.nan
        top = max(self.counts.values())
        best = _safe_min([v for v, n in self.counts.items() if n == top])
        return math.nan if best is NAN_KEY else best


Tally = NumericTally | ObjectTally


def tally_of(column: Array) -> Tally:
    """A tally suited to the column's dtype (numbers and booleans: sorted arrays; else a dict)."""
    column = np.asarray(column)
    if column.dtype.kind in "biuf":
        return NumericTally.of(column)
    if column.dtype.kind in "OUS":
        return ObjectTally.of(column)
    raise DecrementalError(
        f"cannot tally values of dtype {column.dtype}; supported are numbers, booleans and "
        "text (object/str); convert the column or let the encoder be refitted"
    )
