"""Row segments: row-aligned arrays stored as content-addressed files, so that a new version of
an artifact rewrites only the segments whose rows changed and shares the others.

A deletion removes a few rows of X, y and the model's matrix; rewriting those artifacts whole
made the write cost grow with the data. Here the rows are cut into *segments* at
content-defined places: a segment ends after a row whose identity (a 64-bit id from its
provenance, :func:`row_ids`) hashes to 0 modulo the target length (:data:`SEGMENT_ROWS`), or
after :data:`MAX_RUN` times that many rows since the last such cut. Removing or changing a row
therefore changes its own segment, and the next one too where the removed row ended its segment
(the two merge) or where the cuts were counted by length; every other segment stays as it was.

Each segment is one file of raw, aligned buffers (the slices of every array, for a CSR matrix its
``data``, ``indices`` and local ``indptr``; :func:`lester_dagster.store.pickling.write_aligned`),
named by the 128-bit xxh3 fingerprint of its bytes (:func:`encode`); loading checks a segment
file against that fingerprint (20x faster than sha256), ``store.verify`` against its sha256.
A file is linked only if this process wrote or checked it and it has not changed since (same
inode and mtime), or its bytes match its fingerprint when it is linked: a damaged file is never
carried into a new version, and rematerialising repairs it.
A writer that finds a file with the same fingerprint, in the artifact's previous version or
among the files this process wrote recently (:data:`CATALOGUE`: X_train's segments for the model
state's copy of X, X's provenance for y's), hard-links it into the new version instead of
writing it (local paths only; anything else writes). The manifest lists every segment with its
fingerprint, file and rows; the files keep their sha256 in the manifest as every other file
does.

Physical removal stays immediate: the segment that held a deleted row is rewritten without it,
and the old version is collected after the commit, as before.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import lz4.block
import numpy as np
import numpy.typing as npt
import xxhash

from lester_dagster.errors import ArtifactError
from lester_dagster.frame.provenance import mix64
from lester_dagster.store.pickling import aligned_offsets, write_aligned

__all__ = [
    "ADDRESSED",
    "CATALOGUE",
    "MAX_RUN",
    "SEGMENT_ROWS",
    "Catalogue",
    "CsrParts",
    "Encoded",
    "Known",
    "Rows",
    "assemble",
    "cut",
    "encode",
    "file_fingerprint",
    "read",
    "row_ids",
    "spec",
    "stored_segments",
]

ADDRESSED = re.compile(r"-([0-9a-f]{32})\.bin$")
"""A segment file's name: ``<prefix>-<xxh3-128 hex of its bytes>.bin``."""

_PACK_BYTES = 4096
"""Text (ragged values) of at least this many bytes per segment is stored lz4-compressed."""

SEGMENT_ROWS = 8192
"""Expected rows per segment (content-defined cuts: some are shorter, some longer)."""

MAX_RUN = 4
"""A segment is cut after at most ``MAX_RUN * target`` rows even where no row id says so."""

_CUT_SALT = 0x5E65_3E47_C0FF_EE11

IntArray = npt.NDArray[np.intp]


def row_ids(keys: Mapping[str, npt.NDArray[np.uint64]], n: int) -> npt.NDArray[np.uint64]:
    """One 64-bit id per row from its key ids per source (single provenance): the same record
    combination gives the same id in every artifact, whatever rows surround it."""
    combined = np.full(n, _CUT_SALT, dtype=np.uint64)
    for source in sorted(keys):
        combined = mix64(combined ^ np.asarray(keys[source], dtype=np.uint64), _CUT_SALT)
    return combined


def cut(ids: npt.NDArray[np.uint64], target: int | None = None) -> IntArray:
    """The end positions (exclusive, ascending, the last one ``len(ids)``) of the segments of
    rows with these ids. A cut follows every row whose mixed id is 0 modulo ``target``
    (default: :data:`SEGMENT_ROWS` at the time of the call), and a run without such a row is
    cut every ``MAX_RUN * target`` rows from its start."""
    if target is None:
        target = SEGMENT_ROWS
    n = len(ids)
    if target < 1:
        raise ValueError(f"target must be a positive number of rows, got {target}")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    mixed = mix64(ids, _CUT_SALT)
    natural = np.flatnonzero(mixed % np.uint64(target) == 0) + 1
    ends = np.unique(np.concatenate([natural, [n]])).astype(np.intp)
    longest = MAX_RUN * target
    starts = np.concatenate([[0], ends[:-1]])
    if int((ends - starts).max()) <= longest:
        return ends
    out: list[int] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        out.extend(range(start + longest, end, longest))
        out.append(end)
    return np.asarray(out, dtype=np.intp)


@dataclass(frozen=True)
class CsrParts:
    """A CSR matrix's buffers (rows are the segment rows)."""

    data: npt.NDArray[Any]
    indices: npt.NDArray[Any]
    indptr: npt.NDArray[Any]


@dataclass(frozen=True)
class Rows:
    """What is cut into segments: row-aligned arrays (first axis = rows) and/or one CSR."""

    n: int
    arrays: Mapping[str, npt.NDArray[Any]]
    csr: CsrParts | None = None
    #: name -> (values, offsets): row i holds ``values[offsets[i]:offsets[i + 1]]`` (text as
    #: its utf-8 bytes); read back as arrays ``<name>.values`` and ``<name>.offsets``
    ragged: Mapping[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (_, offsets) in self.ragged.items():
            if len(offsets) != self.n + 1:
                raise ValueError(f"ragged {name!r} has {len(offsets) - 1} rows, not {self.n}")
        for name, array in self.arrays.items():
            if array.shape[:1] != (self.n,):
                raise ValueError(f"array {name!r} has shape {array.shape}, not {self.n} rows")
        if self.csr is not None and len(self.csr.indptr) != self.n + 1:
            raise ValueError(f"the CSR matrix has {len(self.csr.indptr) - 1} rows, not {self.n}")


@dataclass(frozen=True)
class Encoded:
    """One segment: its rows' array slices (``parts``) and the fingerprint of their content
    (``content``, cheap: no compression). Its file (:attr:`layout`, :attr:`buffers`, the
    file's :attr:`fingerprint`) is made only when asked for: a segment whose content is
    already stored is linked without compressing it again."""

    rows: int
    parts: tuple[tuple[str, npt.NDArray[Any]], ...]
    content: str
    packed_names: frozenset[str] = frozenset()

    @cached_property
    def _file(self) -> tuple[dict[str, list[Any]], list[memoryview], str]:
        arrays = []
        codecs: dict[str, list[Any]] = {}
        for name, a in self.parts:
            if name in self.packed_names and a.nbytes >= _PACK_BYTES:  # text: lz4, 3-8x
                raw_size = a.nbytes
                a = np.frombuffer(lz4.block.compress(a.data, store_size=False), dtype=np.uint8)
                codecs[name] = ["lz4", raw_size]
            arrays.append((name, a))
        offsets = aligned_offsets(a.nbytes for _, a in arrays)
        layout = {
            name: [offset, a.dtype.str, list(a.shape), *codecs.get(name, [])]
            for (name, a), offset in zip(arrays, offsets, strict=True)
        }
        buffers = [a.reshape(-1).data.cast("B") for _, a in arrays]
        return layout, buffers, _digest(buffers, offsets)

    @property
    def layout(self) -> dict[str, list[Any]]:
        """name -> [offset, dtype, shape] (+ [codec, raw bytes] where compressed)."""
        return self._file[0]

    @property
    def buffers(self) -> list[memoryview]:
        return self._file[1]

    @property
    def fingerprint(self) -> str:
        """xxh3-128 of the file's bytes: the file's name, checked when it is read."""
        return self._file[2]

    @property
    def nbytes(self) -> int:
        offsets = aligned_offsets(b.nbytes for b in self.buffers)
        return (offsets[-1] + self.buffers[-1].nbytes) if self.buffers else 0

    def write(self, writer: Any) -> None:
        write_aligned(writer, self.buffers)


def _digest(buffers: Sequence[memoryview], offsets: Sequence[int]) -> str:
    """xxh3-128 of exactly the bytes :func:`write_aligned` writes (buffers and zero padding):
    the fingerprint names the file's content, so a reader can check the file against it."""
    digest = xxhash.xxh3_128()
    written = 0
    for buffer, offset in zip(buffers, offsets, strict=True):
        if offset > written:
            digest.update(bytes(offset - written))
        digest.update(buffer)
        written = offset + buffer.nbytes
    return digest.hexdigest()


def file_fingerprint(data: bytes | bytearray | memoryview) -> str:
    """The fingerprint of a segment file's bytes (what its name holds)."""
    return xxhash.xxh3_128(data).hexdigest()


def _parts(rows: Rows, start: int, end: int) -> list[tuple[str, npt.NDArray[Any]]]:
    parts = [(name, array[start:end]) for name, array in rows.arrays.items()]
    if rows.csr is not None:
        ip = rows.csr.indptr
        lo, hi = int(ip[start]), int(ip[end])
        parts += [
            ("csr.data", rows.csr.data[lo:hi]),
            ("csr.indices", rows.csr.indices[lo:hi]),
            ("csr.indptr", ip[start : end + 1] - ip[start]),
        ]
    for name, (values, offsets) in rows.ragged.items():
        lo, hi = int(offsets[start]), int(offsets[end])
        local = offsets[start : end + 1] - offsets[start]
        if hi - lo < 2**31:
            local = local.astype(np.int32)  # half the bytes of int64 offsets
        parts += [(f"{name}.values", values[lo:hi]), (f"{name}.offsets", local)]
    return parts


def encode(rows: Rows, ends: IntArray) -> list[Encoded]:
    """The segments of ``rows`` ending at ``ends`` (see :func:`cut`)."""
    out = []
    start = 0
    packed = frozenset(f"{name}.values" for name in rows.ragged)
    for end in ends.tolist():
        parts = tuple((name, np.ascontiguousarray(a)) for name, a in _parts(rows, start, end))
        described = [(name, a.dtype.str, a.shape) for name, a in parts]
        digest = xxhash.xxh3_128(repr(described).encode())
        for _, a in parts:
            digest.update(a.reshape(-1).data.cast("B"))
        out.append(Encoded(end - start, parts, digest.hexdigest(), packed))
        start = end
    return out


def _view(
    layout: Mapping[str, Any], raw: bytes | bytearray, name: str, where: str
) -> npt.NDArray[Any]:
    """Array ``name`` of one segment's bytes (a read-only view; decompressed, a new array,
    where the layout names a codec)."""
    try:
        offset, dtype, shape, *codec = layout[name]
    except (KeyError, ValueError):
        raise ArtifactError(f"{where}: a segment lacks array {name!r}; rematerialise") from None
    count = int(np.prod(shape)) if shape else 1
    flat = np.frombuffer(raw, dtype=np.dtype(dtype), count=count, offset=int(offset))
    if not codec:
        return flat.reshape(shape)
    if codec[0] != "lz4" or len(codec) != 2:
        raise ArtifactError(
            f"{where}: array {name!r} is compressed with {codec[0]!r}; this lester-dagster reads "
            "'lz4'. Upgrade lester-dagster or rematerialise the asset"
        )
    try:
        data = lz4.block.decompress(flat, uncompressed_size=int(codec[1]))
    except lz4.block.LZ4BlockError as exc:
        raise ArtifactError(f"{where}: array {name!r} cannot be decompressed ({exc})") from exc
    return np.frombuffer(data, dtype=np.uint8)


@dataclass
class _Fill:
    values: npt.NDArray[Any]
    offsets: npt.NDArray[Any]
    filled: int = 0


def assemble(
    names: Mapping[str, tuple[str, Sequence[int]]],
    segments: Sequence[tuple[Mapping[str, Any], bytes | bytearray]],
    n: int,
    csr: tuple[str, str, int] | None,
    where: str,
    ragged: Mapping[str, tuple[str, str, int]] | None = None,
) -> tuple[dict[str, npt.NDArray[Any]], CsrParts | None]:
    """The arrays (and CSR) of ``n`` rows from their segments' layouts and bytes.

    ``names``: array name -> (dtype, shape after the first axis); ``csr``: (data dtype,
    indices dtype, nnz) or None. Every array is allocated once (writable) and filled segment
    by segment."""
    arrays = {
        name: np.empty((n, *tail), dtype=np.dtype(dtype)) for name, (dtype, tail) in names.items()
    }
    parts: CsrParts | None = None
    if csr is not None:
        data_dtype, index_dtype, nnz = csr
        parts = CsrParts(
            np.empty(nnz, dtype=np.dtype(data_dtype)),
            np.empty(nnz, dtype=np.dtype(index_dtype)),
            np.empty(n + 1, dtype=np.dtype(index_dtype)),
        )
        parts.indptr[0] = 0
    uneven: dict[str, _Fill] = {}
    for name, (values_dtype, offsets_dtype, total) in (ragged or {}).items():
        offsets = np.empty(n + 1, dtype=np.dtype(offsets_dtype))
        offsets[0] = 0
        uneven[name] = _Fill(np.empty(total, dtype=np.dtype(values_dtype)), offsets)
    row = at = 0
    for layout, raw in segments:
        pieces = {name: _view(layout, raw, name, where) for name in arrays}
        lengths = {len(piece) for piece in pieces.values()}
        local = None
        if parts is not None:
            local = _view(layout, raw, "csr.indptr", where)
            lengths.add(len(local) - 1)
        for name in uneven:
            lengths.add(len(_view(layout, raw, f"{name}.offsets", where)) - 1)
        if len(lengths) != 1:
            raise ArtifactError(f"{where}: a segment's arrays disagree on their rows")
        length = lengths.pop()
        if row + length > n:
            raise ArtifactError(f"{where}: the segments hold more than {n} rows; rematerialise")
        for name, piece in pieces.items():
            arrays[name][row : row + length] = piece
        if parts is not None and local is not None:
            width = int(local[-1])
            if at + width > len(parts.data):
                raise ArtifactError(f"{where}: the segments hold more entries than the manifest")
            parts.data[at : at + width] = _view(layout, raw, "csr.data", where)
            parts.indices[at : at + width] = _view(layout, raw, "csr.indices", where)
            parts.indptr[row + 1 : row + 1 + length] = local[1:] + at
            at += width
        for name, fill in uneven.items():
            local = _view(layout, raw, f"{name}.offsets", where)
            width = int(local[-1]) if len(local) else 0
            if len(local) != length + 1 or fill.filled + width > len(fill.values):
                raise ArtifactError(f"{where}: ragged {name!r} does not fit its rows")
            piece = _view(layout, raw, f"{name}.values", where)
            fill.values[fill.filled : fill.filled + width] = piece
            fill.offsets[row + 1 : row + 1 + length] = local[1:] + fill.filled
            fill.filled += width
        row += length
    short = any(fill.filled != len(fill.values) for fill in uneven.values())
    if row != n or short or (parts is not None and at != len(parts.data)):
        raise ArtifactError(
            f"{where}: the segments hold {row} rows, the manifest says {n}; rematerialise the asset"
        )
    for name, fill in uneven.items():
        arrays[f"{name}.values"], arrays[f"{name}.offsets"] = fill.values, fill.offsets
    return arrays, parts


def spec(
    rows: Rows,
    encoded: Sequence[Encoded],
    files: Sequence[str],
    stored: Sequence[tuple[str, Mapping[str, Any]] | None] | None = None,
) -> dict[str, Any]:
    """The manifest's description of ``rows`` stored as ``encoded`` in the files named
    ``files`` (one per segment, in order); ``stored`` gives, per segment, the (file
    fingerprint, layout) of a file that holds its content already (None: the segment's own)."""
    known = list(stored) if stored is not None else [None] * len(encoded)
    csr = None
    if rows.csr is not None:
        csr = [rows.csr.data.dtype.str, rows.csr.indices.dtype.str, len(rows.csr.data)]
        if rows.csr.indptr.dtype != rows.csr.indices.dtype:
            raise ValueError("the CSR matrix's indptr and indices must share one dtype")
    return {
        "encoding": "segments",
        "rows": rows.n,
        "arrays": {name: [a.dtype.str, list(a.shape[1:])] for name, a in rows.arrays.items()},
        "csr": csr,
        "ragged": {
            name: [values.dtype.str, offsets.dtype.str, int(offsets[-1] - offsets[0])]
            for name, (values, offsets) in rows.ragged.items()
        },
        "segments": [
            {
                "file": name,
                "rows": e.rows,
                "content": e.content,
                "fingerprint": e.fingerprint if k is None else k[0],
                "layout": e.layout if k is None else dict(k[1]),
            }
            for name, e, k in zip(files, encoded, known, strict=True)
        ],
    }


def read(
    described: Mapping[str, Any], data: Mapping[str, bytes | bytearray], where: str
) -> tuple[dict[str, npt.NDArray[Any]], CsrParts | None]:
    """The arrays (and CSR) a :func:`spec` describes, from its files' bytes in ``data``."""
    try:
        names = {n: (str(d), tuple(int(x) for x in t)) for n, (d, t) in described["arrays"].items()}
        csr = described["csr"]
        parts = [(s["layout"], data[s["file"]]) for s in described["segments"]]
        n = int(described["rows"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{where}: malformed segment description ({exc}); rematerialise the asset"
        ) from exc
    csr_spec = None if csr is None else (str(csr[0]), str(csr[1]), int(csr[2]))
    try:
        uneven = {
            name: (str(v), str(o), int(total))
            for name, (v, o, total) in (described.get("ragged") or {}).items()
        }
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: malformed ragged arrays ({exc}); rematerialise") from exc
    return assemble(names, parts, n, csr_spec, where, uneven)


# -- which files exist already -------------------------------------------------------------------
@dataclass(frozen=True)
class Known:
    """A local file holding a segment's content: where, its sha256 and size (from the
    manifest), the file's fingerprint (its name) and layout, and, when this process wrote it or
    checked its bytes, the (inode, mtime) it had then (``stamp``)."""

    path: Path
    sha256: str
    size: int
    fingerprint: str
    layout: Mapping[str, Any]
    stamp: tuple[int, int] | None = None

    def checked(self) -> Known | None:
        """This file, stamped as it is now (just written or verified by this process)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return replace(self, stamp=(st.st_ino, st.st_mtime_ns))

    def link(self, target: Path) -> bool:
        """Hard-link this file to ``target``; False when it cannot or must not (collected
        meanwhile, another filesystem, no hard links, another size, changed since it was
        stamped, or, unstamped, bytes that do not match its fingerprint): the caller writes the
        segment instead, so a damaged file is never carried into a new version."""
        try:
            st = self.path.stat()
            if st.st_size != self.size:
                return False
            if self.stamp is not None:
                if (st.st_ino, st.st_mtime_ns) != self.stamp:
                    return False
            elif file_fingerprint(self.path.read_bytes()) != self.fingerprint:
                return False
            os.link(self.path, target)
        except OSError:
            return False
        return True


def stored_segments(content: Any) -> dict[str, dict[str, Any]]:
    """Every segment a manifest's ``content`` describes (at any depth), by its file name in the
    manifest: ``{"content": ..., "fingerprint": ..., "layout": ...}``."""
    found: dict[str, dict[str, Any]] = {}
    stack = [content]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            listed = item.get("segments")
            if item.get("encoding") == "segments" and isinstance(listed, list):
                for segment in listed:
                    if isinstance(segment, Mapping) and "content" in segment:
                        found[str(segment["file"])] = dict(segment)
                # a description's other values may nest descriptions (a matrix's dense
                # columns); its segments' layouts do not
                stack.extend(v for k, v in item.items() if k != "segments")
            else:
                stack.extend(v for v in item.values() if isinstance(v, (Mapping, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, Mapping))
    return found


class Catalogue:
    """The segment files this process wrote, linked or checked recently, by the fingerprint of
    their content (most recent ``limit`` kept): any artifact may link any of them."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Known] = OrderedDict()

    def get(self, fingerprint: str) -> Known | None:
        return self._items.get(fingerprint)

    def put(self, fingerprint: str, known: Known) -> None:
        self._items.pop(fingerprint, None)
        self._items[fingerprint] = known
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


CATALOGUE = Catalogue()
"""The process-wide catalogue the store's writers consult and fill."""
