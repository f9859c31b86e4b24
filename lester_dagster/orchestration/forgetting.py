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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import numpy.typing as npt

from lester_dagster.errors import ArtifactNotFoundError, PlanError
from lester_dagster.features.matrix import FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, KeyResolver
from lester_dagster.frame.plan import Node
from lester_dagster.frame.provenance import Ids, sorted_unique
from lester_dagster.ivm.frames import (
    deletion_rule,
    positions_in,
    row_identity,
    rows_decided_by,
    rows_mentioning,
)
from lester_dagster.ivm.training import TrainingState, TrainingUpdate
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import (
    FrameArtifact,
    LabelsArtifact,
    forget_in_source,
    key_indexes_of,
    without_keys,
)
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.gc_scope import young_collections_only
from lester_dagster.orchestration.holdout import HoldoutSide
from lester_dagster.orchestration.io_manager import (
    PARTITION_COUNT_KEY,
    LesterIOManager,
    segment_metadata,
)
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline, StepKind
from lester_dagster.orchestration.reach import (
    Deletions,
    Partition,
    deletions_of,
    key_indexes_for,
    needs_recompute,
    reached_partitions,
    stored_partitions,
    stored_plan,
)
from lester_dagster.orchestration.reexecute import reexecute_all
from lester_dagster.store.atomic import Collector, list_versions
from lester_dagster.store.requests import Request

__all__ = [
    "FAULT_ENV",
    "ApplyReport",
    "Commit",
    "apply_deletions",
]

FAULT_ENV = "LESTER_FAULT_AFTER_COMMITS"
"""Test hook: kill the process (``os._exit(137)``) right after this many artifact commits."""

APPLIED_KEY = "lester/applied_requests"


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
    #: what the commit rewrote (``segment_metadata``: segments written, kept, bytes written)
    storage: Mapping[str, int] = field(default_factory=dict)

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
    #: The (asset, partition) artifacts the requests reached before the run changed anything
    #: (found from provenance; with X, y and the model when any row artifact was reached).
    reached: list[tuple[dg.AssetKey, Partition]] = field(default_factory=list)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per committed artifact (its compute + durable write), per phase that is not one
        artifact's (``training update``: encoders, X, y and model together) and in total."""
        out = {c.label: round(c.seconds, 6) for c in self.commits}
        out.update({name: round(seconds, 6) for name, seconds in self.phases.items()})
        out["total"] = round(self.seconds, 6)
        return out


def _same_rows(a: FrameArtifact, b: FrameArtifact) -> bool:
    """Same rows (provenance and values, in order); the key indexes are then the same too, as
    the store keeps only the keys that rows mention."""
    if len(a) != len(b) or set(a.prov.sources) != set(b.prov.sources):
        return False
    if any(not np.array_equal(a.prov.keys[s], b.prov.keys[s]) for s in a.prov.sources):
        return False
    return bool(a.data.reset_index(drop=True).equals(b.data.reset_index(drop=True)))


class _Run(HoldoutSide):
    """One application of a batch of deletions (see the module docstring). Only the partitions
    the deletions reach (found from provenance before anything changes) are loaded, and the
    sources in full only where rows must be re-executed (value deletions) or the plan
    recomputed."""

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
        self.reach: dict[dg.AssetKey, set[Partition]] = {}
        self.rows_before: dict[Partition, int] = {}
        self._plan: Node | None = None
        self._plan_built = False
        self.collector = Collector()  # old versions collected in the background

    # -- storage -------------------------------------------------------------------------------
    def load_all(self, key: dg.AssetKey) -> dict[Partition, Any]:
        return {p: self.io.load(key, p) for p in stored_partitions(self.io, key)}

    def stored(self, key: dg.AssetKey) -> list[Partition]:
        found = stored_partitions(self.io, key)
        if not found:
            raise ArtifactNotFoundError(
                f"asset {key.to_user_string()} was never materialised; materialise the "
                "pipeline before applying deletions"
            )
        return found

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
        metadata: dict[str, Any] = {
            "run_id": self.run_id,
            APPLIED_KEY: list(self.deletions.request_ids),
            "lester/update_strategy": strategy,
        }
        if partition is not None:  # the count the partition was written under stays
            count = self.io.manifest(key, partition).metadata.get(PARTITION_COUNT_KEY)
            if count is not None:
                metadata[PARTITION_COUNT_KEY] = count
        path = self.io.path_for(key, partition)
        self.collector.wait(path)
        manifest = self.io.store(key, value, partition, metadata=metadata)
        # the previous version holds the deleted data: it goes now, on the collector's thread
        # while the next artifact is computed, and before the run returns (the store keeps one
        # previous version for concurrent readers; a deletion cannot wait for them)
        self.collector.submit(path)
        seconds = time.perf_counter() - started
        storage = segment_metadata(manifest)
        commit = Commit(key, partition, before, after, seconds, strategy, manifest.digest, storage)
        self.report.commits.append(commit)
        if self.on_commit is not None:
            self.on_commit(commit)
        if self.fault_after is not None and len(self.report.commits) >= self.fault_after:
            os._exit(137)  # the test hook: die between two commits, like kill -9

    # -- 0. where the deletions reach ----------------------------------------------------------
    def find_reach(self) -> bool:
        """Probe every source, prepared, train and test partition (provenance only); record the
        test partitions' sizes; return True if the plan must be recomputed."""
        kinds: list[dg.AssetKey] = [self.assets.key("source", s) for s in self.pipeline.sources]
        kinds += [self.assets.key(k) for k in ("prepared", "train", "test")]
        for key in kinds:
            self.reach[key] = set(reached_partitions(self.io, self.assets, key, self.deletions))
        test = self.assets.key("test")
        self.rows_before = {
            p: int(self.io.manifest(test, p).rows or 0) for p in stored_partitions(self.io, test)
        }
        recompute = needs_recompute(self.pipeline, self.assets, self.io, self.deletions)
        reached = [
            (k, p) for k in kinds for p in stored_partitions(self.io, k) if p in self.reach[k]
        ]
        rows = [self.assets.key(k) for k in ("prepared", "train", "test")]
        if recompute:  # every partition of the rows is re-executed
            reached += [(k, p) for k in rows for p in stored_partitions(self.io, k)]
        if any(k in rows for k, _ in reached):
            tail = ("X_train", "y_train", "model", "X_test", "y_test")
            reached += [(self.assets.key(k), None) for k in tail]  # type: ignore[arg-type]
        self.report.reached = list(dict.fromkeys(reached))
        return recompute

    # -- 1. sources ----------------------------------------------------------------------------
    def value_scope(self) -> dict[str, Ids] | None:
        """Per source, the key ids of the records re-executing a value deletion's rows reads:
        the records with deleted values and the partner records their prepared rows joined
        (from provenance). None when it needs every record of every source: a deleted column
        decides which rows exist (a filter, join key, sort, ...: ``rows_decided_by``), or the
        prepared rows are aggregates."""
        value_ids = self.deletions.value_ids()
        if not value_ids:
            return {}
        plan = self.plan()
        if plan is None:
            return None  # a source was never materialised: loading the sources says so
        deleted = [ColumnRef(s, c) for s, columns in self.deletions.values.items() for c in columns]
        why = rows_decided_by(plan, deleted)
        label = "value deletion: re-executed with"
        if why is not None:
            self.report.strategies[label] = f"every source record ({why})"
            return None
        found: dict[str, list[Ids]] = {s: [ids] for s, ids in value_ids.items()}
        key = self.assets.key("prepared")
        for partition in stored_partitions(self.io, key):
            if partition not in self.reach[key]:
                continue
            prov = self.io.probe(key, partition).prov
            if prov is None or not prov.single:
                self.report.strategies[label] = "every source record (aggregated rows)"
                return None
            rows = rows_mentioning(prov, value_ids)
            for source in prov.sources:
                found.setdefault(source, []).append(prov.keys[source][rows])
        self.report.strategies[label] = "the affected records and the records their rows joined"
        return {s: sorted_unique(np.concatenate(parts)) for s, parts in found.items()}

    def sources(self, scope: Mapping[str, Ids] | None) -> dict[str, dict[Partition, FrameArtifact]]:
        """The reached source partitions, and those holding the ``scope`` records (None: every
        partition), updated."""
        out: dict[str, dict[Partition, FrameArtifact]] = {}
        for name in self.pipeline.sources:
            key = self.assets.key("source", name)
            extra: set[Partition] = set()
            if scope is not None and len(scope.get(name, ())):
                holding = Deletions((), {name: scope[name]}, {})
                extra = set(reached_partitions(self.io, self.assets, key, holding))
            wanted = [
                p for p in self.stored(key) if scope is None or p in self.reach[key] or p in extra
            ]
            parts: dict[Partition, FrameArtifact] = {p: self.io.load(key, p) for p in wanted}
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
    def plan(self) -> Node | None:
        """The preparation plan on the sources' stored schemas (built once per run)."""
        if not self._plan_built:
            self._plan, self._plan_built = stored_plan(self.pipeline, self.assets, self.io), True
        return self._plan

    def record_rules(self, key: dg.AssetKey) -> None:
        plan = self.plan()
        if plan is None:
            return  # a source was never materialised (the run stops on it before this)
        touched = set(self.deletions.instance) | set(self.deletions.values)
        for source in sorted(touched):
            rule, why = deletion_rule(plan, source)
            self.report.strategies[f"{key.to_user_string()} <- {source}"] = rule
            if rule == "recompute":
                self.report.fallbacks.append(f"{key.to_user_string()}: recompute ({why})")

    def prepared(
        self, sources: dict[str, dict[Partition, FrameArtifact]], recompute: bool
    ) -> tuple[dict[Partition, FrameArtifact], set[Partition]]:
        """The reached prepared partitions (and those re-executed rows belong to), updated."""
        key = self.assets.key("prepared")
        stored = self.stored(key)
        self.record_rules(key)
        if recompute:
            whole = {name: concat_frames(list(p.values())) for name, p in sources.items()}
            return self.recompute_prepared(key, self.load_all(key), sources, whole)
        fresh = None
        if self.deletions.value_ids():  # the sources were loaded for this (value_scope)
            fresh = self.fresh_rows(self.joined_sources(sources))
        wanted = set(self.reach[key])
        split = self.pipeline.split.by
        owner: npt.NDArray[np.intp] | None = None
        labels = list(sources[split])
        if fresh is not None and stored != [None]:
            if split in fresh.prov.sources and labels != [None]:
                # a re-executed row belongs to the partition holding its split-source record
                ids = [sources[split][p].prov.keys[split] for p in labels]
                where = positions_in(np.concatenate(ids), fresh.prov.keys[split])
                bounds = np.cumsum([len(i) for i in ids])
                owner = np.searchsorted(bounds, where, side="right")
                owner[where < 0] = -1
                wanted |= {labels[o] for o in np.unique(owner) if o >= 0}
        elif fresh is not None:
            wanted |= {None}
        parts: dict[Partition, FrameArtifact] = {
            p: self.io.load(key, p) for p in stored if p in wanted
        }
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

    def joined_sources(
        self, sources: Mapping[str, Mapping[Partition, FrameArtifact]]
    ) -> dict[str, FrameArtifact]:
        """Each source's loaded partitions as one frame (no rows where none was loaded)."""
        out = {}
        for name, parts in sources.items():
            if parts:
                out[name] = concat_frames(list(parts.values()))
            else:
                key = self.assets.key("source", name)
                out[name] = self.io.load_empty(key, self.stored(key)[0])
        return out

    def fresh_rows(self, sources: Mapping[str, FrameArtifact]) -> FrameArtifact | None:
        """The prepared rows of the records whose values were deleted, re-executed."""
        return reexecute_all(self.pipeline, sources, self.deletions.value_ids())

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
        """The ``side`` partitions that the deletions reach or whose prepared rows changed,
        as they are after the update (split again where the prepared rows changed)."""
        key = self.assets.key("train" if side == "train" else "test")
        parts: dict[Partition, FrameArtifact] = {}
        any_change = False
        for partition in stored_partitions(self.io, key):
            if partition not in self.reach[key] and partition not in changed:
                continue
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
    def training(
        self, train_parts: Mapping[Partition, FrameArtifact]
    ) -> tuple[TrainingState, list[TrainingUpdate], bool]:
        """The model's training state after the deletions. ``train_parts`` hold every training
        row the deletions reach (as they are now); the other training rows are not read."""
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
        rows = concat_frames(list(train_parts.values())) if train_parts else None
        new_ids = row_identity(rows.prov) if rows is not None else np.zeros(0, np.uint64)
        appear = rows_mentioning(rows.prov, value_ids) if rows is not None else hit[:0]
        if appear.size:  # (positions_in sorts every training row's identity)
            appear = appear[positions_in(state_ids, new_ids[appear]) < 0]
        if hit.size and not state.prov.single:
            self.report.fallbacks.append(
                f"{model_key.to_user_string()}: refit (the training rows are aggregates: a "
                "deleted record changes its rows instead of removing them)"
            )
            train = self.whole_side("train", train_parts)
            return steps.fit_training(self.pipeline, train), [], True
        if appear.size:
            self.report.fallbacks.append(
                f"{model_key.to_user_string()}: refit ({appear.size} training row(s) appeared "
                "after a value deletion; adding rows is not incremental)"
            )
            train = self.whole_side("train", train_parts)
            return steps.fit_training(self.pipeline, train), [], True
        instance_hit = set(rows_mentioning(state.prov, self.deletions.instance).tolist())
        candidates = np.array([r for r in hit if r not in instance_hit], dtype=np.intp)
        where = positions_in(new_ids, state_ids[candidates]) if candidates.size else candidates
        replace = candidates[where >= 0] if candidates.size else candidates
        forget = np.setdiff1d(hit, replace)
        updates: list[TrainingUpdate] = []
        if replace.size:
            assert rows is not None
            new_values = rows.data.iloc[where[where >= 0]].reset_index(drop=True)
            if state.values_differ(replace, new_values):
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
        # the forgotten rows' features, so they go before it is committed. The model's matrix
        # and X_train hold the same values: it takes X_train's (one object, stored once)
        state.unlearner.compact_into(state.features.X)
        return state, updates, bool(updates)

    def training_labels(
        self, state: TrainingState, train_parts: Mapping[Partition, FrameArtifact]
    ) -> LabelsArtifact:
        """y_train: the state's labels, with the lineage of the training rows and X's keys."""
        key = self.assets.key("train")
        sample = next(iter(train_parts.values()), None)
        if sample is None:
            sample = self.io.load_empty(key, stored_partitions(self.io, key)[0])
        inputs = tuple(self.pipeline.label_inputs or sample.columns)
        lineage: frozenset[ColumnRef] = frozenset()
        for column in inputs:
            lineage |= sample.lineage.get(column, frozenset())
        labels = Labels(np.asarray(state.y), state.prov, inputs, lineage)
        return LabelsArtifact(labels, key_indexes_of(state.features))

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> ApplyReport:
        started = time.perf_counter()
        with young_collections_only(), self.collector:
            self.sweep()
            report = self._run()
        report.seconds = time.perf_counter() - started  # with the last collections
        return report

    def sweep(self) -> None:
        """Collect every older version still on disk: one a run that died between a commit
        and its collection left behind, or the one a materialisation keeps for readers. They
        may hold rows deleted since, and this run may not write those artifacts again
        (``verify`` flags any older version while deletions are in effect)."""
        kinds: tuple[StepKind, ...] = (
            "prepared", "train", "test", "X_train", "y_train", "model", "X_test", "y_test",
        )  # fmt: skip
        keys = [self.assets.key("source", s) for s in self.pipeline.sources]
        keys += [self.assets.key(k) for k in kinds]
        for key in keys:
            for partition in stored_partitions(self.io, key):
                path = self.io.path_for(key, partition)
                if len(list_versions(path)) > 1:
                    self.collector.submit(path)

    def _run(self) -> ApplyReport:
        started = time.perf_counter()
        recompute = self.find_reach()
        sources = self.sources(None if recompute else self.value_scope())
        prepared, changed = self.prepared(sources, recompute)
        train_parts, _ = self.split(prepared, changed, "train")
        test_parts, test_changed = self.split(prepared, changed, "test")
        t0 = time.perf_counter()
        state, updates, trained = self.training(train_parts)
        self.report.phases["training update"] = time.perf_counter() - t0
        refit = trained and not updates
        if trained:
            for update in updates:
                for record in update.records:
                    self.report.strategies[record.component] = record.strategy
            if refit:
                self.report.strategies["model"] = "refit"
            x_key, y_key, model_key = (self.assets.key(k) for k in ("X_train", "y_train", "model"))
            labels = self.training_labels(state, train_parts)
            n_before = int(self.io.manifest(x_key).rows or 0)
            n_after = int(state.X.shape[0])
            strategy = "refit" if refit else "decremental"
            self.commit(x_key, None, state.features, before=n_before, after=n_after,
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
            self.commit(y_key, None, labels, before=n_before, after=n_after,
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
            self.commit(model_key, None, state, before=n_before, after=n_after,
                        started=time.perf_counter(), strategy=strategy)  # fmt: skip
        if test_changed or trained:
            self.test(state, test_parts, updates, refit)
        self.report.seconds = time.perf_counter() - started
        return self.report


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
