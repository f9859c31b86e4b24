"""Where deletion requests reach, found from stored provenance alone.

A request names keys of a source; :func:`deletions_of` hashes them to key ids with the
source's key columns and types (:func:`key_indexes_for`: read from a Parquet schema, no data).
:func:`reached_partitions` probes each stored partition of an asset (its provenance key-id
columns and key-index ids only, :meth:`LesterIOManager.probe`) for rows derived from those
records; :func:`affected_targets` does it for every asset of a pipeline (what the deletion
sensor asks a run to update, and what the run verifies afterwards).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from lester_dagster.errors import PlanError
from lester_dagster.frame.plan import Node
from lester_dagster.frame.provenance import Ids, member_mask
from lester_dagster.frame.result import hash_key_values
from lester_dagster.ivm.frames import deletion_rule, rows_mentioning
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import PARTITION_COUNT_KEY, LesterIOManager
from lester_dagster.orchestration.partitions import bucket_keys, bucket_of
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.store import StoredProvenance, has_artifact
from lester_dagster.store.atomic import MANIFEST, is_local
from lester_dagster.store.requests import Request

__all__ = [
    "Deletions",
    "Partition",
    "affected_targets",
    "bucket_hint",
    "deletions_of",
    "key_indexes_for",
    "needs_recompute",
    "reached_partitions",
    "stored_partitions",
    "stored_plan",
]

Partition = str | None


@dataclass(frozen=True)
class Deletions:
    """What a batch of requests forgets, as key ids: whole records per source (``instance``)
    and values of columns per source (``values``: source -> column -> key ids)."""

    request_ids: tuple[int, ...]
    instance: Mapping[str, Ids]
    values: Mapping[str, Mapping[str, Ids]]

    def value_ids(self) -> dict[str, Ids]:
        """Per source, the key ids of records with a deleted value (any column)."""
        out = {}
        for source, columns in self.values.items():
            ids = np.unique(
                np.concatenate([np.asarray(v, dtype=np.uint64) for v in columns.values()])
            )
            if ids.size:
                out[source] = ids
        return out

    def all_ids(self) -> dict[str, Ids]:
        """Per source, every key id the batch touches (records or values)."""
        out = {s: np.asarray(v, dtype=np.uint64) for s, v in self.instance.items() if len(v)}
        for source, ids in self.value_ids().items():
            out[source] = np.unique(np.concatenate([out.get(source, ids), ids]))
        return out


def deletions_of(requests: Sequence[Request], key_indexes: Mapping[str, pd.DataFrame]) -> Deletions:
    """The key ids of ``requests`` (hashed with each source's key columns and types from its
    key index; a record already gone from the index still gets its id)."""
    instance: dict[str, list[Ids]] = {}
    values: dict[str, dict[str, list[Ids]]] = {}
    for request in requests:
        if request.source not in key_indexes:
            raise PlanError(
                f"request #{request.id} names source {request.source!r}, which has no stored "
                f"artifact; sources: {sorted(key_indexes)}"
            )
        ids = hash_key_values(request.source, key_indexes[request.source], request.keys)
        if request.kind == "instance":
            instance.setdefault(request.source, []).append(ids)
        else:
            for column in request.columns:
                values.setdefault(request.source, {}).setdefault(column, []).append(ids)
    return Deletions(
        tuple(sorted(r.id for r in requests)),
        {s: np.unique(np.concatenate(v)) for s, v in instance.items()},
        {
            s: {c: np.unique(np.concatenate(v)) for c, v in cols.items()}
            for s, cols in values.items()
        },
    )


def stored_partitions(io: LesterIOManager, key: dg.AssetKey) -> list[Partition]:
    """The committed artifacts of an asset: ``[None]`` if unpartitioned, else its stored
    partition keys (sorted); empty if it was never materialised."""
    root = io.path_for(key)
    if has_artifact(root):
        return [None]
    if is_local(root):  # a directory scan: a run asks this dozens of times for 16+ partitions
        try:
            with os.scandir(root.path) as entries:
                found = [
                    e.name
                    for e in entries
                    if e.is_dir() and os.path.isfile(os.path.join(e.path, MANIFEST))
                ]
        except FileNotFoundError:
            return []
        return list[Partition](sorted(found))
    if not root.exists():
        return []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and has_artifact(p))
    return list[Partition](names)


def key_indexes_for(
    pipeline: LesterPipeline, assets: PipelineAssets, io: LesterIOManager
) -> dict[str, pd.DataFrame]:
    """Each source's key columns and their types, as an empty key index (read from the
    Parquet schema of one stored partition: what hashing request keys needs, no data)."""
    out: dict[str, pd.DataFrame] = {}
    for name in pipeline.sources:
        key = assets.key("source", name)
        for partition in stored_partitions(io, key):
            indexes = io.load_empty(key, partition).key_indexes
            if name in indexes:
                out[name] = indexes[name]
                break
    return out


def _reaches(probe: StoredProvenance, ids: Mapping[str, Ids], instance: Mapping[str, Ids]) -> bool:
    """True if a row of the probed artifact derives from ``ids`` or its key indexes hold a
    deleted key (``instance``)."""
    if probe.prov is not None and rows_mentioning(probe.prov, ids).size:
        return True
    return any(
        source in probe.key_ids and bool(member_mask(probe.key_ids[source], gone).any())
        for source, gone in instance.items()
        if len(gone)
    )


def bucket_hint(assets: PipelineAssets, key: dg.AssetKey) -> tuple[str, int] | None:
    """``(source, n)`` if partition ``b`` of asset ``key`` holds exactly the rows whose record
    of ``source`` lies in key-hash bucket ``b`` of ``n`` (a bucketed source, or rows partitioned
    like a bucketed split source); ``None`` otherwise."""
    partitioning = assets.partitioning
    if partitioning is None or not partitioning.buckets:
        return None
    for step, k in assets.keys.items():
        if k != key:
            continue
        if step.kind == "source":
            if partitioning.source_buckets(step.name) and partitioning.sources[step.name]:
                return step.name, partitioning.buckets
            return None
        split = assets.pipeline.split.by
        if partitioning.partitions_def(step) is not None and partitioning.source_buckets(split):
            return split, partitioning.buckets
    return None


def reached_partitions(
    io: LesterIOManager, assets: PipelineAssets, key: dg.AssetKey, deletions: Deletions
) -> list[Partition]:
    """The stored partitions of ``key`` holding rows (or key index entries) that ``deletions``
    reach, found by probing provenance only (:meth:`LesterIOManager.probe`). Where partitions
    are key-hash buckets of the only source the deletions name (:func:`bucket_hint`), the
    buckets of the deleted keys are the answer without a probe: every partition holding their
    rows, and maybe one holding none of them (e.g. the test rows of a training customer's
    bucket). A partition is trusted so only if its manifest says it was written under the
    same bucket count; others (another count, none recorded, another name) are probed."""
    every = deletions.all_ids()
    instance = deletions.instance
    source_of = [s.name for s, k in assets.keys.items() if k == key and s.kind == "source"]
    if source_of:  # a source's rows derive from its own records only
        every = {s: i for s, i in every.items() if s == source_of[0]}
        instance = {s: i for s, i in instance.items() if s == source_of[0]}
        if not every:
            return []
    stored = stored_partitions(io, key)
    hint = bucket_hint(assets, key)
    if hint is not None and set(every) <= {hint[0]}:
        source, n = hint
        names = bucket_keys(n)
        ids = every.get(source, np.zeros(0, dtype=np.uint64))
        hit = {names[int(b)] for b in np.unique(bucket_of(ids, n))} if len(ids) else set()

        out: list[Partition] = []
        for p in stored:
            trusted = p in names and (
                io.manifest(key, p).metadata.get(PARTITION_COUNT_KEY) == n
            )  # written as bucket p of n buckets
            found = (p in hit) if trusted else _reaches(io.probe(key, p), every, instance)
            if found:
                out.append(p)
        return out
    return [p for p in stored if _reaches(io.probe(key, p), every, instance)]


def needs_recompute(
    pipeline: LesterPipeline, assets: PipelineAssets, io: LesterIOManager, deletions: Deletions
) -> bool:
    """True if the plan re-executes in full for a source the deletions touch
    (:func:`deletion_rule`), judged on the sources' stored schemas."""
    touched = set(deletions.instance) | set(deletions.values)
    if not touched:
        return False
    plan = stored_plan(pipeline, assets, io)
    if plan is None:
        return False  # a source never materialised: nothing downstream to recompute
    return any(deletion_rule(plan, s)[0] == "recompute" for s in sorted(touched))


def stored_plan(
    pipeline: LesterPipeline, assets: PipelineAssets, io: LesterIOManager
) -> Node | None:
    """The preparation plan built on the sources' stored schemas (no rows read); None if a
    source was never materialised."""
    samples: dict[str, FrameArtifact] = {}
    for name in pipeline.sources:
        key = assets.key("source", name)
        stored = stored_partitions(io, key)
        if not stored:
            return None
        samples[name] = io.load_empty(key, stored[0])
    node: Node = pipeline.prepare(**steps.source_frames(pipeline, samples)).node
    return node


def affected_targets(
    pipeline: LesterPipeline,
    assets: PipelineAssets,
    io: LesterIOManager,
    requests: Iterable[Request],
) -> list[tuple[dg.AssetKey, Partition]]:
    """The stored artifacts (asset, partition) holding rows that ``requests`` reach, found
    through their provenance, or a deleted key in their key indexes; X, y and the model when
    any training or test row is reached. Only provenance is read (probes), no data.
    A plan that needs a recompute for a touched source (:func:`deletion_rule`) reaches every
    partition of the prepared rows, train and test."""
    batch = list(requests)
    if not batch:
        return []
    deletions = deletions_of(batch, key_indexes_for(pipeline, assets, io))
    out: list[tuple[dg.AssetKey, Partition]] = []
    for name in pipeline.sources:
        key = assets.key("source", name)
        out.extend((key, p) for p in reached_partitions(io, assets, key, deletions))
    recompute = needs_recompute(pipeline, assets, io, deletions)
    reached = False
    for kind in ("prepared", "train", "test"):
        key = assets.key(kind)
        found = (
            stored_partitions(io, key)
            if recompute
            else reached_partitions(io, assets, key, deletions)
        )
        out.extend((key, p) for p in found)
        reached = reached or bool(found)
    if reached:
        for kind in ("X_train", "y_train", "model", "X_test", "y_test"):
            out.append((assets.key(kind), None))  # type: ignore[arg-type]
    return out
