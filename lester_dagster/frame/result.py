"""An executed plan: the user-visible data plus lineage queries over it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lester_dagster.errors import (
    PlanError,
    UnknownColumnError,
    UnknownKeyError,
    UnknownSourceError,
    preview,
)
from lester_dagster.frame.engine import KEY_HASH_COLUMN, SourceTable
from lester_dagster.frame.plan import ColumnRef, Schema, SourceSpec, dtype_kind
from lester_dagster.frame.provenance import Ids, Prov, hash_keys, member_mask

__all__ = [
    "KeyResolver",
    "Lineage",
    "Result",
    "hash_key_values",
    "ids_for_keys",
    "keys_for_ids",
    "restore_result",
]


class Result:
    """The output of :meth:`Frame.execute`: data (``to_pandas``) and ``lineage`` queries."""

    def __init__(
        self,
        schema: Schema,
        data: pd.DataFrame,
        prov: Prov,
        sources: Mapping[str, SourceTable],
        *,
        complete_key_indexes: bool = True,
    ) -> None:
        self.schema = schema
        self._data = data
        self.prov = prov
        self.sources = {name: sources[name] for name in schema.sources if name in sources}
        self.lineage = Lineage(self)
        # False when the key indexes hold only the keys these rows mention (a stored artifact):
        # a key missing from them may still be a record of the source
        self.complete_key_indexes = complete_key_indexes

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


def hash_key_values(source: str, index: pd.DataFrame, keys: Iterable[Any]) -> Ids:
    """Key ids of ``keys`` of ``source``, hashed as the engine hashes them, whether or not the
    records are (still) in ``index``: the index gives only the key columns and their types.

    Keys are the source's key values (a scalar for a one-column key, a tuple for several, the
    hex content hash for a source read without ``key=``), cast to the index's column types.
    A deletion uses this, so a key whose record is already gone from some artifact still
    reaches the rows derived from it elsewhere.
    """
    wanted = list(keys)
    if not wanted:
        return np.zeros(0, dtype=np.uint64)
    key_columns = list(index.columns)
    if key_columns == [KEY_HASH_COLUMN]:
        try:
            return np.array([int(str(k), 16) for k in wanted], dtype=np.uint64)
        except ValueError as exc:
            raise UnknownKeyError(
                f"source {source!r} is keyed by content hash; pass 16-digit hex keys "
                f"(see lineage.backward), got {preview(wanted, 3)}"
            ) from exc
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
    return hash_keys(frame, key_columns)


def ids_for_keys(
    source: str, index: pd.DataFrame, keys: Iterable[Any], *, strict: bool = True
) -> Ids:
    """Key ids of ``keys`` of ``source`` given its key index (:attr:`SourceTable.keys`).

    Keys are cast and hashed as in :func:`hash_key_values`. Keys not in ``index`` raise
    :class:`UnknownKeyError` if ``strict``, else they are dropped.
    """
    wanted = list(keys)
    ids = hash_key_values(source, index, wanted)
    if not wanted:
        return ids
    present = member_mask(index.index.to_numpy(dtype=np.uint64), ids)  # index ids among ids
    known = member_mask(ids, index.index.to_numpy(dtype=np.uint64)[present])
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


class KeyResolver:
    """Source keys <-> key ids from key indexes (one per source, as :attr:`SourceTable.keys`).

    A small, picklable stand-in for a result's lineage lookups: feature matrices keep one as
    their ``resolve`` (so a fitted training state pickles without dragging the whole
    :class:`Result` along), and stored artifacts rebuild one from their key indexes.
    ``strict``: unknown keys raise :class:`UnknownKeyError` (use it with complete source
    indexes); otherwise they are dropped (indexes that hold only the keys an artifact mentions).
    """

    def __init__(self, indexes: Mapping[str, pd.DataFrame], *, strict: bool = False) -> None:
        self.indexes = dict(indexes)
        self.strict = strict

    @classmethod
    def of_result(cls, result: Result, *, strict: bool | None = None) -> KeyResolver:
        """The resolver of an executed frame's sources: strict (unknown keys raise) when its
        key indexes are complete (an executed plan), lenient for a restored artifact."""
        if strict is None:
            strict = result.complete_key_indexes
        return cls({name: table.keys for name, table in result.sources.items()}, strict=strict)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    def _index(self, source: str) -> pd.DataFrame:
        try:
            return self.indexes[source]
        except KeyError:
            raise UnknownSourceError(source, self.indexes) from None

    def __call__(self, source: str, keys: Iterable[Any], *, strict: bool | None = None) -> Ids:
        """Key ids of ``keys`` of ``source`` (unknown keys raise if strict, else are dropped)."""
        return ids_for_keys(
            source, self._index(source), keys, strict=self.strict if strict is None else strict
        )

    def keys_of(self, source: str, ids: Sequence[int] | Ids) -> list[Any]:
        """The source keys of key ids (in the same order); unknown ids raise ``KeyError``."""
        return keys_for_ids(self._index(source), ids)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}: {len(i)}" for s, i in self.indexes.items())
        return f"<KeyResolver {{{sizes}}}{' strict' if self.strict else ''}>"


def restore_result(
    data: pd.DataFrame,
    prov: Prov,
    *,
    lineage: Mapping[str, Iterable[ColumnRef]],
    key_indexes: Mapping[str, pd.DataFrame],
) -> Result:
    """A :class:`Result` rebuilt from stored parts: rows, their provenance, the columns' source
    lineage and the sources' key indexes (what an artifact store keeps of an executed frame).

    Use it to hand stored data to code that takes executed frames (``fit_encode``,
    ``TrainingState.fit``); lineage queries then answer from the stored key indexes. Those may
    hold only the keys the rows mention, so the result is marked ``complete_key_indexes=False``
    and resolvers built from it drop unknown keys instead of raising.
    """
    if not isinstance(data, pd.DataFrame):
        raise PlanError(f"restore_result() needs a pandas DataFrame, got {type(data).__name__}")
    if prov.n != len(data):
        raise PlanError(
            f"the data has {len(data)} rows but the provenance describes {prov.n}; pass the "
            "provenance stored with exactly these rows"
        )
    columns = tuple(str(c) for c in data.columns)
    missing = [c for c in columns if c not in lineage]
    if missing:
        raise PlanError(
            f"no column lineage for column(s) {preview(missing)}; pass lineage={{column: "
            "[ColumnRef(source, column), ...]}} for every column (an empty list for constants)"
        )
    specs: dict[str, SourceSpec] = {}
    tables: dict[str, SourceTable] = {}
    for source in prov.sources:
        index = key_indexes.get(source)
        if index is None:
            index = pd.DataFrame(
                {KEY_HASH_COLUMN: pd.Series([], dtype=object)},
                index=pd.Index([], dtype=np.uint64, name="key_id"),
            )
        key = () if list(index.columns) == [KEY_HASH_COLUMN] else tuple(map(str, index.columns))
        spec = SourceSpec(
            name=source,
            fmt="pandas",
            key=key,
            columns=key,
            dtypes=tuple(dtype_kind(t) for t in index.dtypes) if key else (),
        )
        specs[source] = spec
        tables[source] = SourceTable(spec, index, len(index))
    schema = Schema(
        columns=columns,
        dtypes={c: dtype_kind(data[c].dtype) for c in columns},
        lineage={c: frozenset(lineage[c]) for c in columns},
        sources=specs,
        multi=not prov.single,
    )
    return Result(schema, data.reset_index(drop=True), prov, tables, complete_key_indexes=False)


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
