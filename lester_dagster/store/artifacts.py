"""Save and load artifacts: frames, labels (y), feature matrices (X) and Python objects.

An artifact is a directory ``<root>``; every save writes a new version and publishes it
atomically (:mod:`lester_dagster.store.atomic`), so readers see the previous or the new version,
never a mix, even if the writer is killed. Files of a version::

    <root>/manifest.json                        commit point: Manifest (store.manifest)
    <root>/v<seq>-<token>/<prefix>-<xxh3>.bin   row segments (store.segments, store.segmented):
        data-*: a frame's numeric and text columns;   y-*: labels;   X-*: a CSR X's rows,
        X-pinned-*: its dense columns;   prov-*: single provenance (key ids per source);
        keys-<i>-*: a key index;   shared-*, rows-*: what an object keeps per row
    <root>/v<seq>-<token>/data.parquet          a frame of other dtypes (categories, dates,
                                                objects) or multi provenance; labels likewise
    <root>/v<seq>-<token>/prov.parquet          multi provenance (one row per monomial)
    <root>/v<seq>-<token>/X.bin|.npy|.npz       X without segments: CSC / multi provenance |
                                                dense numpy | other sparse or compressed
    <root>/v<seq>-<token>/keys-<i>.parquet      a key index of other dtypes
    <root>/v<seq>-<token>/object.pkl, buffers.bin   one Python object (store.objects)

A segment whose content the previous version (or another artifact this process just wrote)
holds already is hard-linked, not written (store.fileset): a deletion rewrites the segments
that held its rows. The manifest's ``content`` holds what loading needs (dtypes, layouts, X's
shape and blocks with their source-column lineage as ``[source, column]`` pairs, the labels'
inputs and lineage, a provenance summary with rows per source, what the version wrote and
linked); ``metadata`` is the caller's. Loading checks every file against the manifest before
parsing anything (sha256; a segment file's xxh3 name; ``verify=False`` skips the check).

``load_object`` unpickles: load only artifacts your own pipelines wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.features.matrix import Block, FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, Prov, Result
from lester_dagster.store import segmented, segments
from lester_dagster.store.atomic import (
    StorePath,
    read_pointer,
)
from lester_dagster.store.fileset import FileSet, read_version, save_version
from lester_dagster.store.keys import (
    KeyIndexMode,
    KeyResolver,
    Sources,
    key_index_of_table,
    key_index_table,
    key_indexes_to_store,
)
from lester_dagster.store.manifest import (
    HashingWriter,
    Manifest,
    read_files,
    read_manifest,
)
from lester_dagster.store.matrices import matrix_file, read_matrix
from lester_dagster.store.objects import StoredObject, load_object, save_object
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


Stored: TypeAlias = StoredFrame | StoredLabels | StoredMatrix | StoredObject
"""What :func:`load_artifact` returns, depending on the artifact's kind."""


def _check_rows(rows: int, prov: Prov, what: str) -> None:
    if not isinstance(prov, Prov):
        raise UnstorableError(f"provenance must be a Prov, got {type(prov).__name__}")
    if prov.n != rows:
        raise UnstorableError(
            f"{what} has {rows} rows but its provenance describes {prov.n}; pass the Prov of "
            "exactly these rows (Result.prov, FeatureMatrix.prov, or prov.take(rows))"
        )


def _write_prov(
    files: FileSet, table: pa.Table | None, prov: Prov, *, apart: bool = False
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


def _write_keys(files: FileSet, indexes: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
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

    def write(files: FileSet) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": columns}
        if stored is not None:
            rows, described = stored
            ends = segmented.ends_of(prov)
            out["data"] = segmented.frame_segments(files, "data", rows, described, ends)
            out["prov"] = segmented.prov_segments(files, prov, ends)
        else:
            out["prov"] = _write_prov(files, table, prov)
        return {**out, "key_indexes": _write_keys(files, indexes)}

    return save_version(path, "frame", prov.n, prov.sources, metadata, write)


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
    manifest, data = read_version(path, "frame", verify)
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

    def write(files: FileSet) -> dict[str, Any]:
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

    return save_version(path, "labels", labels.prov.n, labels.prov.sources, metadata, write)


def load_labels(path: StorePath, *, verify: bool = True) -> StoredLabels:
    """Load y stored by :func:`save_labels`, with its original numpy dtype."""
    manifest, data = read_version(path, "labels", verify)
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

    def write(files: FileSet) -> dict[str, Any]:
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

    return save_version(path, "matrix", n_rows, matrix.prov.sources, metadata, write)


def load_matrix(path: StorePath, *, verify: bool = True) -> StoredMatrix:
    """Load X stored by :func:`save_matrix` as a :class:`FeatureMatrix` whose ``resolve``
    looks keys up in the stored key indexes (keys not in this X resolve to nothing)."""
    manifest, data = read_version(path, "matrix", verify)
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
