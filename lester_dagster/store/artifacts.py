"""Save and load artifacts: frames, labels (y), feature matrices (X) and Python objects.

An artifact is a directory ``<root>``; every save writes a new version and publishes it
atomically (:mod:`lester_dagster.store.atomic`), so readers see the previous or the new version,
never a mix, even if the writer is killed. Files of a version::

    <root>/manifest.json                    commit point: Manifest (lester_dagster.store.manifest)
    <root>/v<seq>-<token>/data.parquet      frame: user columns; labels: one column "y";
                                            single provenance as __lester_prov__<source> columns
    <root>/v<seq>-<token>/prov.parquet      multi provenance of a frame / labels (one row per
                                            monomial), and X's provenance (single or multi)
    <root>/v<seq>-<token>/X.bin|.npy|.npz   X: CSR/CSC raw buffers | dense numpy | other sparse
                                            or compressed, scipy (lester_dagster.store.matrices)
    <root>/v<seq>-<token>/keys-<i>.parquet  key index of a source (manifest content.key_indexes)
    <root>/v<seq>-<token>/object.pkl        one Python object (a model with its forgetting state):
    <root>/v<seq>-<token>/buffers.bin       pickle protocol 5 stream + its raw array buffers
                                            (object.joblib instead when saved compressed)

The manifest's ``content`` holds what loading needs (dtypes, layout, X's shape and blocks with
their source-column lineage as ``[source, column]`` pairs, the labels' inputs and lineage, a
provenance summary with rows per source); ``metadata`` is the caller's. Loading checks every
file's sha256 against the manifest before parsing anything (``verify=False`` skips the check).

``load_object`` unpickles: load only artifacts your own pipelines wrote.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.features.matrix import Block, FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, Prov, Result
from lester_dagster.store import links, pickling, segmented, segments
from lester_dagster.store.atomic import (
    StorePath,
    Version,
    as_path,
    is_local,
    new_version,
    read_pointer,
)
from lester_dagster.store.keys import (
    KeyIndexMode,
    KeyResolver,
    Sources,
    key_index_of_table,
    key_index_table,
    key_indexes_to_store,
)
from lester_dagster.store.manifest import (
    FileEntry,
    HashingWriter,
    Manifest,
    read_files,
    read_manifest,
)
from lester_dagster.store.matrices import matrix_file, read_matrix
from lester_dagster.store.tables import (
    check_columns,
    describe_columns,
    frame_of_table,
    prov_columns,
    prov_of_columns,
    prov_of_table,
    prov_summary,
    prov_table,
    read_parquet,
    split_prov_columns,
    table_of_frame,
    write_parquet,
)

__all__ = [
    "Stored",
    "StoredFrame",
    "StoredLabels",
    "StoredMatrix",
    "StoredObject",
    "has_artifact",
    "load_artifact",
    "load_frame",
    "load_key_indexes",
    "load_labels",
    "load_matrix",
    "load_object",
    "save_frame",
    "save_labels",
    "save_matrix",
    "save_object",
    "save_result",
]


@dataclass(frozen=True, eq=False)
class StoredFrame:
    """A loaded frame: user columns, row provenance, the stored key indexes, the manifest."""

    data: pd.DataFrame
    prov: Prov
    key_indexes: Mapping[str, pd.DataFrame]
    manifest: Manifest

    @property
    def keys(self) -> KeyResolver:
        return KeyResolver(self.key_indexes)


@dataclass(frozen=True, eq=False)
class StoredLabels:
    labels: Labels
    key_indexes: Mapping[str, pd.DataFrame]
    manifest: Manifest


@dataclass(frozen=True, eq=False)
class StoredMatrix:
    """A loaded X; ``matrix.resolve`` resolves keys through the stored key indexes."""

    matrix: FeatureMatrix
    key_indexes: Mapping[str, pd.DataFrame]
    manifest: Manifest


@dataclass(frozen=True, eq=False)
class StoredObject:
    value: Any
    manifest: Manifest


Stored: TypeAlias = StoredFrame | StoredLabels | StoredMatrix | StoredObject
"""What :func:`load_artifact` returns, depending on the artifact's kind."""


# -- writing -------------------------------------------------------------------------------------
def _known_segments(
    root: Path, files: Mapping[str, Any], content: Mapping[str, Any]
) -> dict[str, segments.Known]:
    """The segment files a manifest (its ``files`` and ``content``) lists, by content
    fingerprint (unstamped: linking one checks its bytes first)."""
    out = {}
    for name, segment in segments.stored_segments(content).items():
        entry = files.get(name)
        if entry is None:
            continue
        path, sha256, size = (
            (entry.path, entry.sha256, entry.bytes)
            if isinstance(entry, FileEntry)
            else (str(entry["path"]), str(entry["sha256"]), int(entry["bytes"]))
        )
        out[str(segment["content"])] = segments.Known(
            root / path, sha256, size, str(segment["fingerprint"]), segment["layout"]
        )
    return out


def _previous_segments(path: StorePath) -> dict[str, segments.Known]:
    """The segment files of the committed version at local ``path``, by content."""
    base = as_path(path)
    if not is_local(base):
        return {}
    doc = read_pointer(base)
    if doc is None:
        return {}
    return _known_segments(Path(base.path), doc.get("files") or {}, doc.get("content") or {})


def _remember(content: str, known: segments.Known) -> None:
    """Note in the process's catalogue that ``known`` holds the segment ``content`` (just
    written, linked or checked: stamped now)."""
    stamped = known.checked()
    if stamped is not None:
        segments.CATALOGUE.put(content, stamped)


class _Files:
    """Writes the files of one version, recording their checksums for the manifest."""

    def __init__(self, version: Version, previous: Mapping[str, segments.Known] | None = None):
        self.version = version
        self.entries: dict[str, FileEntry] = {}
        self.previous = previous or {}
        self._addressed: dict[str, tuple[FileEntry, str, Mapping[str, Any]]] = {}  # by content
        #: segments written (with their bytes) and linked: what a version rewrote
        self.written = self.linked = self.bytes_written = 0

    def segments(self, prefix: str, rows: segments.Rows, ends: Any) -> dict[str, Any]:
        """``rows`` in row segments ending at ``ends`` (:mod:`lester_dagster.store.segments`):
        a segment whose content a file holds already (in the previous version, or one this
        process wrote or checked) is hard-linked, the others written (text compressed only
        then)."""
        encoded = segments.encode(rows, ends)
        directory = self.version.directory
        local = Path(directory.path) if is_local(directory) else None
        names: list[str] = []
        stored: list[tuple[str, Mapping[str, Any]]] = []
        for i, segment in enumerate(encoded):
            name = f"{prefix}.{i:05d}"
            names.append(name)
            content = segment.content
            if content in self._addressed:  # the same content twice in this artifact
                entry, fingerprint, layout = self._addressed[content]
                self.entries[name] = entry
                stored.append((fingerprint, layout))
                continue
            known = segments.CATALOGUE.get(content) or self.previous.get(content)
            if known is not None and local is not None:
                filename = f"{prefix}-{known.fingerprint}.bin"
                if known.link(local / filename):
                    self.linked += 1
                    entry = FileEntry(self.version.relative(filename), known.sha256, known.size)
                    self.entries[name] = entry
                    self._addressed[content] = (entry, known.fingerprint, known.layout)
                    stored.append((known.fingerprint, known.layout))
                    _remember(content, replace(known, path=local / filename))
                    continue
            filename = f"{prefix}-{segment.fingerprint}.bin"
            self.write(name, filename, segment.write)
            entry = self.entries[name]
            self.written += 1
            self.bytes_written += entry.bytes
            self._addressed[content] = (entry, segment.fingerprint, segment.layout)
            stored.append((segment.fingerprint, segment.layout))
            if local is not None:
                path = local / filename
                _remember(
                    content,
                    segments.Known(
                        path, entry.sha256, entry.bytes, segment.fingerprint, segment.layout
                    ),
                )
        return segments.spec(rows, encoded, names, stored)

    def write(self, name: str, filename: str, dump: Callable[[HashingWriter], None]) -> None:
        with self.version.open(filename) as raw:
            writer = HashingWriter(raw)
            dump(writer)
        self.entries[name] = FileEntry(self.version.relative(filename), writer.sha256, writer.size)

    def parquet(self, name: str, table: pa.Table) -> None:
        self.write(name, f"{name}.parquet", lambda w: write_parquet(table, w))

    def shared(
        self, name: str, filename: str, value: Any, dump: Callable[[HashingWriter], None]
    ) -> None:
        """Write ``value``'s file, or hard-link the file another artifact of this process just
        wrote from the same, unchanged object (:mod:`lester_dagster.store.links`)."""
        target = self.version.directory / filename
        local = Path(target.path) if is_local(target) else None
        linked = links.link(value, local) if local is not None else None
        if linked is not None:
            self.entries[name] = FileEntry(self.version.relative(filename), *linked)
            return
        self.write(name, filename, dump)
        if local is not None:
            entry = self.entries[name]
            links.remember(value, local, entry.sha256, entry.bytes)


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    try:
        out: dict[str, Any] = json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as exc:
        raise UnstorableError(
            f"metadata must be JSON-serialisable ({exc}); convert values to str, int, float, "
            "bool, lists or dicts"
        ) from exc
    return out


def _save(
    path: StorePath,
    kind: str,
    rows: int | None,
    sources: Iterable[str],
    metadata: Mapping[str, Any] | None,
    write: Callable[[_Files], dict[str, Any]],
) -> Manifest:
    meta = _metadata(metadata)
    previous = _previous_segments(path)
    with new_version(path) as version:
        files = _Files(version, previous)
        content = write(files)
        if files.written or files.linked:  # what this version rewrote (shown as metadata)
            content = {**content, "segments_written": files.written}
            content.update(segments_linked=files.linked, segment_bytes_written=files.bytes_written)
        manifest = Manifest(
            kind=kind,
            version=version.name,
            rows=rows,
            sources=tuple(sources),
            files=files.entries,
            content=content,
            metadata=meta,
        )
        version.commit(manifest.to_dict())
    return manifest


def _check_rows(rows: int, prov: Prov, what: str) -> None:
    if not isinstance(prov, Prov):
        raise UnstorableError(f"provenance must be a Prov, got {type(prov).__name__}")
    if prov.n != rows:
        raise UnstorableError(
            f"{what} has {rows} rows but its provenance describes {prov.n}; pass the Prov of "
            "exactly these rows (Result.prov, FeatureMatrix.prov, or prov.take(rows))"
        )


def _write_prov(
    files: _Files, table: pa.Table | None, prov: Prov, *, apart: bool = False
) -> dict[str, Any]:
    """Data table with single provenance appended, or data + prov.parquet (multi, no table, or
    ``apart``). prov.parquet is hard-linked where another artifact just wrote the same Prov."""
    inline = table is not None and prov.single and not apart
    if table is not None:
        if inline:
            for name, ids in prov_columns(prov).items():
                table = table.append_column(name, pa.array(ids, pa.uint64()))
        files.parquet("data", table)
    if not inline:
        files.shared("prov", "prov.parquet", prov, lambda w: write_parquet(prov_table(prov), w))
    return prov_summary(prov)


def _write_keys(files: _Files, indexes: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Per key index, row segments cut by key id (X, y and the model state of the same rows
    share them, and a deletion rewrites the segments holding its keys), or a Parquet file
    (hard-linked where another artifact just wrote the same index) when its columns are not
    plain numbers or text."""
    names: dict[str, Any] = {}
    for i, (source, index) in enumerate(indexes.items()):
        name = f"keys-{i}"
        stored = segmented.frame_rows(index) if index.index.dtype == np.uint64 else None
        if stored is not None:
            rows, described = stored
            ends = segmented.key_ends(index.index.to_numpy())
            names[source] = segmented.frame_segments(files, name, rows, described, ends)
            continue
        names[source] = name

        def dump(w: HashingWriter, index: pd.DataFrame = index) -> None:
            write_parquet(key_index_table(index), w)

        files.shared(name, f"{name}.parquet", index, dump)
    return names


def _refs(refs: Iterable[ColumnRef]) -> list[list[str]]:
    return sorted([ref.source, ref.column] for ref in refs)


# -- reading -------------------------------------------------------------------------------------
def _read(path: StorePath, kind: str, verify: bool) -> tuple[Manifest, dict[str, bytes]]:
    manifest, data = read_files(path, verify=verify)
    base = as_path(path)
    if verify and is_local(base):  # checked segment files: the next versions may link them
        for content, known in _known_segments(
            Path(base.path), manifest.files, manifest.content
        ).items():
            _remember(content, known)
    if manifest.kind != kind:
        raise ArtifactError(
            f"the artifact at {path} is a {manifest.kind!r}, not a {kind!r}; load it with "
            f"load_{manifest.kind} (or load_artifact)"
        )
    return manifest, data


def _prov(manifest: Manifest, data: Mapping[str, bytes], single_keys: Mapping[str, Any]) -> Prov:
    rows = int(manifest.rows or 0)
    multi = manifest.content["prov"]["layout"] == "multi"
    if "segments" in manifest.content["prov"]:
        arrays, _ = segments.read(manifest.content["prov"]["segments"], data, manifest.version)
        return prov_of_columns(rows, arrays, manifest.sources)
    if "prov" in data:
        table = read_parquet(data["prov"], f"{manifest.files['prov'].path}")
        return prov_of_table(table, rows, manifest.sources, multi=multi)
    return prov_of_columns(rows, single_keys, manifest.sources)


def _key_indexes(manifest: Manifest, data: Mapping[str, bytes]) -> dict[str, pd.DataFrame]:
    out = {}
    for source, stored in manifest.content.get("key_indexes", {}).items():
        if isinstance(stored, Mapping):  # row segments
            out[source] = segmented.read_frame(stored, data, f"{manifest.version} keys")
            continue
        where = manifest.files[stored].path
        out[source] = key_index_of_table(read_parquet(data[stored], where), where)
    return out


def _key_files(manifest: Manifest) -> list[str]:
    """The files holding the key indexes of ``manifest``."""
    names: list[str] = []
    for stored in manifest.content.get("key_indexes", {}).values():
        if isinstance(stored, Mapping):
            names += [s["file"] for s in stored["segments"]]
        else:
            names.append(stored)
    return names


def _check_length(manifest: Manifest, got: int, path: StorePath) -> None:
    if manifest.rows != got:
        raise ArtifactError(
            f"the artifact at {path} should hold {manifest.rows} rows but its data has {got}; "
            "rematerialise the asset"
        )


# -- frames --------------------------------------------------------------------------------------
def save_frame(
    path: StorePath,
    data: pd.DataFrame,
    prov: Prov,
    *,
    sources: Sources | None = None,
    metadata: Mapping[str, Any] | None = None,
    key_index: KeyIndexMode = "referenced",
) -> Manifest:
    """Store a frame with its row provenance (and the key indexes of ``sources``) at ``path``."""
    if not isinstance(data, pd.DataFrame):
        raise UnstorableError(f"save_frame stores a pandas DataFrame, got {type(data).__name__}")
    _check_rows(len(data), prov, "the frame")
    check_columns(data)
    # row segments where the columns allow it (numbers, pyarrow-backed text) and the rows have
    # single provenance: a deletion rewrites the segments holding its rows; else Parquet
    stored = segmented.frame_rows(data) if segmented.segmentable(prov) else None
    table = table_of_frame(data) if stored is None else None
    columns = describe_columns(data)
    indexes = key_indexes_to_store(prov, sources, key_index)

    def write(files: _Files) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": columns}
        if stored is not None:
            rows, described = stored
            ends = segmented.ends_of(prov)
            out["data"] = segmented.frame_segments(files, "data", rows, described, ends)
            out["prov"] = segmented.prov_segments(files, prov, ends)
        else:
            out["prov"] = _write_prov(files, table, prov)
        return {**out, "key_indexes": _write_keys(files, indexes)}

    return _save(path, "frame", prov.n, prov.sources, metadata, write)


def save_result(
    path: StorePath,
    result: Result,
    *,
    metadata: Mapping[str, Any] | None = None,
    key_index: KeyIndexMode = "referenced",
) -> Manifest:
    """Store an executed frame: its data, provenance and its sources' key indexes."""
    return save_frame(
        path,
        result.to_pandas(),
        result.prov,
        sources=result.sources,
        metadata=metadata,
        key_index=key_index,
    )


def load_frame(path: StorePath, *, verify: bool = True) -> StoredFrame:
    """Load a frame stored by :func:`save_frame` (checksums verified unless ``verify=False``)."""
    manifest, data = _read(path, "frame", verify)
    described = manifest.content.get("data")
    single_keys: dict[str, Any] = {}
    if described is not None:  # row segments
        frame = segmented.read_frame(described, data, str(path))
    else:
        where = manifest.files["data"].path
        table, single_keys = split_prov_columns(read_parquet(data["data"], where))
        frame = frame_of_table(table, int(manifest.rows or 0), manifest.content["schema"])
    _check_length(manifest, len(frame), path)
    return StoredFrame(
        frame, _prov(manifest, data, single_keys), _key_indexes(manifest, data), manifest
    )


# -- labels --------------------------------------------------------------------------------------
def save_labels(
    path: StorePath,
    labels: Labels,
    *,
    sources: Sources | None = None,
    metadata: Mapping[str, Any] | None = None,
    key_index: KeyIndexMode = "referenced",
) -> Manifest:
    """Store y (a :class:`Labels`) with its provenance, inputs and source-column lineage."""
    y = np.asarray(labels.y)
    if y.ndim != 1:
        raise UnstorableError(f"labels must be one-dimensional, got shape {y.shape}")
    _check_rows(len(y), labels.prov, "y")
    try:
        table = pa.table({"y": pa.array(y)})
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise UnstorableError(
            f"y cannot be stored as Parquet ({exc}); give it one type, e.g. y.astype(int)"
        ) from exc
    indexes = key_indexes_to_store(labels.prov, sources, key_index)
    in_segments = segmented.segmentable(labels.prov) and y.dtype.kind in "biuf"

    def write(files: _Files) -> dict[str, Any]:
        # provenance apart from y: X of the same rows wrote the same files (linked, not copied)
        stored: dict[str, Any] = {}
        if in_segments:
            ends = segmented.ends_of(labels.prov)
            stored["values"] = files.segments("y", segments.Rows(len(y), {"y": y}), ends)
            summary = segmented.prov_segments(files, labels.prov, ends)
        else:
            summary = _write_prov(files, table, labels.prov, apart=True)
        return {
            **stored,
            "dtype": y.dtype.str,
            "inputs": list(labels.inputs),
            "lineage": _refs(labels.lineage),
            "prov": summary,
            "key_indexes": _write_keys(files, indexes),
        }

    return _save(path, "labels", labels.prov.n, labels.prov.sources, metadata, write)


def load_labels(path: StorePath, *, verify: bool = True) -> StoredLabels:
    """Load y stored by :func:`save_labels`, with its original numpy dtype."""
    manifest, data = _read(path, "labels", verify)
    single_keys: dict[str, Any] = {}
    if "values" in manifest.content:
        arrays, _ = segments.read(manifest.content["values"], data, str(path))
        y = arrays["y"]
    else:
        table, single_keys = split_prov_columns(
            read_parquet(data["data"], manifest.files["data"].path)
        )
        y = np.asarray(table.column("y").to_numpy(zero_copy_only=False))
    expected = np.dtype(manifest.content["dtype"])
    if y.dtype != expected:
        y = y.astype(expected)
    _check_length(manifest, len(y), path)
    content = manifest.content
    labels = Labels(
        y,
        _prov(manifest, data, single_keys),
        tuple(content["inputs"]),
        frozenset(ColumnRef(s, c) for s, c in content["lineage"]),
    )
    return StoredLabels(labels, _key_indexes(manifest, data), manifest)


# -- feature matrices ----------------------------------------------------------------------------
def save_matrix(
    path: StorePath,
    matrix: FeatureMatrix,
    *,
    sources: Sources | None = None,
    metadata: Mapping[str, Any] | None = None,
    key_index: KeyIndexMode = "referenced",
    compress: bool = False,
) -> Manifest:
    """Store X (:mod:`lester_dagster.store.matrices`: CSR/CSC as raw buffers, dense as .npy,
    other sparse formats with scipy's .npz), its provenance and its blocks.

    ``compress`` zips a sparse X (.npz: smaller, slower); a dense X is stored raw.
    """
    X = matrix.X
    spec, suffix, dump = matrix_file(X, compress)
    filename = f"X{suffix}"
    n_rows, n_cols = (int(d) for d in X.shape)
    _check_rows(n_rows, matrix.prov, "X")
    for b in matrix.blocks:
        if not 0 <= b.start <= b.stop <= n_cols:
            raise UnstorableError(
                f"block {b.name!r} spans columns [{b.start}, {b.stop}) outside X's {n_cols} columns"
            )
    indexes = key_indexes_to_store(matrix.prov, sources, key_index)
    blocks = [
        {
            "name": b.name,
            "start": b.start,
            "stop": b.stop,
            "inputs": list(b.inputs),
            "lineage": _refs(b.lineage),
        }
        for b in matrix.blocks
    ]

    in_segments = not compress and sp.issparse(X) and X.format == "csr"
    in_segments = in_segments and segmented.segmentable(matrix.prov)

    def write(files: _Files) -> dict[str, Any]:
        if in_segments:  # row segments; the model's state links them (same content)
            ends = segmented.ends_of(matrix.prov)
            x_spec = {**segmented.csr_base(X), **segmented.csr_segments(files, "X", X, ends)}
            prov = segmented.prov_segments(files, matrix.prov, ends)
        else:
            if compress:
                files.write("X", filename, dump)
            else:  # the model's state holds the same X: it links this file instead of a copy
                files.shared("X", filename, X, dump)
            x_spec, prov = spec, _write_prov(files, None, matrix.prov)
        return {
            "X": x_spec,
            "blocks": blocks,
            "prov": prov,
            "key_indexes": _write_keys(files, indexes),
        }

    return _save(path, "matrix", n_rows, matrix.prov.sources, metadata, write)


def load_matrix(path: StorePath, *, verify: bool = True) -> StoredMatrix:
    """Load X stored by :func:`save_matrix` as a :class:`FeatureMatrix` whose ``resolve``
    looks keys up in the stored key indexes (keys not in this X resolve to nothing)."""
    manifest, data = _read(path, "matrix", verify)
    described = manifest.content["X"]
    if described.get("encoding") == "segments":
        X = segmented.read_csr(described, data, str(path))
    else:
        X = read_matrix(described, data["X"], manifest.files["X"].path)
    blocks = tuple(
        Block(
            b["name"],
            int(b["start"]),
            int(b["stop"]),
            tuple(b["inputs"]),
            frozenset(ColumnRef(s, c) for s, c in b["lineage"]),
        )
        for b in manifest.content["blocks"]
    )
    indexes = _key_indexes(manifest, data)
    matrix = FeatureMatrix(X, _prov(manifest, data, {}), blocks, KeyResolver(indexes))
    return StoredMatrix(matrix, indexes, manifest)


# -- objects -------------------------------------------------------------------------------------
def save_object(
    path: StorePath,
    value: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    rows: int | None = None,
    sources: Iterable[str] = (),
    compress: int = 0,
    shared: Mapping[str, Any] | None = None,
    row_prov: Prov | None = None,
) -> Manifest:
    """Store one Python object (e.g. a model and its forgetting state).

    By default as pickle protocol 5 with its array buffers written raw beside the stream
    (:mod:`lester_dagster.store.pickling`: ``object.pkl`` + ``buffers.bin``), which writes and
    loads large arrays at file speed; ``compress`` > 0 uses joblib with zlib at that level
    (``object.joblib``: smaller, slower). Objects that refer to each other (a tracker and the
    transformer inside a ColumnTransformer) must be saved *together*, in one object (a tuple,
    dict or dataclass), so the references stay shared after loading. ``rows``/``sources`` (what
    the object was fitted on) go to the manifest for reports.

    ``shared`` names matrices (numpy arrays, scipy sparse) that ``value`` refers to and that are
    stored as matrix files of their own (``shared-<name>.bin|npy|npz``) instead of inside the
    pickle; one that another artifact of this process just stored (X_train's X, the same
    object) is hard-linked, not written again (:mod:`lester_dagster.store.links`). Ignored
    when ``compress`` is set.

    ``shared`` may also name DataFrames (the training rows, key indexes): those of numeric
    and pyarrow-backed text columns are stored in row segments of their own (a key index cut by
    key id, as X's key indexes are, so they are linked), the others pickled with the object.

    ``row_prov`` is the provenance of the rows the object keeps per-row arrays of (a model
    state's training rows). With it, a shared CSR matrix or frame of these rows is stored in
    row segments as X is (:func:`save_matrix`: X_train's segments are linked), and so is every
    out-of-band buffer of whole rows (``n`` rows of the same width, at least 64 KiB): a
    deletion then rewrites the segments that held its rows, not the whole object.
    """
    kind = type(value)
    described = {"type": f"{kind.__module__}.{kind.__qualname__}"}

    def write(files: _Files) -> dict[str, Any]:
        try:
            if compress:
                files.write(
                    "object", "object.joblib", lambda w: joblib.dump(value, w, compress=compress)
                )
                return {**described, "format": "joblib", "joblib": joblib.__version__}
            ends = (
                segmented.ends_of(row_prov)
                if row_prov is not None and segmented.segmentable(row_prov)
                else None
            )
            n = row_prov.n if row_prov is not None else 0
            apart: dict[str, Any] = {}
            external: dict[str, Any] = {}
            for name, item in (shared or {}).items():
                if isinstance(item, pd.DataFrame):
                    framed = _shared_frame(files, f"shared-{name}", item, ends, n)
                    if framed is not None:  # else pickled with the object
                        apart[name], external[name] = framed, item
                    continue
                external[name] = item
                csr = sp.issparse(item) and item.format == "csr"
                if ends is not None and csr and item.shape[0] == n:
                    stored = segmented.csr_segments(files, f"shared-{name}", item, ends)
                    apart[name] = {**segmented.csr_base(item), **stored}
                    continue
                spec, suffix, dump = matrix_file(item)
                files.shared(f"shared-{name}", f"shared-{name}{suffix}", item, dump)
                apart[name] = spec
            stream = io.BytesIO()
            views = pickling.collect(value, stream, external)
            # buffers of whole rows (n rows of w bytes: the training rows' arrays) go to row
            # segments; the others, one after the other, to buffers.bin
            blocks: dict[str, npt.NDArray[np.uint8]] = {}
            rest: list[memoryview] = []
            for i, view in enumerate(views):
                whole_rows = n > 0 and view.nbytes % n == 0
                if ends is not None and whole_rows and view.nbytes >= segmented.ROW_BUFFER_BYTES:
                    blocks[str(i)] = np.frombuffer(view, dtype=np.uint8).reshape(n, -1)
                else:
                    rest.append(view)
            by_rows = None
            if blocks:  # one segment file per row range holds every such buffer's rows
                by_rows = files.segments("rows", segments.Rows(n, blocks), ends)
            spans: pickling.Spans = []

            def dump_buffers(w: HashingWriter) -> None:
                spans.extend(pickling.write_aligned(w, rest))

            files.write("buffers", "buffers.bin", dump_buffers)

            def dump_stream(w: HashingWriter) -> None:
                w.write(stream.getbuffer())

            files.write("object", "object.pkl", dump_stream)
            return {
                **described,
                "format": "pickle5",
                "buffers": spans,
                "row_buffers": by_rows,
                "shared": apart,
            }
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise UnstorableError(
                f"{type(value).__name__} cannot be pickled ({exc}); everything it refers to "
                "must be picklable: keep functions at module level (lambdas and local "
                "functions are not) and drop open files, locks and connections"
            ) from exc

    return _save(path, "object", rows, sources, metadata, write)


def _shared_frame(
    files: _Files, prefix: str, frame: pd.DataFrame, ends: npt.NDArray[np.intp] | None, n: int
) -> dict[str, Any] | None:
    """A frame an object refers to, in row segments: cut by key id where it is a key index
    (indexed by uint64 key ids), as the object's rows where it has as many rows; None when its
    columns cannot be segmented (it is then pickled with the object)."""
    stored = segmented.frame_rows(frame)
    if stored is None:
        return None
    rows, described = stored
    if frame.index.dtype == np.uint64:  # a key index: cut by key id, as X's key indexes
        cuts = segmented.key_ends(frame.index.to_numpy())
    elif ends is not None and len(frame) == n:
        cuts = ends
    else:
        cuts = np.asarray([len(frame)], dtype=np.intp)
    return segmented.frame_segments(files, prefix, rows, described, cuts)


def _read_shared(name: str, spec: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> Any:
    """A value an object's stream refers to by ``name``, stored apart as ``spec`` says."""
    if spec.get("layout") == "frame":
        return segmented.read_frame(spec, data, where)
    if spec.get("encoding") == "segments":
        return segmented.read_csr(spec, data, where)
    return read_matrix(spec, data[f"shared-{name}"], where)


def _buffers(content: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> list[memoryview]:
    """An object's out-of-band buffers in pickling order: those in buffers.bin (at their
    spans) and those stored as row segments (``row_buffers``, by position), all writable."""
    blob = bytearray(data["buffers"])
    view = memoryview(blob)
    rest = []
    for offset, length in content["buffers"]:
        if offset < 0 or length < 0 or offset + length > len(blob):  # load_object says where
            raise ValueError(
                f"buffer span [{offset}, {length}] lies outside the {len(blob)}-byte buffer file"
            )
        rest.append(view[offset : offset + length])
    described = content.get("row_buffers")
    by_rows = segments.read(described, data, where)[0] if described else {}
    out: list[memoryview] = []
    for i in range(len(rest) + len(by_rows)):
        block = by_rows.get(str(i))
        if block is None:
            if not rest:
                raise ValueError(f"buffer {i} is missing")
            out.append(rest.pop(0))
            continue
        out.append(block.reshape(-1).data.cast("B"))
    return out


def load_object(path: StorePath, *, verify: bool = True) -> StoredObject:
    """Load an object stored by :func:`save_object` (unpickles: trusted stores only)."""
    manifest, data = _read(path, "object", verify)
    form = manifest.content.get("format", "joblib")
    where = manifest.files["object"].path
    try:
        if form == "joblib":
            return StoredObject(joblib.load(io.BytesIO(data["object"])), manifest)
        if form == "pickle5":
            apart = {
                name: _read_shared(name, spec, data, where)
                for name, spec in manifest.content.get("shared", {}).items()
            }
            value = pickling.load_parts(
                data["object"], _buffers(manifest.content, data, where), external=apart
            )
            return StoredObject(value, manifest)
    except (KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ArtifactError(f"{where} is not a readable {form} object ({exc})") from exc
    raise ArtifactError(
        f"{where} is stored as {form!r}; this lester-dagster reads 'pickle5' and 'joblib'. "
        "Upgrade lester-dagster or rematerialise the asset"
    )


# -- any kind ------------------------------------------------------------------------------------
_LOADERS: dict[str, Callable[..., Stored]] = {
    "frame": load_frame,
    "labels": load_labels,
    "matrix": load_matrix,
    "object": load_object,
}


def load_artifact(path: StorePath, *, verify: bool = True) -> Stored:
    """Load whatever artifact is at ``path`` (dispatching on the manifest's kind)."""
    kind = read_manifest(path).kind  # raises ArtifactNotFoundError if nothing was committed
    loader = _LOADERS.get(kind)
    if loader is None:
        raise ArtifactError(
            f"the artifact at {path} has kind {kind!r}; this lester-dagster loads "
            f"{sorted(_LOADERS)}. Upgrade lester-dagster or rematerialise the asset"
        )
    return loader(path, verify=verify)


def load_key_indexes(path: StorePath, *, verify: bool = True) -> dict[str, pd.DataFrame]:
    """Only the key indexes of the artifact at ``path`` (source -> key id -> key values),
    without reading its data: what resolving keys to key ids needs."""
    manifest = read_manifest(path)
    manifest, data = read_files(path, _key_files(manifest), verify=verify)
    return _key_indexes(manifest, data)


def has_artifact(path: StorePath) -> bool:
    """True if an artifact was committed at ``path``."""
    return read_pointer(path) is not None
