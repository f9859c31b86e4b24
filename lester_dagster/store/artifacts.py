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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.features.matrix import Block, FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, Prov, Result
from lester_dagster.store import links, pickling
from lester_dagster.store.atomic import StorePath, Version, is_local, new_version, read_pointer
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
class _Files:
    """Writes the files of one version, recording their checksums for the manifest."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.entries: dict[str, FileEntry] = {}

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
    with new_version(path) as version:
        files = _Files(version)
        content = write(files)
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


def _write_keys(files: _Files, indexes: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """One Parquet file per key index (hard-linked where another artifact just wrote the same
    index, as y after X)."""
    names = {}
    for i, (source, index) in enumerate(indexes.items()):
        name = names[source] = f"keys-{i}"

        def dump(w: HashingWriter, index: pd.DataFrame = index) -> None:
            write_parquet(key_index_table(index), w)

        files.shared(name, f"{name}.parquet", index, dump)
    return names


def _refs(refs: Iterable[ColumnRef]) -> list[list[str]]:
    return sorted([ref.source, ref.column] for ref in refs)


# -- reading -------------------------------------------------------------------------------------
def _read(path: StorePath, kind: str, verify: bool) -> tuple[Manifest, dict[str, bytes]]:
    manifest, data = read_files(path, verify=verify)
    if manifest.kind != kind:
        raise ArtifactError(
            f"the artifact at {path} is a {manifest.kind!r}, not a {kind!r}; load it with "
            f"load_{manifest.kind} (or load_artifact)"
        )
    return manifest, data


def _prov(manifest: Manifest, data: Mapping[str, bytes], single_keys: Mapping[str, Any]) -> Prov:
    rows = int(manifest.rows or 0)
    multi = manifest.content["prov"]["layout"] == "multi"
    if "prov" in data:
        table = read_parquet(data["prov"], f"{manifest.files['prov'].path}")
        return prov_of_table(table, rows, manifest.sources, multi=multi)
    return prov_of_columns(rows, single_keys, manifest.sources)


def _key_indexes(manifest: Manifest, data: Mapping[str, bytes]) -> dict[str, pd.DataFrame]:
    out = {}
    for source, name in manifest.content.get("key_indexes", {}).items():
        where = manifest.files[name].path
        out[source] = key_index_of_table(read_parquet(data[name], where), where)
    return out


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
    table = table_of_frame(data)
    columns = describe_columns(data)
    indexes = key_indexes_to_store(prov, sources, key_index)

    def write(files: _Files) -> dict[str, Any]:
        summary = _write_prov(files, table, prov)
        return {"schema": columns, "prov": summary, "key_indexes": _write_keys(files, indexes)}

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
    table, single_keys = split_prov_columns(read_parquet(data["data"], manifest.files["data"].path))
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

    def write(files: _Files) -> dict[str, Any]:
        # provenance in its own file: X of the same rows wrote the same one (linked, not copied)
        summary = _write_prov(files, table, labels.prov, apart=True)
        return {
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
    table, single_keys = split_prov_columns(read_parquet(data["data"], manifest.files["data"].path))
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

    def write(files: _Files) -> dict[str, Any]:
        if compress:
            files.write("X", filename, dump)
        else:  # the model's state holds the same X: it links this file instead of a copy
            files.shared("X", filename, X, dump)
        return {
            "X": spec,
            "blocks": blocks,
            "prov": _write_prov(files, None, matrix.prov),
            "key_indexes": _write_keys(files, indexes),
        }

    return _save(path, "matrix", n_rows, matrix.prov.sources, metadata, write)


def load_matrix(path: StorePath, *, verify: bool = True) -> StoredMatrix:
    """Load X stored by :func:`save_matrix` as a :class:`FeatureMatrix` whose ``resolve``
    looks keys up in the stored key indexes (keys not in this X resolve to nothing)."""
    manifest, data = _read(path, "matrix", verify)
    X = read_matrix(manifest.content["X"], data["X"], manifest.files["X"].path)
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
            apart: dict[str, Any] = {}
            for name, matrix in (shared or {}).items():
                spec, suffix, dump = matrix_file(matrix)
                files.shared(f"shared-{name}", f"shared-{name}{suffix}", matrix, dump)
                apart[name] = spec
            stream = io.BytesIO()
            spans: pickling.Spans = []

            def dump_buffers(w: HashingWriter) -> None:
                spans.extend(pickling.dump(value, stream, w, external=shared))

            files.write("buffers", "buffers.bin", dump_buffers)

            def dump_stream(w: HashingWriter) -> None:
                w.write(stream.getbuffer())

            files.write("object", "object.pkl", dump_stream)
            return {**described, "format": "pickle5", "buffers": spans, "shared": apart}
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise UnstorableError(
                f"{type(value).__name__} cannot be pickled ({exc}); everything it refers to "
                "must be picklable: keep functions at module level (lambdas and local "
                "functions are not) and drop open files, locks and connections"
            ) from exc

    return _save(path, "object", rows, sources, metadata, write)


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
                name: read_matrix(spec, data[f"shared-{name}"], where)
                for name, spec in manifest.content.get("shared", {}).items()
            }
            value = pickling.load(
                data["object"], data["buffers"], manifest.content["buffers"], external=apart
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
    names = list(manifest.content.get("key_indexes", {}).values())
    manifest, data = read_files(path, names, verify=verify)
    return _key_indexes(manifest, data)


def has_artifact(path: StorePath) -> bool:
    """True if an artifact was committed at ``path``."""
    return read_pointer(path) is not None
