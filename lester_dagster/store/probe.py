"""Cheap reads of a stored artifact: its row provenance and key ids only, or its empty schema.

A deletion has to find the few artifacts (and partitions) that hold rows of the deleted
records before it loads anything. :func:`load_provenance` reads only the provenance key-id
columns of an artifact's Parquet files and the key-id column of its key indexes (Parquet
reads single columns; a million rows' ids take milliseconds where the whole artifact takes
seconds). :func:`load_empty_frame` reads only Parquet schemas: a frame with the stored
columns and dtypes but no rows, and empty key indexes with the key columns' types (what
building a plan and hashing request keys need).

Neither checks the files' sha256 (that would read every byte): a probe only says where to
look, and whatever is then loaded is checked in full. ``lester-dagster verify`` reads and
checks every artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lester_dagster.errors import ArtifactError
from lester_dagster.frame import Prov
from lester_dagster.frame.provenance import Ids
from lester_dagster.store import segmented, segments
from lester_dagster.store.atomic import StorePath, as_path, read_bytes, read_pointer
from lester_dagster.store.keys import KEY_ID, key_index_of_table
from lester_dagster.store.manifest import Manifest, read_manifest
from lester_dagster.store.tables import (
    PROV_PREFIX,
    PROV_ROW,
    frame_of_table,
    prov_of_columns,
    prov_of_table,
)

__all__ = ["StoredProvenance", "load_empty_frame", "load_provenance"]

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class StoredProvenance:
    """The row provenance of an artifact (``None`` for a pickled object, which has no rows
    of its own) and, per source, the key ids its key index holds."""

    prov: Prov | None
    key_ids: Mapping[str, Ids]
    manifest: Manifest


def _retrying(path: StorePath, read: Callable[[Manifest], T], attempts: int = 3) -> T:
    """``read(manifest)`` of the committed version; again on the newer version when a writer
    committed (and removed the version read) meanwhile."""
    base = as_path(path)
    for attempt in range(attempts):
        manifest = read_manifest(base)
        try:
            return read(manifest)
        except FileNotFoundError as exc:
            newer = read_pointer(base)
            if newer is not None and newer.get("version") != manifest.version:
                time.sleep(0.01 * (attempt + 1))
                continue
            raise ArtifactError(
                f"the artifact at {base} lists {exc.filename!r}, which is missing; the "
                "directory was changed outside lester-dagster. Rematerialise the asset"
            ) from exc
    raise ArtifactError(
        f"the artifact at {base} changed {attempts} times while being read; retry when its "
        "writer is done"
    )


def _columns(base: StorePath, manifest: Manifest, name: str, wanted: list[str]) -> pa.Table:
    entry = manifest.files[name]
    with (as_path(base) / entry.path).open("rb") as handle:
        try:
            present = pq.read_schema(handle).names
            handle.seek(0)
            return pq.read_table(handle, columns=[c for c in wanted if c in present])
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ArtifactError(f"{entry.path} is not a readable Parquet file ({exc})") from exc


def _segment_bytes(
    path: StorePath, manifest: Manifest, described: Mapping[str, Any]
) -> dict[str, bytes]:
    """The bytes of the segment files ``described`` lists (unchecked, as every probe)."""
    base = as_path(path)
    return {
        s["file"]: read_bytes(base / manifest.files[s["file"]].path) for s in described["segments"]
    }


def _prov_names(manifest: Manifest) -> list[str]:
    return [f"{PROV_PREFIX}{s}" for s in manifest.sources]


def load_provenance(path: StorePath) -> StoredProvenance:
    """The provenance and key-index ids of the artifact at ``path`` (see the module
    docstring); raises :class:`~lester_dagster.errors.ArtifactNotFoundError` if none."""

    def read(manifest: Manifest) -> StoredProvenance:
        key_ids: dict[str, Ids] = {}
        for source, name in manifest.content.get("key_indexes", {}).items():
            if isinstance(name, Mapping):  # row segments: the index column holds the key ids
                arrays, _ = segments.read(name, _segment_bytes(path, manifest, name), str(path))
                key_ids[source] = np.asarray(arrays["index"], dtype=np.uint64)
                continue
            table = _columns(path, manifest, name, [KEY_ID])
            key_ids[source] = np.asarray(
                table.column(KEY_ID).to_numpy(zero_copy_only=False), dtype=np.uint64
            )
        if manifest.kind == "object" or "prov" not in manifest.content:
            return StoredProvenance(None, key_ids, manifest)
        rows = int(manifest.rows or 0)
        multi = manifest.content["prov"]["layout"] == "multi"
        described = manifest.content["prov"].get("segments")
        if described is not None:  # row segments of key ids (X, y)
            data = _segment_bytes(path, manifest, described)
            arrays, _ = segments.read(described, data, str(path))
            prov = prov_of_columns(rows, arrays, manifest.sources)
        elif "prov" in manifest.files:
            table = _columns(path, manifest, "prov", [*_prov_names(manifest), PROV_ROW])
            prov = prov_of_table(table, rows, manifest.sources, multi=multi)
        else:
            table = _columns(path, manifest, "data", _prov_names(manifest))
            keys = {
                n[len(PROV_PREFIX) :]: np.ascontiguousarray(
                    table.column(n).to_numpy(zero_copy_only=False), dtype=np.uint64
                )
                for n in table.column_names
            }
            prov = prov_of_columns(rows, keys, manifest.sources)
        return StoredProvenance(prov, key_ids, manifest)

    return _retrying(path, read)


def _schema(base: StorePath, manifest: Manifest, name: str) -> pa.Schema:
    entry = manifest.files[name]
    with (as_path(base) / entry.path).open("rb") as handle:
        try:
            return pq.read_schema(handle)
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ArtifactError(f"{entry.path} is not a readable Parquet file ({exc})") from exc


def load_empty_frame(
    path: StorePath,
) -> tuple[pd.DataFrame, Prov, dict[str, pd.DataFrame], Manifest]:
    """The frame artifact at ``path`` without its rows: an empty DataFrame with the stored
    columns and dtypes, empty provenance, and empty key indexes with the key columns' types."""

    def read(manifest: Manifest) -> tuple[pd.DataFrame, Prov, dict[str, pd.DataFrame], Manifest]:
        if manifest.kind != "frame":
            raise ArtifactError(f"the artifact at {path} is a {manifest.kind!r}, not a 'frame'")
        if "data" in manifest.content:  # row segments: the description holds the columns
            frame = segmented.empty_frame(manifest.content["data"])
        else:
            schema = _schema(path, manifest, "data")
            user = [f for f in schema if not f.name.startswith(PROV_PREFIX)]
            empty = pa.schema(user, metadata=schema.metadata).empty_table()
            frame = frame_of_table(empty, 0, manifest.content["schema"])
        prov = Prov(0, {s: np.zeros(0, dtype=np.uint64) for s in manifest.sources})
        indexes = {
            source: segmented.empty_frame(name)
            if isinstance(name, Mapping)  # row segments: the description holds the columns
            else key_index_of_table(_schema(path, manifest, name).empty_table(), name)
            for source, name in manifest.content.get("key_indexes", {}).items()
        }
        return frame, prov, indexes, manifest

    return _retrying(path, read)
