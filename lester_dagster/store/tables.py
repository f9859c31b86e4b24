"""Frames and provenance as Arrow tables (what the store writes to Parquet).

Provenance columns (reserved names, which user columns cannot have since the frame forbids
the ``__lester_`` prefix):

* ``__lester_prov__<source>`` (uint64): the key id of ``source`` in each monomial (0: absent);
* ``__lester_prov_row__`` (int64): for multi-monomial provenance only, the row each monomial
  belongs to (non-decreasing); the CSR offsets are recovered from it.

Single provenance (one monomial per row, ``Prov.offsets is None``) is stored as extra columns of
the data file, one value per row. Multi provenance is stored in a separate ``prov.parquet`` with
one row per monomial, so the data file keeps one row per data row and flat columns.

The pandas dtypes of the columns are recorded (:func:`describe_columns`) and restored where
Arrow alone would change them: ``object`` columns of strings (Arrow reads them back as ``str``)
and the categories of categorical columns when they are plain str/int/float/bool values
(Parquet keeps only the categories that occur).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.frame import RESERVED_PREFIX, Prov
from lester_dagster.frame.provenance import Ids, sorted_unique

__all__ = [
    "PROV_PREFIX",
    "PROV_ROW",
    "check_columns",
    "describe_columns",
    "frame_of_table",
    "prov_columns",
    "prov_of_columns",
    "prov_of_table",
    "prov_summary",
    "prov_table",
    "read_parquet",
    "split_prov_columns",
    "table_of_frame",
    "write_parquet",
]

PROV_PREFIX = "__lester_prov__"
PROV_ROW = "__lester_prov_row__"

_PLAIN = (str, int, float, bool)


def write_parquet(table: pa.Table, handle: IO[bytes] | Any) -> None:
    """Write ``table`` as one Parquet file to an open binary handle.

    Dictionary encoding only for text and binary columns: numeric columns here are mostly key
    ids and provenance hashes (all distinct), where pyarrow would build a dictionary and then
    drop it, which makes writing them about 5x slower and the file larger."""
    text = [
        field.name
        for field in table.schema
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_string_view(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
        or pa.types.is_dictionary(field.type)
    ]
    pq.write_table(table, handle, use_dictionary=text)


def read_parquet(data: bytes, where: str) -> pa.Table:
    """The Arrow table in Parquet bytes ``data`` (read from ``where``, named in errors)."""
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{where} is not a readable Parquet file ({exc})") from exc


# -- user columns --------------------------------------------------------------------------------
def describe_columns(data: pd.DataFrame) -> dict[str, Any]:
    """What the loader needs to give the columns back their exact pandas dtypes."""
    categories = {}
    for name in data.columns:
        dtype = data[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            values = dtype.categories.tolist()
            if all(isinstance(v, _PLAIN) for v in values):
                categories[str(name)] = {"values": values, "ordered": bool(dtype.ordered)}
    return {
        "columns": [str(c) for c in data.columns],
        "dtypes": {str(c): str(data[c].dtype) for c in data.columns},
        "object_columns": [str(c) for c in data.columns if data[c].dtype == object],
        "categories": categories,
    }


def table_of_frame(data: pd.DataFrame) -> pa.Table:
    """The user columns of ``data`` (and a non-default index) as an Arrow table."""
    check_columns(data)
    try:
        return pa.Table.from_pandas(data, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise UnstorableError(
            f"the frame cannot be stored as Parquet: {exc}. Give each column one type "
            "(e.g. .astype('str') for a column mixing text and numbers)"
        ) from exc


def check_columns(data: pd.DataFrame) -> None:
    """Raise :class:`UnstorableError` unless ``data``'s column names can be stored: unique
    strings without the store's reserved prefix."""
    bad = [c for c in data.columns if not isinstance(c, str)]
    if bad:
        raise UnstorableError(
            f"column names must be strings to be stored in Parquet; got {bad[:5]!r}. Rename "
            "them, e.g. frame.columns = frame.columns.astype(str)"
        )
    reserved = [c for c in data.columns if c.startswith(RESERVED_PREFIX)]
    if reserved:
        raise UnstorableError(
            f"columns {reserved[:5]} start with the reserved prefix {RESERVED_PREFIX!r}, which "
            "the store uses for provenance; rename them"
        )
    if not data.columns.is_unique:
        dup = data.columns[data.columns.duplicated()].unique().tolist()
        raise UnstorableError(f"column names must be unique to be stored; {dup[:5]} repeat")


def frame_of_table(table: pa.Table, rows: int, columns: Mapping[str, Any]) -> pd.DataFrame:
    """The DataFrame written by :func:`table_of_frame` (``columns``: :func:`describe_columns`)."""
    frame: pd.DataFrame = table.to_pandas()
    if frame.shape[1] == 0 and len(frame) != rows:  # Parquet forgets the length of no columns
        frame = pd.DataFrame(index=pd.RangeIndex(rows))
    for name in columns.get("object_columns", []):
        if frame[name].dtype != object:
            values = table.column(name).to_numpy(zero_copy_only=False)
            frame[name] = pd.Series(values, index=frame.index, dtype=object)
    for name, spec in columns.get("categories", {}).items():
        dtype = pd.CategoricalDtype(spec["values"], ordered=spec["ordered"])
        if frame[name].dtype != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


# -- provenance ----------------------------------------------------------------------------------
def prov_columns(prov: Prov) -> dict[str, Ids]:
    """The provenance as reserved column name -> uint64 key ids (one entry per monomial)."""
    return {f"{PROV_PREFIX}{source}": ids for source, ids in prov.keys.items()}


def prov_table(prov: Prov) -> pa.Table:
    """One row per monomial: ``__lester_prov_row__`` (multi only) and the key-id columns."""
    arrays: dict[str, pa.Array] = {}
    if not prov.single:
        arrays[PROV_ROW] = pa.array(prov.row_of_monomial().astype(np.int64), pa.int64())
    for name, ids in prov_columns(prov).items():
        arrays[name] = pa.array(np.asarray(ids, dtype=np.uint64), pa.uint64())
    return pa.table(arrays)


def split_prov_columns(table: pa.Table) -> tuple[pa.Table, dict[str, Ids]]:
    """``table`` without its provenance columns, and those columns as source -> key ids."""
    keys: dict[str, Ids] = {}
    for name in table.column_names:
        if name.startswith(PROV_PREFIX):
            column = table.column(name).to_numpy(zero_copy_only=False)
            keys[name[len(PROV_PREFIX) :]] = np.ascontiguousarray(column, dtype=np.uint64)
    drop = [n for n in table.column_names if n.startswith(PROV_PREFIX) or n == PROV_ROW]
    return table.drop_columns(drop), keys


def _pick(keys: Mapping[str, Ids], sources: tuple[str, ...]) -> dict[str, Ids]:
    missing = [s for s in sources if s not in keys]
    if missing:
        raise ArtifactError(
            f"the stored provenance lacks the key-id columns of sources {missing}; the files "
            "were changed outside lester-dagster. Rematerialise the asset"
        )
    return {s: keys[s] for s in sources}


def prov_of_columns(n: int, keys: Mapping[str, Ids], sources: tuple[str, ...]) -> Prov:
    """Single provenance of ``n`` rows from key-id columns, sources in the stored order."""
    return Prov(n, _pick(keys, sources))


def prov_of_table(table: pa.Table, n: int, sources: tuple[str, ...], *, multi: bool) -> Prov:
    """The provenance of ``n`` rows stored by :func:`prov_table` (``multi``: with row column)."""
    _, keys = split_prov_columns(table)
    if not multi:
        return prov_of_columns(n, keys, sources)
    if PROV_ROW not in table.column_names:
        raise ArtifactError(f"multi-monomial provenance without its {PROV_ROW!r} column")
    row = table.column(PROV_ROW).to_numpy(zero_copy_only=False).astype(np.intp)
    if len(row) and (row[0] < 0 or row[-1] >= n or (np.diff(row) < 0).any()):
        raise ArtifactError(
            f"the stored provenance rows are not sorted row numbers below {n}; rematerialise"
        )
    lengths = np.bincount(row, minlength=n).astype(np.intp)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
    return Prov(n, _pick(keys, sources), offsets)


def prov_summary(prov: Prov) -> dict[str, Any]:
    """Layout, number of monomials and rows per source (rows whose provenance mentions it)."""
    row = prov.row_of_monomial()
    per_source = {}
    for source, ids in prov.keys.items():
        present = ids != 0
        count = int(present.sum()) if prov.single else len(sorted_unique(row[present]))
        per_source[source] = count
    return {
        "layout": "single" if prov.single else "multi",
        "monomials": len(row),
        "rows_per_source": per_source,
    }
