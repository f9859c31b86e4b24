"""Applying deletion requests to a pipeline's stored artifacts by IVM, never by recomputation
from the sources (unless the plan needs it, which is recorded).

:func:`apply_deletions` walks the artifacts in pipeline order and commits each one that the
requests change, atomically (the store's manifest commit), before it moves on:

1. **sources** (each stored partition): deleted records leave (and their key index entries);
   a value deletion sets the values to missing, as a csv without them would read;
2. **prepared rows** (each stored partition): rows whose provenance mentions a deleted record
   leave; rows of a record whose values were deleted are re-executed from the updated sources
   (the plan on just those records) and replace the old rows in place, or leave if the plan
   now filters them out (:mod:`lester_dagster.ivm.frames`; plans it cannot handle row by row
   are re-executed in full, recorded as ``recompute``);
3. **train / test** (the partitions whose prepared rows changed): the split of the new rows;
4. **X_train, y_train, model**: the stored :class:`TrainingState` forgets the removed rows and
   replaces the changed ones (encoders downdated, X and y updated, the model unlearns; strategies
   recorded per component);
5. **X_test, y_test**: the test rows that left are dropped, changed rows re-encoded, blocks
   whose encoder statistics changed re-encoded for every row.

An artifact the requests do not change is not written. That makes a re-run after a crash
complete the work: artifacts committed before the crash are already up to date and skipped;
the rest are updated. Every commit records the request ids in its manifest
(``lester/applied_requests``). A test hook (environment variable :data:`FAULT_ENV` = N) kills
the process with ``os._exit`` right after the N-th commit, as ``kill -9`` would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import ArtifactNotFoundError, PlanError
from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.frame import KeyResolver
from lester_dagster.frame.provenance import Ids, member_mask
from lester_dagster.frame.result import hash_key_values
from lester_dagster.ivm.frames import (
    DeletionRule,
    deletion_rule,
    positions_in,
    row_identity,
    rows_mentioning,
)
from lester_dagster.ivm.training import TrainingState, TrainingUpdate
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact, forget_in_source, without_keys
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.store import StoredProvenance, collect_garbage, has_artifact
from lester_dagster.store.requests import Request

__all__ = [
    "FAULT_ENV",
    "ApplyReport",
    "Commit",
    "Deletions",
    "affected_targets",
    "apply_deletions",
    "deletions_of",
    "key_indexes_for",
    "needs_recompute",
    "reached_partitions",
    "reexecute_all",
    "reexecute_rows",
    "stored_partitions",
]

FAULT_ENV = "LESTER_FAULT_AFTER_COMMITS"
"""Test hook: kill the process (``os._exit(137)``) right after this many artifact commits."""

APPLIED_KEY = "lester/applied_requests"
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


@dataclass(frozen=True)
class Commit:
    """One artifact (asset, partition) the requests changed, as committed."""

    asset_key: dg.AssetKey
    partition: Partition
    rows_before: int
    rows_after: int
    seconds: float
    strategy: str
    digest: str

    @property
    def label(self) -> str:
        name = self.asset_key.to_user_string()
        return f"{name}[{self.partition}]" if self.partition is not None else name


@dataclass
class ApplyReport:
    """What :func:`apply_deletions` did."""

    request_ids: tuple[int, ...]
    commits: list[Commit] = field(default_factory=list)
    strategies: dict[str, str] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per committed artifact (its compute + durable write), per phase that is not one
        artifact's (``training update``: encoders, X, y and model together) and in total."""
        out = {c.label: round(c.seconds, 6) for c in self.commits}
        out.update({name: round(seconds, 6) for name, seconds in self.phases.items()})
        out["total"] = round(self.seconds, 6)
        return out


def stored_partitions(io: LesterIOManager, key: dg.AssetKey) -> list[Partition]:
    """The committed artifacts of an asset: ``[None]`` if unpartitioned, else its stored
    partition keys (sorted); empty if it was never materialised."""
    root = io.path_for(key)
    if has_artifact(root):
        return [None]
    if not root.exists():
        return []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and has_artifact(p))
    return list[Partition](names)


def _same_rows(a: FrameArtifact, b: FrameArtifact) -> bool:
    """Same rows (provenance and values, in order); the key indexes are then the same too, as
    the store keeps only the keys that rows mention."""
    if len(a) != len(b) or set(a.prov.sources) != set(b.prov.sources):
        return False
    if any(not np.array_equal(a.prov.keys[s], b.prov.keys[s]) for s in a.prov.sources):
        return False
    return bool(a.data.reset_index(drop=True).equals(b.data.reset_index(drop=True)))


def reexecute_rows(
    pipeline: LesterPipeline,
    sources: Mapping[str, FrameArtifact],
    source: str,
    ids: Ids,
) -> FrameArtifact:
    """The prepared rows derived from records ``ids`` of ``source``, re-executed: the plan on
    ``source`` restricted to those records (and its key index to their keys) and the other
    ``sources`` in full, keeping the rows that mention the records. For a plan whose
    :func:`deletion_rule` is ``"rows"`` these are exactly the rows a recompute derives from
    the records (with their current values, e.g. a deleted value now missing)."""
    art = sources[source]
    rows = rows_mentioning(art.prov, {source: ids})
    restricted = art.take(rows)
    index = art.key_indexes.get(source)
    indexes = dict(art.key_indexes)
    if index is not None:
        indexes[source] = index.loc[index.index.isin(restricted.prov.keys[source])]
    inputs = dict(sources)
    inputs[source] = FrameArtifact(restricted.data, restricted.prov, restricted.lineage, indexes)
    result, _ = steps.run_prepare(pipeline, inputs)
    return result.take(rows_mentioning(result.prov, {source: ids}))


def reexecute_all(
    pipeline: LesterPipeline, sources: Mapping[str, FrameArtifact], ids: Mapping[str, Ids]
) -> FrameArtifact | None:
    """:func:`reexecute_rows` for the records ``ids`` (source -> key ids) of every source, each
    row once (a row derived from records of two of the sources is produced twice); ``None``
    when ``ids`` names no record."""
    parts = [reexecute_rows(pipeline, sources, s, i) for s, i in ids.items() if len(i)]
    if not parts:
        return None
    fresh = concat_frames(parts)
    identity = row_identity(fresh.prov)
    _, first = np.unique(identity, return_index=True)
    return fresh.take(np.sort(first))


class _Run:
    def __init__(
        self,
        pipeline: LesterPipeline,
        assets: PipelineAssets,
        io: LesterIOManager,
        deletions: Deletions,
        run_id: str,
        on_commit: Callable[[Commit], None] | None,
    ) -> None:
        self.pipeline = pipeline
        self.assets = assets
        self.io = io
        self.deletions = deletions
        self.run_id = run_id
        self.on_commit = on_commit
        self.report = ApplyReport(deletions.request_ids)
        fault = os.environ.get(FAULT_ENV)
        self.fault_after = int(fault) if fault else None

    # -- storage -------------------------------------------------------------------------------
    def load_all(self, key: dg.AssetKey) -> dict[Partition, Any]:
        return {p: self.io.load(key, p) for p in stored_partitions(self.io, key)}

    def commit(
        self,
        key: dg.AssetKey,
        partition: Partition,
        value: Any,
        *,
        before: int,
        after: int,
        started: float,
        strategy: str,
    ) -> None:
        manifest = self.io.store(
            key,
            value,
            partition,
            metadata={
                "run_id": self.run_id,
                APPLIED_KEY: list(self.deletions.request_ids),
                "lester/update_strategy": strategy,
            },
        )
        # the previous version holds the deleted data: it goes at once (the store keeps one
        # previous version for concurrent readers; a deletion cannot wait for them)
        collect_garbage(self.io.path_for(key, partition))
        commit = Commit(
            key, partition, before, after, time.perf_counter() - started, strategy, manifest.digest
        )
        self.report.commits.append(commit)
        if self.on_commit is not None:
            self.on_commit(commit)
        if self.fault_after is not None and len(self.report.commits) >= self.fault_after:
            os._exit(137)  # the test hook: die between two commits, like kill -9

    # -- 1. sources ----------------------------------------------------------------------------
    def sources(self) -> dict[str, dict[Partition, FrameArtifact]]:
        out: dict[str, dict[Partition, FrameArtifact]] = {}
        for name in self.pipeline.sources:
            key = self.assets.key("source", name)
            parts: dict[Partition, FrameArtifact] = self.load_all(key)
            if not parts:
                raise ArtifactNotFoundError(
                    f"source asset {key.to_user_string()} was never materialised; materialise "
                    "the pipeline before applying deletions"
                )
            for partition, art in parts.items():
                started = time.perf_counter()
                updated = forget_in_source(
                    art,
                    name,
                    self.deletions.instance.get(name),
                    self.deletions.values.get(name, {}),
                )
                if updated is not None:
                    parts[partition] = updated
                    self.commit(
                        key, partition, updated, before=len(art), after=len(updated),
                        started=started, strategy="rows",
                    )  # fmt: skip
            out[name] = parts
        return out

    # -- 2. prepared rows ----------------------------------------------------------------------
    def rules(self, sources: Mapping[str, FrameArtifact]) -> dict[str, tuple[DeletionRule, str]]:
        frames = steps.source_frames(self.pipeline, sources)
        plan = self.pipeline.prepare(**frames)
        touched = set(self.deletions.instance) | set(self.deletions.values)
        return {s: deletion_rule(plan.node, s) for s in sorted(touched)}

    def fresh_rows(self, sources: Mapping[str, FrameArtifact]) -> FrameArtifact | None:
        """The prepared rows of the records whose values were deleted, re-executed."""
        return reexecute_all(self.pipeline, sources, self.deletions.value_ids())

    def prepared(
        self, sources: dict[str, dict[Partition, FrameArtifact]]
    ) -> tuple[dict[Partition, FrameArtifact], set[Partition]]:
        key = self.assets.key("prepared")
        parts: dict[Partition, FrameArtifact] = self.load_all(key)
        if not parts:
            raise ArtifactNotFoundError(
                f"asset {key.to_user_string()} was never materialised; materialise the "
                "pipeline before applying deletions"
            )
        whole = {name: concat_frames(list(p.values())) for name, p in sources.items()}
        rules = self.rules(whole)
        for source, (rule, why) in rules.items():
            self.report.strategies[f"{key.to_user_string()} <- {source}"] = rule
            if rule == "recompute":
                self.report.fallbacks.append(f"{key.to_user_string()}: recompute ({why})")
        if any(rule == "recompute" for rule, _ in rules.values()):
            return self.recompute_prepared(key, parts, sources, whole)
        fresh = self.fresh_rows(whole)
        split = self.pipeline.split.by
        owner: npt.NDArray[np.intp] | None = None
        labels = list(sources[split])
        if fresh is not None and labels != [None] and split in fresh.prov.sources:
            # a re-executed row belongs to the partition holding its split-source record
            ids = [sources[split][p].prov.keys[split] for p in labels]
            where = positions_in(np.concatenate(ids), fresh.prov.keys[split])
            bounds = np.cumsum([len(i) for i in ids])
            owner = np.searchsorted(bounds, where, side="right")
            owner[where < 0] = -1
        changed: set[Partition] = set()
        for partition, art in parts.items():
            started = time.perf_counter()
            mine = fresh
            if fresh is not None and owner is not None:
                index = labels.index(partition) if partition in labels else -2
                mine = fresh.take(np.flatnonzero(owner == index))
            updated = self.update_rows(art, mine)
            if updated is not None:
                parts[partition] = updated
                changed.add(partition)
                self.commit(
                    key, partition, updated, before=len(art), after=len(updated),
                    started=started, strategy="rows",
                )  # fmt: skip
        return parts, changed

    def update_rows(self, art: FrameArtifact, fresh: FrameArtifact | None) -> FrameArtifact | None:
        """``art`` without the deleted records' rows, with re-executed rows in place of the
        old rows of records whose values were deleted (None: nothing changed)."""
        drop = rows_mentioning(art.prov, self.deletions.instance)
        affected = rows_mentioning(art.prov, self.deletions.value_ids())
        if fresh is None or len(fresh) == 0:
            fresh_ids = np.zeros(0, dtype=np.uint64)
        else:
            fresh_ids = row_identity(fresh.prov)
        old_ids = row_identity(art.prov)
        source = np.arange(len(art), dtype=np.intp)
        removed = np.zeros(len(art), dtype=bool)
        removed[drop] = True
        replace = positions_in(fresh_ids, old_ids[affected])  # fresh row of each affected row
        removed[affected[replace < 0]] = True
        source[affected[replace >= 0]] = len(art) + replace[replace >= 0]
        appended = np.flatnonzero(positions_in(old_ids, fresh_ids) < 0) + len(art)
        order = np.concatenate([source[~removed], appended])
        indexes = without_keys(art.key_indexes, self.deletions.instance)
        if fresh is None or len(fresh) == 0:
            if (
                not removed.any()
                and len(indexes) == len(art.key_indexes)
                and all(len(indexes[s]) == len(art.key_indexes[s]) for s in indexes)
            ):
                return None
            out = art.take(order)
            return FrameArtifact(out.data, out.prov, out.lineage, indexes)
        both = concat_frames([art, fresh])
        out = both.take(order)
        if not removed.any() and appended.size == 0:
            same = out.data.reset_index(drop=True).equals(art.data.reset_index(drop=True))
            if same:
                return None
        return FrameArtifact(
            out.data,
            out.prov,
            out.lineage,
            without_keys(both.key_indexes, self.deletions.instance),
        )

    def recompute_prepared(
        self,
        key: dg.AssetKey,
        parts: dict[Partition, FrameArtifact],
        sources: dict[str, dict[Partition, FrameArtifact]],
        whole: dict[str, FrameArtifact],
    ) -> tuple[dict[Partition, FrameArtifact], set[Partition]]:
        split = self.pipeline.split.by
        changed: set[Partition] = set()
        for partition, art in parts.items():
            started = time.perf_counter()
            inputs = dict(whole)
            if partition is not None:
                if partition not in sources[split]:
                    raise PlanError(
                        f"{key.to_user_string()}[{partition}] has no stored partition of split "
                        f"source {split!r}; rematerialise the pipeline"
                    )
                inputs[split] = sources[split][partition]
            updated, _ = steps.run_prepare(self.pipeline, inputs)
            parts[partition] = updated
            changed.add(partition)
            self.commit(
                key, partition, updated, before=len(art), after=len(updated), started=started,
                strategy="recompute",
            )  # fmt: skip
        return parts, changed

    # -- 3. train / test -----------------------------------------------------------------------
    def split(
        self, prepared: dict[Partition, FrameArtifact], changed: set[Partition], side: str
    ) -> tuple[dict[Partition, FrameArtifact], bool]:
        key = self.assets.key("train" if side == "train" else "test")
        stored = stored_partitions(self.io, key)
        parts: dict[Partition, FrameArtifact] = {}
        any_change = False
        for partition in stored:
            current = self.io.load(key, partition)
            parts[partition] = current
            if partition not in changed or partition not in prepared:
                continue
            started = time.perf_counter()
            new = steps.split_rows(self.pipeline, prepared[partition], side)
            if _same_rows(current, new):
                continue
            self.commit(
                key, partition, new, before=len(current), after=len(new), started=started,
                strategy="rows",
            )  # fmt: skip
            parts[partition] = new
            any_change = True
        return parts, any_change

    # -- 4. training ---------------------------------------------------------------------------
    def training(self, train: FrameArtifact) -> tuple[TrainingState, list[TrainingUpdate], bool]:
        model_key = self.assets.key("model")
        state = self.io.load(model_key)
        if not isinstance(state, TrainingState):
            raise PlanError(
                f"{model_key.to_user_string()} holds a {type(state).__name__}, not the "
                "TrainingState the lester IO manager stores; rematerialise the pipeline"
            )
        every = self.deletions.all_ids()
        value_ids = self.deletions.value_ids()
        hit = rows_mentioning(state.prov, every)
        state_ids = row_identity(state.prov)
        new_ids = row_identity(train.prov)
        appear = rows_mentioning(train.prov, value_ids)
        appear = appear[positions_in(state_ids, new_ids[appear]) < 0]
        if appear.size:
            self.report.fallbacks.append(
                f"{model_key.to_user_string()}: refit ({appear.size} training row(s) appeared "
                "after a value deletion; adding rows is not incremental)"
            )
            return steps.fit_training(self.pipeline, train), [], True
        instance_hit = set(rows_mentioning(state.prov, self.deletions.instance).tolist())
        candidates = np.array([r for r in hit if r not in instance_hit], dtype=np.intp)
        where = positions_in(new_ids, state_ids[candidates]) if candidates.size else candidates
        replace = candidates[where >= 0] if candidates.size else candidates
        forget = np.setdiff1d(hit, replace)
        updates: list[TrainingUpdate] = []
        if replace.size:
            new_values = train.data.iloc[where[where >= 0]].reset_index(drop=True)
            old = state.frame.iloc[replace].reset_index(drop=True)
            if not new_values[list(old.columns)].equals(old):
                updates.append(state.replace_rows(replace, new_values))
        if forget.size:
            updates.append(state.forget_rows(forget))
        resolve = state.features.resolve
        if isinstance(resolve, KeyResolver):
            pruned = KeyResolver(
                without_keys(resolve.indexes, self.deletions.instance), strict=resolve.strict
            )
            state.features = FeatureMatrix(
                state.features.X, state.features.prov, state.features.blocks, pruned
            )
        # the unlearner drops removed rows lazily (tombstones); the stored model must not keep
        # the forgotten rows' features, so they go before it is committed
        state.unlearner.compact()
        return state, updates, bool(updates)

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> ApplyReport:
        started = time.perf_counter()
        sources = self.sources()
        prepared, changed = self.prepared(sources)
        train_parts, _ = self.split(prepared, changed, "train")
        test_parts, test_changed = self.split(prepared, changed, "test")
        train = concat_frames(list(train_parts.values()))
        t0 = time.perf_counter()
        state, updates, trained = self.training(train)
        self.report.phases["training update"] = time.perf_counter() - t0
        refit = trained and not updates
        if trained:
            for update in updates:
                for record in update.records:
                    self.report.strategies[record.component] = record.strategy
            if refit:
                self.report.strategies["model"] = "refit"
            x_key, y_key, model_key = (self.assets.key(k) for k in ("X_train", "y_train", "model"))
            labels = steps.training_labels(self.pipeline, state, train)
            n_before = int(self.io.manifest(x_key).rows or 0)
            strategy = "refit" if refit else "decremental"
            self.commit(x_key, None, state.features, before=n_before, after=len(train),
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
            self.commit(y_key, None, labels, before=n_before, after=len(train),
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
            self.commit(model_key, None, state, before=n_before, after=len(train),
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
        if test_changed or trained:
            self.test(state, concat_frames(list(test_parts.values())), updates, refit)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def test(
        self, state: TrainingState, test: FrameArtifact, updates: list[TrainingUpdate], refit: bool
    ) -> None:
        x_key, y_key = self.assets.key("X_test"), self.assets.key("y_test")
        started = time.perf_counter()
        old = self.io.load(x_key)
        changed_blocks = sorted({b for u in updates for b in u.reencoded_blocks})
        if len(test) == 0:  # every test row deleted: encoders refuse empty input
            width = state.features.shape[1]
            empty = sp.csr_matrix((0, width)) if sp.issparse(state.X) else np.zeros((0, width))
            matrix = FeatureMatrix(empty, test.prov, state.features.blocks, old.resolve)
        elif refit:
            matrix = steps.encode_test(state, test)
        else:
            rows = positions_in(row_identity(old.prov), row_identity(test.prov))
            rows[rows_mentioning(test.prov, self.deletions.value_ids())] = -1
            unchanged = (
                not changed_blocks
                and len(rows) == old.shape[0]
                and bool((rows == np.arange(len(rows))).all())
            )
            if unchanged:
                return
            matrix = state.reencode_matrix(old, rows, test.data, test.prov, changed_blocks)
        resolve = matrix.resolve
        if isinstance(resolve, KeyResolver):
            resolve = KeyResolver(
                without_keys(resolve.indexes, self.deletions.instance), strict=resolve.strict
            )
            matrix = FeatureMatrix(matrix.X, matrix.prov, matrix.blocks, resolve)
        strategy = (
            "encode"
            if refit
            else ("reencode " + ",".join(changed_blocks) if changed_blocks else "rows")
        )
        self.commit(x_key, None, matrix, before=old.shape[0], after=len(test), started=started,
                    strategy=strategy)  # fmt: skip
        labels = steps.testing_labels(self.pipeline, test)
        self.commit(y_key, None, labels, before=old.shape[0], after=len(test),
                    started=time.perf_counter(), strategy="rows")  # fmt: skip


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


def reached_partitions(
    io: LesterIOManager, key: dg.AssetKey, deletions: Deletions
) -> list[Partition]:
    """The stored partitions of ``key`` holding rows (or key index entries) that
    ``deletions`` reach, found by probing provenance only (:meth:`LesterIOManager.probe`)."""
    every = deletions.all_ids()
    return [
        partition
        for partition in stored_partitions(io, key)
        if _reaches(io.probe(key, partition), every, deletions.instance)
    ]


def needs_recompute(
    pipeline: LesterPipeline, assets: PipelineAssets, io: LesterIOManager, deletions: Deletions
) -> bool:
    """True if the plan re-executes in full for a source the deletions touch
    (:func:`deletion_rule`), judged on the sources' stored schemas."""
    touched = set(deletions.instance) | set(deletions.values)
    if not touched:
        return False
    samples: dict[str, FrameArtifact] = {}
    for name in pipeline.sources:
        key = assets.key("source", name)
        stored = stored_partitions(io, key)
        if not stored:
            return False  # a source never materialised: nothing downstream to recompute
        samples[name] = io.load_empty(key, stored[0])
    plan = pipeline.prepare(**steps.source_frames(pipeline, samples))
    return any(deletion_rule(plan.node, s)[0] == "recompute" for s in sorted(touched))


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
        out.extend((key, p) for p in reached_partitions(io, key, deletions))
    recompute = needs_recompute(pipeline, assets, io, deletions)
    reached = False
    for kind in ("prepared", "train", "test"):
        key = assets.key(kind)
        found = stored_partitions(io, key) if recompute else reached_partitions(io, key, deletions)
        out.extend((key, p) for p in found)
        reached = reached or bool(found)
    if reached:
        for kind in ("X_train", "y_train", "model", "X_test", "y_test"):
            out.append((assets.key(kind), None))  # type: ignore[arg-type]
    return out


def apply_deletions(
    pipeline: LesterPipeline,
    assets: PipelineAssets,
    io: LesterIOManager,
    requests: Iterable[Request],
    *,
    run_id: str,
    on_commit: Callable[[Commit], None] | None = None,
) -> ApplyReport:
    """Apply ``requests`` to every stored artifact of ``pipeline`` (see the module docstring);
    ``on_commit`` is called after each artifact commit."""
    batch = list(requests)
    if not batch:
        return ApplyReport(())
    wrong = [r.id for r in batch if r.pipeline != pipeline.name]
    if wrong:
        raise PlanError(
            f"requests {wrong} belong to another pipeline than {pipeline.name!r}; apply each "
            "pipeline's requests with its own assets"
        )
    deletions = deletions_of(batch, key_indexes_for(pipeline, assets, io))
    return _Run(pipeline, assets, io, deletions, run_id, on_commit).run()
