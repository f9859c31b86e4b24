"""What artifacts store in row segments (:mod:`lester_dagster.store.segments`), and reading it
back: a CSR X (its dense columns kept apart), single provenance, y, the training rows' frame
and key indexes.

The writer is the artifact's file set (``store.artifacts``), seen here as a :class:`Segmenter`:
it writes or links each segment and returns the manifest's description of them.

* **Provenance** (:func:`prov_segments`): the key ids per source, one row per row. X and y of
  the same rows store the same segments (the second links the first's files).
* **CSR matrices** (:func:`csr_segments`): ``data``, ``indices`` and local ``indptr`` per
  segment. Columns with an entry in (almost) every row (:func:`pinned`, a scaler's column) are
  stored as zeros there and their values in one dense file of their own: a scaler that moves
  after a deletion rewrites that file, not every segment.
* **Frames** (:func:`frame_segments`): numeric numpy columns as they are, pandas' pyarrow-backed
  text columns (``str``, ``string[pyarrow]``) as utf-8 bytes with offsets and a validity byte
  per row; a frame with another kind of column is not segmented (:func:`frame_rows` says None).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError
from lester_dagster.frame import Prov
from lester_dagster.store import segments
from lester_dagster.store.links import IdentityMemo
from lester_dagster.store.tables import prov_summary

__all__ = [
    "PINNED_MAX",
    "ROW_BUFFER_BYTES",
    "Segmenter",
    "csr_base",
    "csr_segments",
    "empty_frame",
    "ends_of",
    "frame_rows",
    "frame_segments",
    "key_ends",
    "pinned",
    "prov_segments",
    "read_csr",
    "read_frame",
    "segmentable",
]

PINNED_MAX = 64
"""At most this many of X's dense columns are kept apart from its row segments."""

ROW_BUFFER_BYTES = 1 << 16
"""An object's buffer of whole rows is stored in row segments from this size on."""

IntArray = npt.NDArray[np.intp]


class Segmenter(Protocol):
    """Writes ``rows`` as segments ending at ``ends`` under ``prefix``; their description."""

    def segments(self, prefix: str, rows: segments.Rows, ends: IntArray) -> dict[str, Any]: ...


def segmentable(prov: Prov) -> bool:
    """Rows with single provenance from at least one source are stored in row segments."""
    return prov.single and len(prov.sources) > 0


def _bounded(ends: IntArray, n: int) -> IntArray:
    """``ends``, unless ids that hardly differ (one id for many rows) cut too often: then a cut
    every ``SEGMENT_ROWS`` rows."""
    target = segments.SEGMENT_ROWS
    if len(ends) > 4 * (n // target) + 16:
        return np.append(np.arange(target, n, target, dtype=np.intp), np.intp(n))
    return ends


def ends_of(prov: Prov) -> IntArray:
    """Where the rows of ``prov`` are cut into segments (content-defined by their key ids)."""
    return _bounded(segments.cut(segments.row_ids(prov.keys, prov.n)), prov.n)


def key_ends(ids: npt.NDArray[Any]) -> IntArray:
    """Where a key index (rows identified by their key ids) is cut into segments."""
    keys = np.asarray(ids, dtype=np.uint64)
    return _bounded(segments.cut(segments.row_ids({"key": keys}, len(keys))), len(keys))


def prov_segments(files: Segmenter, prov: Prov, ends: IntArray) -> dict[str, Any]:
    """Single provenance as row segments of key ids, with the summary the manifest keeps."""
    arrays = {s: np.asarray(prov.keys[s], dtype=np.uint64) for s in prov.sources}
    described = files.segments("prov", segments.Rows(prov.n, arrays), ends)
    return {**prov_summary(prov), "segments": described}


# -- CSR matrices ----------------------------------------------------------------------------------
_SAMPLE_ROWS = 2048


def pinned(X: Any) -> IntArray:
    """X's columns with an entry in (almost, 99%) of its first and last rows (up to
    ``_SAMPLE_ROWS`` each), as a scaler's column has, densest first, at most
    :data:`PINNED_MAX` (which columns are kept apart only decides what is rewritten together;
    :func:`csr_segments` drops a candidate that is not dense in every row)."""
    n = int(X.shape[0])
    if n == 0 or X.nnz == 0:
        return np.zeros(0, dtype=np.intp)
    width = int(X.shape[1])
    if n <= 2 * _SAMPLE_ROWS:
        counts, sampled = np.bincount(X.indices, minlength=width), n
    else:
        head = X.indices[: X.indptr[_SAMPLE_ROWS]]
        tail = X.indices[X.indptr[n - _SAMPLE_ROWS] : X.indptr[n]]
        counts = np.bincount(head, minlength=width) + np.bincount(tail, minlength=width)
        sampled = 2 * _SAMPLE_ROWS
    dense = np.flatnonzero(counts * 100 >= sampled * 99)
    return dense[np.argsort(-counts[dense], kind="stable")][:PINNED_MAX].astype(np.intp)


def csr_base(X: Any) -> dict[str, Any]:
    """The manifest's description of a CSR matrix (its segments are added to it)."""
    return {
        "layout": "sparse",
        "format": "csr",
        "shape": [int(d) for d in X.shape],
        "dtype": X.dtype.str,
        "nnz": int(X.nnz),
    }


@dataclass(frozen=True)
class _Split:
    """A CSR matrix's dense columns apart: their ids, their values (rows x columns) and the
    positions (in ``X.data``, ascending) of their entries, stored as zeros in the segments."""

    columns: list[int]
    values: npt.NDArray[Any]
    at: npt.NDArray[np.intp]


_splits: IdentityMemo[_Split] = IdentityMemo(limit=2)
"""The split of the matrices just stored (X_train's, then the model state's: the same object)."""


def _entries(X: Any, columns: IntArray) -> tuple[IntArray, IntArray]:
    """The stored entries of CSR ``X`` in ``columns``: their positions in ``X.data``
    (ascending) and their columns; one pass over the indices per column."""
    indices = X.indices
    mask = indices == columns[0]
    for column in columns[1:].tolist():
        mask |= indices == column
    at = np.flatnonzero(mask)
    return at, indices[at]


def _rows_of(X: Any, at: IntArray) -> IntArray:
    """The rows of the entries at positions ``at`` (ascending) of CSR ``X``: where there is one
    per row, as a dense column has, checked against ``indptr`` in one pass; else by an ordered
    search of ``indptr`` (both without a row number per entry of X: 3M entries)."""
    n = int(X.shape[0])
    indptr = X.indptr
    if at.size == n and bool(((indptr[:-1] <= at) & (at < indptr[1:])).all()):
        return np.arange(n, dtype=np.intp)
    return np.searchsorted(indptr, at, side="right") - 1


def _split(X: Any) -> _Split:
    known = _splits.get(X)
    if known is not None:
        return known
    n = int(X.shape[0])
    candidates = pinned(X)
    columns: list[int] = []
    chosen: list[tuple[IntArray, IntArray]] = []
    at, of = _entries(X, candidates) if candidates.size else (_NO_ENTRIES, _NO_ENTRIES)
    for column in candidates.tolist():
        which = np.flatnonzero(of == column)
        if which.size * 100 < n * 99:
            continue  # not dense after all (the sample said it was)
        in_rows = _rows_of(X, at[which])
        if in_rows.size > 1 and not bool((np.diff(in_rows) > 0).all()):
            continue  # duplicate entries of the column in one row: kept in the segments
        columns.append(column)
        chosen.append((which, in_rows))
    values = np.zeros((n, len(columns)), dtype=X.dtype)
    positions = _NO_ENTRIES
    if chosen:
        gathered = X.data[at]  # one ordered pass: a row's dense entries lie side by side
        picked = np.zeros(len(at), dtype=bool)
        for k, (which, in_rows) in enumerate(chosen):
            values[in_rows, k] = gathered[which]
            picked[which] = True
        positions = at if picked.all() else at[picked]  # (ascending, as ``at`` is)
    split = _Split(columns, values, positions.astype(np.intp, copy=False))
    _splits.put(X, split)
    return split


_NO_ENTRIES: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)


@contextlib.contextmanager
def _zeroed(data: npt.NDArray[Any], at: npt.NDArray[np.intp]) -> Iterator[npt.NDArray[Any]]:
    """``data`` with zeros at ``at`` for the block. A writable array is zeroed in place and
    given back its values after the block (copying X's 40 MB of values cost more than
    everything else of storing it); a read-only one is copied."""
    if not at.size:
        yield data
    elif not data.flags.writeable:
        copy = data.copy()
        copy[at] = 0
        yield copy
    else:
        saved = data[at]
        data[at] = 0
        try:
            yield data
        finally:
            data[at] = saved


def csr_segments(files: Segmenter, prefix: str, X: Any, ends: IntArray) -> dict[str, Any]:
    """A CSR matrix in row segments. Its dense columns (:func:`pinned`) are kept apart, in one
    dense file of their own, and stored as zeros in the matrix's segments: a column whose every
    value moves (a scaler after a deletion) then rewrites that one small file, not every
    segment of X, and no old value of it stays behind in a segment that is kept. (``X`` is
    written with those entries zeroed in place and gets them back before this returns: no
    other thread may read it meanwhile.)"""
    n = int(X.shape[0])
    described: dict[str, Any] = {}
    split = _split(X)
    if split.columns:
        kept = segments.Rows(n, {"values": split.values})
        whole = np.asarray([n], dtype=np.intp)  # one file: its values move together
        described["pinned"] = {
            "columns": split.columns,
            **files.segments(f"{prefix}-pinned", kept, whole),
        }
    indptr = np.asarray(X.indptr, dtype=X.indices.dtype)
    with _zeroed(X.data, split.at) as data:
        parts = segments.CsrParts(data, np.asarray(X.indices), indptr)
        described.update(files.segments(prefix, segments.Rows(n, {}, parts), ends))
    return described


def read_csr(described: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> Any:
    """The CSR matrix :func:`csr_segments` stored (its pinned columns put back)."""
    _, parts = segments.read(described, data, where)
    if parts is None:
        raise ArtifactError(f"{where}: the matrix's segments hold no CSR buffers; rematerialise")
    shape = tuple(int(d) for d in described["shape"])
    X = sp.csr_matrix((parts.data, parts.indices, parts.indptr), shape=shape, copy=False)
    kept = described.get("pinned")
    if kept:
        arrays, _ = segments.read(kept, data, where)
        values = arrays["values"]
        columns = np.asarray(kept["columns"], dtype=np.intp)
        if columns.size:
            at, of = _entries(X, columns)
            for k, column in enumerate(columns.tolist()):
                places = at[of == column]
                X.data[places] = values[_rows_of(X, places), k]
    return X


# -- frames ----------------------------------------------------------------------------------------
def _text(column: pd.Series) -> pa.Array | None:
    """The column's pyarrow string array, if pandas keeps it as one (else None)."""
    dtype = column.dtype
    if not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow":
        return None
    array = pa.array(column.array)  # zero-copy: pandas hands over its pyarrow data
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if len(array) != len(column):
        return None
    if not (pa.types.is_large_string(array.type) or pa.types.is_string(array.type)):
        return None
    return array


def frame_rows(frame: pd.DataFrame) -> tuple[segments.Rows, dict[str, Any]] | None:
    """``frame`` as row-aligned arrays (and its description: column names, dtypes, index), or
    None when a column is neither a numpy number/bool nor pyarrow-backed text, or the index is
    neither a default range nor numeric."""
    n = len(frame)
    if not frame.columns.is_unique or not isinstance(frame.columns.name, (str, type(None))):
        return None
    arrays: dict[str, npt.NDArray[Any]] = {}
    ragged: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}
    columns: list[list[Any]] = []
    for i, name in enumerate(frame.columns):
        column = frame.iloc[:, i]
        key = f"c{i}"
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
            arrays[key] = np.ascontiguousarray(column.to_numpy())
            columns.append([name, "numpy", column.dtype.str])
            continue
        text = _text(column)
        if text is None:
            return None
        _, offsets, values = text.buffers()
        width = 8 if pa.types.is_large_string(text.type) else 4
        where = np.frombuffer(offsets, dtype=f"<i{width}")[text.offset : text.offset + n + 1]
        blob = (
            np.frombuffer(values, dtype=np.uint8) if values is not None else np.zeros(0, np.uint8)
        )
        ragged[key] = (blob, where.astype(np.int64, copy=False))
        if text.null_count:  # else every value is present: no validity bytes stored
            arrays[f"{key}.valid"] = np.asarray(text.is_valid().to_numpy(zero_copy_only=False))
        na_value = getattr(column.dtype, "na_value", None)
        columns.append([name, "text", str(column.dtype), na_value is pd.NA])
    index = frame.index
    default = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    if default and index.name is None:
        described_index: Any = "range"
    elif isinstance(index.dtype, np.dtype) and index.dtype.kind in "biuf" and index.nlevels == 1:
        arrays["index"] = np.ascontiguousarray(index.to_numpy())
        described_index = [index.name, index.dtype.str]
    else:
        return None
    if not all(isinstance(c[0], str) for c in columns):
        return None  # JSON keeps only text column names
    if not arrays and not ragged:
        return None  # no column and a default index: nothing says how many rows a segment has
    described = {"columns": columns, "index": described_index, "axis": frame.columns.name}
    return segments.Rows(n, arrays, None, ragged), described


def frame_segments(
    files: Segmenter, prefix: str, rows: segments.Rows, described: Mapping[str, Any], ends: IntArray
) -> dict[str, Any]:
    """A frame's rows (:func:`frame_rows`) in segments; the manifest's description."""
    return {"layout": "frame", **described, **files.segments(prefix, rows, ends)}


def _string_dtype(name: str, na_is_pd_na: bool) -> Any:
    if name == "str" or not na_is_pd_na:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    return pd.StringDtype("pyarrow")


def empty_frame(described: Mapping[str, Any]) -> pd.DataFrame:
    """A frame with the columns, dtypes and index type :func:`frame_segments` described, and
    no rows (what hashing request keys needs, without reading any segment)."""
    out: dict[str, Any] = {}
    try:
        for spec in described["columns"]:
            if spec[1] == "numpy":
                out[spec[0]] = np.zeros(0, dtype=np.dtype(spec[2]))
            else:
                out[spec[0]] = pd.array([], dtype=_string_dtype(spec[2], bool(spec[3])))
        index_spec = described["index"]
        index: pd.Index = (
            pd.RangeIndex(0)
            if index_spec == "range"
            else pd.Index(np.zeros(0, dtype=np.dtype(index_spec[1])), name=index_spec[0])
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ArtifactError(f"a stored frame's description is malformed ({exc})") from exc
    return pd.DataFrame(out, index=index).rename_axis(columns=described.get("axis"))


def read_frame(described: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> pd.DataFrame:
    """The frame :func:`frame_segments` stored."""
    arrays, _ = segments.read(described, data, where)
    n = int(described["rows"])
    out: dict[str, Any] = {}
    try:
        for i, spec in enumerate(described["columns"]):
            name, kind = spec[0], spec[1]
            key = f"c{i}"
            if kind == "numpy":
                out[name] = arrays[key]
                continue
            valid = arrays.get(f"{key}.valid")
            bitmap, missing = None, 0
            if valid is not None:
                present = valid.astype(bool)
                bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
                missing = int(n - present.sum())
            text = pa.LargeStringArray.from_buffers(
                n,
                pa.py_buffer(arrays[f"{key}.offsets"]),
                pa.py_buffer(arrays[f"{key}.values"]),
                bitmap,
                missing,
            )
            dtype = _string_dtype(spec[2], bool(spec[3]))
            out[name] = pd.arrays.ArrowStringArray(pa.chunked_array([text]), dtype=dtype)  # type: ignore[call-arg]
        index_spec = described["index"]
        if index_spec == "range":
            index: pd.Index = pd.RangeIndex(n)
        else:
            index = pd.Index(arrays["index"], name=index_spec[0])
    except (KeyError, IndexError, TypeError, ValueError, pa.ArrowException) as exc:
        raise ArtifactError(
            f"{where}: a stored frame cannot be read ({exc}); rematerialise"
        ) from exc
    return pd.DataFrame(out, index=index, copy=False).rename_axis(columns=described.get("axis"))
