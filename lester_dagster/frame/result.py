"""An executed plan: the user-visible data plus lineage queries over it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lester_dagster.errors import UnknownColumnError, UnknownKeyError, UnknownSourceError, preview
from lester_dagster.frame.engine import KEY_HASH_COLUMN, SourceTable
from lester_dagster.frame.plan import ColumnRef, Schema
from lester_dagster.frame.provenance import Ids, Prov, hash_keys

__all__ = ["Lineage", "Result", "ids_for_keys", "keys_for_ids"]


class Result:
    """The output of :meth:`Frame.execute`: data (``to_pandas``) and ``lineage`` queries."""

    def __init__(
        self, schema: Schema, data: pd.DataFrame, prov: Prov, sources: Mapping[str, SourceTable]
    ) -> None:
        self.schema = schema
        self._data = data
        self.prov = prov
        self.sources = {name: sources[name] for name in schema.sources if name in sources}
        self.lineage = Lineage(self)

    def to_pandas(self) -> pd.DataFrame:
        """The result rows, with only the user's columns (provenance stays inside)."""
        return self._data.copy(deep=False)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<Result {len(self)} rows x {len(self.columns)} columns from {list(self.sources)}>"


def _sorted(keys: list[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # keys that do not compare (mixed types): keep hash order
        return keys


def ids_for_keys(
    source: str, index: pd.DataFrame, keys: Iterable[Any], *, strict: bool = True
) -> Ids:
    """Key ids of ``keys`` of ``source`` given its key index (:attr:`SourceTable.keys`).

    Keys are the source's key values (a scalar for a one-column key, a tuple for several, the
    hex content hash for a source read without ``key=``); they are cast to the index's column
    types and hashed as the engine hashes them. Keys not in ``index`` raise
    :class:`UnknownKeyError` if ``strict``, else they are dropped.
    """
    wanted = list(keys)
    if not wanted:
        return np.zeros(0, dtype=np.uint64)
    key_columns = list(index.columns)
    if key_columns == [KEY_HASH_COLUMN]:
        try:
            ids = np.array([int(str(k), 16) for k in wanted], dtype=np.uint64)
        except ValueError as exc:
            raise UnknownKeyError(
                f"source {source!r} is keyed by content hash; pass 16-digit hex keys "
                f"(see lineage.backward), got {preview(wanted, 3)}"
            ) from exc
    else:
        rows = [k if isinstance(k, tuple) else (k,) for k in wanted]
        bad = [k for k in rows if len(k) != len(key_columns)]
        if bad:
            raise UnknownKeyError(
                f"source {source!r} has key columns {key_columns}; each key needs "
                f"{len(key_columns)} value(s), got {preview(bad, 3)}"
            )
        given = pd.DataFrame(rows, columns=key_columns)
        try:
            frame = given.astype(index.dtypes.to_dict())
        except (ValueError, TypeError) as exc:
            raise UnknownKeyError(
                f"keys {preview(wanted, 3)} do not match the types of {source!r}'s key "
                f"columns {index.dtypes.astype(str).to_dict()}"
            ) from exc
        # the cast to an int column must not truncate: 2.5 is not the key 2
        for name in key_columns:
            if pd.api.types.is_integer_dtype(frame[name].dtype):
                numbers = pd.to_numeric(given[name], errors="coerce")
                lossy = numbers.notna() & (numbers != frame[name])
                if lossy.any():
                    raise UnknownKeyError(
                        f"source {source!r} has integer key column {name!r}; "
                        f"{preview(given[name][lossy].tolist(), 3)} is not a whole number"
                    )
        ids = hash_keys(frame, key_columns)
    known = np.isin(ids, index.index.to_numpy(dtype=np.uint64))
    if strict and not known.all():
        missing = [k for k, ok in zip(wanted, known) if not ok]
        examples = keys_for_ids(index, index.index.to_numpy(dtype=np.uint64)[:3])
        raise UnknownKeyError(
            f"source {source!r} has no record with key {preview(missing, 5)}; "
            f"its keys look like {preview(examples, 3)}"
        )
    return ids[known]


def keys_for_ids(index: pd.DataFrame, ids: Sequence[int] | Ids) -> list[Any]:
    """The source keys of key ids (in the same order) from a key index."""
    rows = index.loc[np.asarray(ids, dtype=np.uint64)]
    if len(index.columns) == 1:
        return [v.item() if hasattr(v, "item") else v for v in rows.iloc[:, 0].tolist()]
    return [tuple(r) for r in rows.itertuples(index=False, name=None)]


class Lineage:
    """Lineage queries on a :class:`Result`.

    * :meth:`backward`: output row -> the source keys it derives from, per source;
    * :meth:`forward`: source + keys -> the output rows they reach;
    * :meth:`columns`: output column -> the source columns it is computed from.

    Keys are the source's own key values (a scalar for a one-column key, a tuple for several
    columns, the hex content hash for a source read without ``key=``).
    """

    def __init__(self, result: Result) -> None:
        self._result = result

    def _table(self, source: str) -> SourceTable:
        try:
            return self._result.sources[source]
        except KeyError:
            raise UnknownSourceError(source, self._result.sources) from None

    # -- keys <-> ids --------------------------------------------------------------------------
    def key_ids(self, source: str, keys: Iterable[Any], *, strict: bool = True) -> Ids:
        """Key ids of ``keys`` of ``source``; unknown keys raise (or are dropped if not strict)."""
        return ids_for_keys(source, self._table(source).keys, keys, strict=strict)

    def keys_of(self, source: str, ids: Sequence[int] | Ids) -> list[Any]:
        """The source keys of key ids, in the same order."""
        return keys_for_ids(self._table(source).keys, ids)

    # -- the three queries ---------------------------------------------------------------------
    def backward(self, row: int) -> dict[str, list[Any]]:
        """For output row ``row`` (0-based position), the keys of every source it derives from
        (each list sorted)."""
        if not 0 <= row < len(self._result):
            raise IndexError(f"row {row} is out of range: the result has {len(self._result)} rows")
        return {
            s: _sorted(self.keys_of(s, ids)) for s, ids in self._result.prov.ids_of_row(row).items()
        }

    def forward(self, source: str, keys: Iterable[Any], *, strict: bool = True) -> list[int]:
        """Positions of the output rows whose provenance mentions any of ``keys`` of ``source``."""
        ids = self.key_ids(source, keys, strict=strict)
        return [int(i) for i in self._result.prov.rows_mentioning(source, ids)]

    def columns(self, column: str) -> frozenset[ColumnRef]:
        """The source columns an output column is computed from."""
        lineage = self._result.schema.lineage
        if column not in lineage:
            raise UnknownColumnError(column, self._result.schema.columns, "the result")
        return lineage[column]

    def polynomial(self, row: int) -> str:
        """The row's provenance polynomial: ``mails[3]*customers[7] + mails[9]*customers[7]``."""
        if not 0 <= row < len(self._result):
            raise IndexError(f"row {row} is out of range: the result has {len(self._result)} rows")
        terms = []
        for mono in self._result.prov.monomials(row):
            factors = [f"{s}[{self.keys_of(s, [i])[0]!r}]" for s, i in mono.items()]
            terms.append("*".join(factors) or "1")
        return " + ".join(terms)
