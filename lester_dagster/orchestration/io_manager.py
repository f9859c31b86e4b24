"""The IO manager: every asset's value stored through :mod:`lester_dagster.store`.

Each asset is one artifact directory ``<base_path>/<asset key path>`` (a partition adds its key
as a further directory). The store writes a new version directory and commits it by atomically
replacing ``manifest.json``, so a crash mid-write leaves the previous version current and
readers never see half an artifact; every file is checksummed and verified when loaded.

What is stored, by value type (see :mod:`lester_dagster.orchestration.artifacts`):

====================  ==========================================================  =========
value                 files                                                        load as
====================  ==========================================================  =========
FrameArtifact         data.parquet (user + provenance columns), key indexes,       same
                      column lineage in the manifest
FeatureMatrix         X.bin (CSR raw) / X.npy (dense), provenance, blocks, keys    same
LabelsArtifact        data.parquet (y + provenance), inputs, lineage, keys         same
anything else         object.pkl + buffers.bin (pickle 5; e.g. the TrainingState)   same
====================  ==========================================================  =========

``base_path`` is a local path or any UPath URL (``s3://bucket/lester``, ``memory://x``);
by default ``$DAGSTER_HOME/lester/artifacts`` (``~/.lester-dagster/artifacts`` without
DAGSTER_HOME). A consumer that reads several partitions of a frame asset (an unpartitioned
consumer of a partitioned asset, or an ``AllPartitionMapping``) gets them concatenated with
their provenance and merged key indexes (:meth:`LesterIOManager.load_partitions`). Each
materialisation adds ``lester/manifest_digest`` (a hash of the stored
files' checksums), ``lester/artifact_path`` and ``lester/artifact_version`` to its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from lester_dagster.errors import ArtifactError
from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.frame import KeyResolver
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import (
    FrameArtifact,
    LabelsArtifact,
    key_indexes_of,
    lineage_from_json,
    lineage_to_json,
)
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.store import (
    Manifest,
    StoredFrame,
    StoredLabels,
    StoredMatrix,
    StoredProvenance,
    load_artifact,
    load_empty_frame,
    load_provenance,
    read_manifest,
    save_frame,
    save_labels,
    save_matrix,
    save_object,
)
from lester_dagster.store.atomic import as_path
from lester_dagster.store.home import lester_home

__all__ = [
    "PARTITION_COUNT_KEY",
    "LesterIOManager",
    "default_base_path",
    "lester_home",
    "segment_metadata",
]

LINEAGE_KEY = "column_lineage"
PARTITION_COUNT_KEY = "lester/partition_count"
"""Manifest metadata: the number of partitions of the asset when the partition was written."""


def default_base_path() -> Path:
    """The default artifact root: ``lester_home() / "artifacts"``."""
    return lester_home() / "artifacts"


def segment_metadata(manifest: Manifest) -> dict[str, int]:
    """What a committed version rewrote, as materialisation metadata: its row segments written
    (and their bytes) and those hard-linked from files that held their content already (its
    previous version, or an artifact the same run wrote just before: X_train's segments in
    the model state); empty for an artifact stored without segments."""
    content = manifest.content
    if "segments_written" not in content:
        return {}
    return {
        "lester/segments_written": int(content["segments_written"]),
        "lester/segments_linked": int(content.get("segments_linked", 0)),
        "lester/segment_bytes_written": int(content.get("segment_bytes_written", 0)),
    }


class LesterIOManager(dg.ConfigurableIOManager):
    """Stores frames, X, y and models as versioned, checksummed, atomically committed
    artifacts (see the module docstring)."""

    base_path: str | None = Field(
        default=None,
        description="Artifact root: a local path or a UPath URL (s3://bucket/prefix, ...). "
        "Default: $DAGSTER_HOME/lester/artifacts.",
    )
    verify: bool = Field(
        default=True, description="Check every file's sha256 against its manifest on load."
    )

    # -- paths ---------------------------------------------------------------------------------
    def root(self) -> UPath:
        """The artifact root."""
        return as_path(self.base_path or default_base_path())

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> UPath:
        """The artifact directory of an asset (and partition)."""
        path = self.root().joinpath(*asset_key.path)
        return path / partition_key if partition_key is not None else path

    def manifest(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> Manifest:
        """The committed manifest of an asset (raises ArtifactNotFoundError if none)."""
        return read_manifest(self.path_for(asset_key, partition_key))

    def load(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> Any:
        """An asset's stored value, as its downstream assets receive it."""
        path = self.path_for(asset_key, partition_key)
        stored = load_artifact(path, verify=self.verify)
        if isinstance(stored, StoredFrame):
            lineage = lineage_from_json(
                stored.manifest.metadata.get(LINEAGE_KEY), f"the manifest of {path}"
            )
            return FrameArtifact(stored.data, stored.prov, lineage, dict(stored.key_indexes))
        if isinstance(stored, StoredLabels):
            return LabelsArtifact(stored.labels, dict(stored.key_indexes))
        if isinstance(stored, StoredMatrix):
            return stored.matrix
        return stored.value

    def probe(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> StoredProvenance:
        """Only the row provenance and key-index ids of an asset (see
        :func:`~lester_dagster.store.load_provenance`: no data read, no checksum)."""
        return load_provenance(self.path_for(asset_key, partition_key))

    def load_empty(self, asset_key: dg.AssetKey, partition_key: str | None = None) -> FrameArtifact:
        """A frame asset's columns, dtypes, lineage and key columns, without rows."""
        path = self.path_for(asset_key, partition_key)
        data, prov, indexes, manifest = load_empty_frame(path)
        lineage = lineage_from_json(manifest.metadata.get(LINEAGE_KEY), f"the manifest of {path}")
        return FrameArtifact(data, prov, lineage, indexes)

    def store(
        self,
        asset_key: dg.AssetKey,
        value: Any,
        partition_key: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Manifest:
        """Store ``value`` as the asset's new version (atomically); returns its manifest."""
        path = self.path_for(asset_key, partition_key)
        meta: dict[str, Any] = {"asset_key": asset_key.to_user_string(), **(metadata or {})}
        if isinstance(value, FrameArtifact):
            meta[LINEAGE_KEY] = lineage_to_json(value.lineage)
            return save_frame(
                path, value.data, value.prov, sources=value.key_indexes, metadata=meta
            )
        if isinstance(value, LabelsArtifact):
            return save_labels(path, value.labels, sources=value.key_indexes, metadata=meta)
        if isinstance(value, FeatureMatrix):
            return save_matrix(path, value, sources=key_indexes_of(value), metadata=meta)
        if isinstance(value, TrainingState):
            # X, the training rows and the key indexes are stored in row segments of their own:
            # those X_train (and y_train) just stored with the same content are hard-linked
            shared: dict[str, Any] = {"X": value.X, "frame": value.frame}
            resolve = value.features.resolve
            if isinstance(resolve, KeyResolver):
                shared.update({f"keys{i}": k for i, k in enumerate(resolve.indexes.values())})
            return save_object(
                path,
                value,
                metadata=meta,
                rows=int(value.X.shape[0]),
                sources=value.prov.sources,
                shared=shared,
                row_prov=value.features.prov,
            )
        return save_object(path, value, metadata=meta)

    # -- the IOManager interface ---------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partition = context.asset_partition_key if context.has_asset_partitions else None
        metadata: dict[str, Any] = {"run_id": context.run_id}
        if partition is not None:
            # how many partitions the asset had when this one was written: a deletion trusts a
            # partition to hold exactly its key-hash bucket only under the same count
            keys = context.asset_partitions_def.get_partition_keys()
            metadata[PARTITION_COUNT_KEY] = len(keys)
        manifest = self.store(context.asset_key, obj, partition, metadata=metadata)
        path = self.path_for(context.asset_key, partition)
        context.add_output_metadata(
            {
                "lester/manifest_digest": manifest.digest,
                "lester/artifact_version": manifest.version,
                "lester/artifact_path": dg.MetadataValue.path(str(path)),
                "lester/artifact_bytes": manifest.total_bytes,
                **segment_metadata(manifest),
            }
        )

    def load_input(self, context: dg.InputContext) -> Any:
        if not context.has_asset_partitions:
            return self.load(context.asset_key)
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            return self.load(context.asset_key, keys[0])
        return self.load_partitions(context.asset_key, keys)

    def load_partitions(self, asset_key: dg.AssetKey, partition_keys: Sequence[str]) -> Any:
        """Several partitions of a frame asset as one frame: the rows of each partition in
        ``partition_keys`` order with their provenance, and the union of the key indexes (what
        an unpartitioned consumer, or an ``AllPartitionMapping``, reads)."""
        values = [self.load(asset_key, key) for key in partition_keys]
        frames = [v for v in values if isinstance(v, FrameArtifact)]
        if len(frames) != len(values):
            kinds = sorted({type(v).__name__ for v in values})
            raise ArtifactError(
                f"asset {asset_key.to_user_string()}: only frame partitions can be read "
                f"together, got {kinds}; read one partition at a time"
            )
        return concat_frames(frames)
