"""Row provenance: which source records every output row derives from.

Each source record is identified by a **key id**: a 64-bit hash of its stable key (the key
columns the user names, or the whole record when there is no key). Id 0 is reserved for
"no record of this source" (the right side of an unmatched left join, a union branch that does
not read the source).

The provenance of a row is a *polynomial* over key ids (Green et al.'s provenance semirings):
a sum of monomials, each monomial the product of at most one record per source. A join multiplies
the polynomials of its inputs; a group-by or drop_duplicates adds the polynomials of the rows it
collapses. :class:`Prov` stores the polynomials of all rows column-wise:

* ``keys[source]`` holds, for every monomial, the key id of ``source`` (or 0);
* ``offsets`` (CSR style) says which monomials belong to which row. ``None`` means the common
  case of exactly one monomial per row, where ``keys[source][i]`` belongs to row ``i``.

Operators only need ``take`` (select/reorder rows), ``concat`` (union), ``product`` (join) and
``group`` (aggregation); all are vectorised with numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "NO_RECORD",
    "Ids",
    "Prov",
    "hash_keys",
    "member_mask",
    "mix64",
    "sorted_unique",
]

Ids = npt.NDArray[np.uint64]
Index = npt.NDArray[np.intp]

NO_RECORD = np.uint64(0)


_NULL_HASH = pd.util.hash_array(np.array([None], dtype=object), categorize=False)[0]


def mix64(values: Ids, salt: int = 0) -> Ids:
    """The splitmix64 finaliser of ``values ^ salt``: a bijection of uint64 that scatters bits."""
    with np.errstate(over="ignore"):
        z = np.asarray(values, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: Ids = z ^ (z >> np.uint64(31))
    return out


def _as_text(column: pd.Series, missing: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
    """The values' canonical text: what a csv file holds for them."""
    if pd.api.types.is_bool_dtype(column.dtype):
        flags = column.fillna(False).to_numpy(dtype=bool)
        return np.where(flags, "True", "False").astype(object)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        midnight = (column == column.dt.normalize()).to_numpy(dtype=bool, na_value=False)
        dates = column.dt.strftime("%Y-%m-%d").astype(object).to_numpy()
        return np.where(midnight, dates, column.astype(str).astype(object).to_numpy())
    if pd.api.types.is_string_dtype(column.dtype) and not pd.api.types.is_object_dtype(
        column.dtype
    ):
        return column.astype(object).to_numpy()
    return np.array([None if m else str(v) for v, m in zip(column, missing)], dtype=object)


def _hash_column(column: pd.Series) -> Ids:
    """Hash one key column so the result does not depend on how the file was read.

    Integers, and floats that are whole numbers, hash as int64 (pandas reads an int column with
    a gap as float64, and deleting the record with the gap must not change the ids of the
    others); everything else hashes as its canonical text: booleans as ``True``/``False``,
    midnight datetimes as ``YYYY-MM-DD``, strings as themselves, whether read as ``str`` from
    csv or as ``large_string`` from Parquet. A missing value always hashes alike.
    """
    dtype = column.dtype
    missing = column.isna().to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        ints: npt.NDArray[np.int64] = column.fillna(0).to_numpy(dtype=np.int64)
        hashed: Ids = pd.util.hash_array(ints, categorize=False)
    else:
        hashed = pd.util.hash_array(_as_text(column, missing), categorize=False)
        if pd.api.types.is_float_dtype(dtype):
            floats = column.to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                whole = ~missing & (np.abs(floats) < 2.0**63) & (floats == np.floor(floats))
            if whole.any():
                as_int = np.where(whole, floats, 0.0).astype(np.int64)
                hashed = np.where(whole, pd.util.hash_array(as_int, categorize=False), hashed)
    hashed = hashed.astype(np.uint64, copy=True)
    hashed[missing] = _NULL_HASH
    return hashed


def hash_keys(frame: pd.DataFrame, columns: Sequence[str]) -> Ids:
    """Deterministic 64-bit key ids for the rows of ``frame`` from ``columns`` (never 0).

    The columns' hashes are chained through :func:`mix64`, so column order matters and a
    composite key never collides with one of its parts by construction.
    """
    if len(columns) == 0:
        raise ValueError("hash_keys needs at least one column")
    combined = mix64(_hash_column(frame[columns[0]]))
    for name in columns[1:]:
        combined = mix64(combined ^ _hash_column(frame[name]))
    combined[combined == NO_RECORD] = np.uint64(1)
    return combined


def sorted_unique(values: npt.ArrayLike) -> npt.NDArray[Any]:
    """``np.unique`` of a 1-D array by sorting (numpy 2.4's ``np.unique`` of a million 64-bit
    ids takes ~0.7 s on this machine, a sort ~0.05 s)."""
    flat = np.sort(np.asarray(values).ravel())
    if flat.size < 2:
        return flat
    keep = np.empty(flat.size, dtype=bool)
    keep[0] = True
    np.not_equal(flat[1:], flat[:-1], out=keep[1:])
    return flat[keep]


_HASH_MEMBERSHIP_FROM = 65_536
"""Wanted ids from which :func:`member_mask` uses a hash table instead of binary search."""


def member_mask(values: Ids, wanted: Ids) -> npt.NDArray[np.bool_]:
    """``np.isin(values, wanted)``: for a small ``wanted`` a binary search of each value among
    the sorted wanted ids, O(n log k) with no sort of ``values``; for a large one a hash lookup
    (random binary searches over a million ids cost ~3x pandas' hash table here)."""
    if len(wanted) > _HASH_MEMBERSHIP_FROM:
        found: npt.NDArray[np.bool_] = pd.Index(np.asarray(values, dtype=np.uint64)).isin(
            np.asarray(wanted, dtype=np.uint64)
        )
        return found
    targets = sorted_unique(np.asarray(wanted, dtype=np.uint64))
    if targets.size == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(targets, values)
    at[at == targets.size] = 0
    hit: npt.NDArray[np.bool_] = targets[at] == values
    return hit


def _ranges(starts: Index, lengths: Index) -> Index:
    """Concatenation of ``range(s, s + n)`` for each start s and length n (vectorised)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    ends = np.cumsum(lengths)
    row_start = np.repeat(starts - (ends - lengths), lengths)
    out: Index = (np.arange(total, dtype=np.intp) + row_start).astype(np.intp)
    return out


@dataclass(frozen=True, eq=False)
class Prov:
    """The provenance polynomials of ``n`` rows (see the module docstring)."""

    n: int
    keys: Mapping[str, Ids]
    offsets: Index | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        width = self.n if self.offsets is None else int(self.offsets[-1])
        for source, ids in self.keys.items():
            if len(ids) != width:
                raise ValueError(f"provenance of {source!r} has {len(ids)} entries, not {width}")

    def __reduce__(self) -> tuple[type[Prov], tuple[int, dict[str, Ids], Index | None]]:
        """Pickle support (a mappingproxy does not pickle): rebuilt through the constructor."""
        return (Prov, (self.n, dict(self.keys), self.offsets))

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def of_source(cls, source: str, ids: Ids) -> Prov:
        return cls(len(ids), {source: ids})

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.keys)

    @property
    def single(self) -> bool:
        """True when every row has exactly one monomial (no aggregation happened)."""
        return self.offsets is None

    def lengths(self) -> Index:
        """Number of monomials of each row."""
        if self.offsets is None:
            return np.ones(self.n, dtype=np.intp)
        return np.diff(self.offsets).astype(np.intp)

    def _starts(self) -> Index:
        if self.offsets is None:
            return np.arange(self.n, dtype=np.intp)
        return self.offsets[:-1].astype(np.intp)

    def row_of_monomial(self) -> Index:
        """For each monomial, the row it belongs to."""
        if self.offsets is None:
            return np.arange(self.n, dtype=np.intp)
        return np.repeat(np.arange(self.n, dtype=np.intp), self.lengths())

    # -- operators -----------------------------------------------------------------------------
    def take(self, rows: Index) -> Prov:
        """The provenance of the rows at positions ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.intp)
        if self.offsets is None:
            return Prov(len(rows), {s: ids[rows] for s, ids in self.keys.items()})
        lengths = self.lengths()[rows]
        flat = _ranges(self._starts()[rows], lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
        return Prov(len(rows), {s: ids[flat] for s, ids in self.keys.items()}, offsets)

    @staticmethod
    def concat(parts: Sequence[Prov]) -> Prov:
        """Rows of all ``parts`` one after another (union); each row keeps its own provenance."""
        sources = list(dict.fromkeys(s for p in parts for s in p.sources))
        single = all(p.single for p in parts)
        keys: dict[str, Ids] = {}
        for source in sources:
            chunks = []
            for p in parts:
                width = p.n if p.offsets is None else int(p.offsets[-1])
                chunks.append(p.keys.get(source, np.zeros(width, dtype=np.uint64)))
            keys[source] = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
        n = sum(p.n for p in parts)
        if single:
            return Prov(n, keys)
        lengths = np.concatenate([p.lengths() for p in parts]) if parts else np.zeros(0, np.intp)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
        return Prov(n, keys, offsets)

    @staticmethod
    def product(left: Prov, left_rows: Index, right: Prov, right_rows: Index) -> Prov:
        """Provenance of joined rows: output row i pairs ``left_rows[i]`` with ``right_rows[i]``.

        ``right_rows[i] == -1`` marks a left-join row without a match: its right side is absent
        (key id 0 for every right source), so only the left polynomial remains.
        """
        overlap = set(left.sources) & set(right.sources)
        if overlap:
            raise ValueError(f"both join inputs derive from {sorted(overlap)}")
        left_rows = np.asarray(left_rows, dtype=np.intp)
        right_rows = np.asarray(right_rows, dtype=np.intp)
        missing = right_rows < 0
        safe_right = np.where(missing, 0, right_rows)
        n = len(left_rows)
        if left.single and right.single:
            keys = {s: ids[left_rows] for s, ids in left.keys.items()}
            for s, ids in right.keys.items():
                taken = ids[safe_right] if len(ids) else np.zeros(n, dtype=np.uint64)
                taken[missing] = NO_RECORD
                keys[s] = taken
            return Prov(n, keys)
        # general case: every monomial of the left row times every monomial of the right row
        left_len = left.lengths()[left_rows]
        right_len = np.where(missing, 1, right.lengths()[safe_right] if right.n else 1)
        total = left_len * right_len
        offsets = np.concatenate([[0], np.cumsum(total)]).astype(np.intp)
        row = np.repeat(np.arange(n, dtype=np.intp), total)
        k = np.arange(int(offsets[-1]), dtype=np.intp) - offsets[:-1][row]
        li = left._starts()[left_rows][row] + k // right_len[row]
        keys = {s: ids[li] for s, ids in left.keys.items()}
        if right.n:
            ri = right._starts()[safe_right][row] + k % right_len[row]
            absent = missing[row]
            for s, ids in right.keys.items():
                taken = ids[np.where(absent, 0, ri)]
                taken[absent] = NO_RECORD
                keys[s] = taken
        else:
            keys.update({s: np.zeros(len(li), dtype=np.uint64) for s in right.keys})
        return Prov(n, keys, offsets)

    def group(self, group_of_row: Index, n_groups: int) -> Prov:
        """Provenance of ``n_groups`` collapsed rows: each the sum of its members' polynomials.

        ``group_of_row[i]`` is the group of input row i, or -1 if the row is dropped.
        """
        group_of_row = np.asarray(group_of_row, dtype=np.intp)
        group_of_monomial = group_of_row[self.row_of_monomial()]
        keep = group_of_monomial >= 0
        order = np.flatnonzero(keep)[np.argsort(group_of_monomial[keep], kind="stable")]
        lengths = np.bincount(group_of_monomial[keep], minlength=n_groups).astype(np.intp)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
        return Prov(n_groups, {s: ids[order] for s, ids in self.keys.items()}, offsets)

    # -- queries -------------------------------------------------------------------------------
    def rows_mentioning(self, source: str, ids: Iterable[int] | Ids) -> Index:
        """Positions of the rows whose polynomial mentions any of ``ids`` of ``source``."""
        if source not in self.keys:
            return np.zeros(0, dtype=np.intp)
        wanted = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.uint64)
        hit = member_mask(self.keys[source], wanted)
        return sorted_unique(self.row_of_monomial()[hit]).astype(np.intp)

    def monomials(self, row: int) -> list[dict[str, int]]:
        """The monomials of one row, each as {source: key id} (absent sources left out)."""
        if not 0 <= row < self.n:
            raise IndexError(f"row {row} out of range for {self.n} rows")
        start, stop = (
            (row, row + 1)
            if self.offsets is None
            else (int(self.offsets[row]), int(self.offsets[row + 1]))
        )
        return [
            {s: int(ids[m]) for s, ids in self.keys.items() if ids[m] != NO_RECORD}
            for m in range(start, stop)
        ]

    def ids_of_row(self, row: int) -> dict[str, Ids]:
        """For each source, the distinct key ids the row's polynomial mentions."""
        out: dict[str, Ids] = {}
        for mono in self.monomials(row):
            for s, i in mono.items():
                out.setdefault(s, np.zeros(0, dtype=np.uint64))
                out[s] = np.union1d(out[s], np.array([i], dtype=np.uint64))
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per monomial: ``row`` and one key-id column per source."""
        data: dict[str, object] = {"row": self.row_of_monomial()}
        data.update(self.keys)
        return pd.DataFrame(data)
