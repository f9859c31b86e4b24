"""The deletion checks behind :func:`~lester_dagster.orchestration.verify.verify`, one method
of :class:`Verifier` each, over the stored artifacts of one pipeline (each loaded once), and
their results (:class:`Violation`, :class:`CheckResult`). The model check, which refits, is in
:mod:`~lester_dagster.orchestration.verify`; that module's docstring says what each check
proves.

Rows are matched across artifacts by their provenance
(:func:`~lester_dagster.ivm.frames.row_identity`), never by position or a data column; values
compare equal when both are missing, numbers up to :data:`VALUE_RTOL`, X entries up to the
oracle's ``X_TOLERANCE`` (1e-9).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import dagster as dg
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.features.matrix import FeatureMatrix, encode_labels
from lester_dagster.frame import Prov
from lester_dagster.frame.provenance import Ids
from lester_dagster.ivm.frames import deletion_rule, positions_in, row_identity, rows_mentioning
from lester_dagster.ivm.oracle import X_TOLERANCE
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import (
    FrameArtifact,
    LabelsArtifact,
    forget_in_source,
    key_indexes_of,
)
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import StepKind
from lester_dagster.orchestration.reach import Deletions, stored_partitions
from lester_dagster.orchestration.reexecute import reexecute_all
from lester_dagster.store.atomic import list_versions

__all__ = [
    "CHECKS",
    "DELETION_CHECKS",
    "MODEL_CHECK",
    "NO_DELETED_RECORDS",
    "NO_STALE_VERSIONS",
    "ROWS_REENCODED",
    "ROWS_REEXECUTED",
    "VALUES_MISSING",
    "CheckResult",
    "Verifier",
    "Violation",
    "max_abs_diff",
]

NO_DELETED_RECORDS: Final = "no_deleted_records"
VALUES_MISSING: Final = "deleted_values_missing"
ROWS_REEXECUTED: Final = "value_rows_reexecuted"
ROWS_REENCODED: Final = "value_rows_reencoded"
NO_STALE_VERSIONS: Final = "no_stale_versions"
MODEL_CHECK: Final = "model_equals_refit"
DELETION_CHECKS: tuple[str, ...] = (
    NO_DELETED_RECORDS,
    VALUES_MISSING,
    ROWS_REEXECUTED,
    ROWS_REENCODED,
    NO_STALE_VERSIONS,
)
"""The checks of deleted records and values (cheap: no refit)."""
CHECKS: tuple[str, ...] = (*DELETION_CHECKS, MODEL_CHECK)
"""Every check, in the order they run."""

VALUE_RTOL = 1e-12  # prepared float values recomputed by the same code: equal up to rounding
Partition = str | None
_ROW_KINDS: tuple[StepKind, ...] = ("prepared", "train", "test")


def _label(asset: str, partition: Partition) -> str:
    return f"{asset}[{partition}]" if partition is not None else asset


@dataclass(frozen=True)
class Violation:
    """One thing left behind: ``check`` failed on ``asset`` (``partition``) for ``count``
    rows (or values, keys), described by ``what``."""

    check: str
    asset: str
    partition: Partition
    what: str
    count: int

    @property
    def label(self) -> str:
        return _label(self.asset, self.partition)

    def __str__(self) -> str:
        return f"{self.label}: {self.what}"


@dataclass
class CheckResult:
    """One check over the artifacts it examined: ``artifacts`` (asset partitions) and ``rows``
    (rows of those artifacts, or of the records with deleted values, it compared)."""

    name: str
    violations: list[Violation] = field(default_factory=list)
    artifacts: int = 0
    rows: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, asset: str, partition: Partition, what: str, count: int) -> None:
        self.violations.append(Violation(self.name, asset, partition, what, count))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": [str(v) for v in self.violations],
            "artifacts": self.artifacts,
            "rows": self.rows,
            "skipped": list(self.skipped),
        }


# -- comparisons -----------------------------------------------------------------------------------


def _same_values(a: pd.Series, b: pd.Series) -> npt.NDArray[np.bool_]:
    """Per row, whether ``a`` and ``b`` hold the same value (both missing counts as equal;
    numbers up to :data:`VALUE_RTOL`)."""
    x, y = a.reset_index(drop=True), b.reset_index(drop=True)
    missing = x.isna().to_numpy(dtype=bool) & y.isna().to_numpy(dtype=bool)
    numeric = pd.api.types.is_numeric_dtype(x.dtype) and pd.api.types.is_numeric_dtype(y.dtype)
    if numeric and not pd.api.types.is_bool_dtype(x.dtype):
        u = x.to_numpy(dtype=np.float64, na_value=np.nan)
        v = y.to_numpy(dtype=np.float64, na_value=np.nan)
        same = np.isclose(u, v, rtol=VALUE_RTOL, atol=0.0, equal_nan=True)
    else:
        same = (x.astype(object) == y.astype(object)).to_numpy(dtype=bool, na_value=False)
    return np.asarray(same | missing, dtype=bool)


def _differing(a: pd.DataFrame, b: pd.DataFrame) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Rows of ``a`` that differ from the same rows of ``b``, and the columns they differ in."""
    rows = np.zeros(len(a), dtype=bool)
    columns: list[str] = []
    for column in a.columns:
        differ = ~_same_values(a[column], b[column])
        if differ.any():
            rows |= differ
            columns.append(str(column))
    return rows, columns


def _dense(X: Any) -> npt.NDArray[np.float64]:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference of two matrices (``inf`` if their shapes differ), without
    densifying sparse ones."""
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    if a.shape[0] == 0 or a.shape[1] == 0:
        return 0.0
    if sp.issparse(a) or sp.issparse(b):
        delta = sp.csr_matrix(a) - sp.csr_matrix(b)
        return float(abs(delta).max()) if delta.nnz else 0.0
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _rows_of(value: Any) -> tuple[Prov, Mapping[str, pd.DataFrame]] | None:
    """The row provenance and key indexes of a stored value (None: it has no rows)."""
    if isinstance(value, FrameArtifact):
        return value.prov, value.key_indexes
    if isinstance(value, LabelsArtifact):
        return value.labels.prov, value.key_indexes
    if isinstance(value, FeatureMatrix):
        return value.prov, key_indexes_of(value)
    if isinstance(value, TrainingState):
        return value.prov, key_indexes_of(value.features)
    return None


class Verifier:
    """The checks over one pipeline's stored artifacts; loads each artifact once."""

    def __init__(
        self,
        built: PipelineAssets,
        io: LesterIOManager,
        deletions: Deletions,
        stored: set[dg.AssetKey],
        scope: Collection[tuple[dg.AssetKey, Partition]] | None = None,
    ) -> None:
        self.built = built
        self.pipeline = built.pipeline
        self.io = io
        self.deletions = deletions
        self.stored = stored
        self.partitions = {k: stored_partitions(io, k) for k in built.keys.values()}
        # the (asset, partition) artifacts the checks cover; every partition is still read
        # where a check needs whole assets (re-executing rows from the sources)
        within = set(scope) if scope is not None else None
        self.checked = {
            k: [p for p in parts if within is None or (k, p) in within]
            for k, parts in self.partitions.items()
        }
        self.loaded: dict[tuple[dg.AssetKey, Partition], Any] = {}
        self.value_ids = deletions.value_ids()
        self._fresh: tuple[FrameArtifact | None, list[str]] | None = None

    # -- loading -------------------------------------------------------------------------------
    def parts(self, key: dg.AssetKey, *, selected: bool = True) -> dict[Partition, Any]:
        """The stored partitions of ``key`` (``selected``: only if the asset is verified)."""
        if selected and key not in self.stored:
            return {}
        out = {}
        for partition in (self.checked if selected else self.partitions).get(key, []):
            if (key, partition) not in self.loaded:
                self.loaded[key, partition] = self.io.load(key, partition)
            out[partition] = self.loaded[key, partition]
        return out

    def whole(self, key: dg.AssetKey) -> FrameArtifact | None:
        """All stored partitions of a frame asset as one frame (read even if not selected)."""
        parts = self.parts(key, selected=False).values()
        frames = [p for p in parts if isinstance(p, FrameArtifact)]
        return concat_frames(frames) if frames else None

    def state(self) -> TrainingState | None:
        value = self.parts(self.built.key("model"), selected=False).get(None)
        return value if isinstance(value, TrainingState) else None

    @property
    def artifacts(self) -> int:
        """The stored (asset, partition) artifacts verified."""
        return sum(len(self.checked.get(k, [])) for k in self.stored)

    def name(self, key: dg.AssetKey) -> str:
        return key.to_user_string()

    def row_assets(self) -> list[dg.AssetKey]:
        sources = [self.built.key("source", s) for s in self.pipeline.sources]
        kinds: tuple[StepKind, ...] = (*_ROW_KINDS, "X_train", "y_train", "model")
        return [*sources, *(self.built.key(k) for k in (*kinds, "X_test", "y_test"))]

    # -- (a) deleted records -------------------------------------------------------------------
    def no_deleted_records(self, result: CheckResult) -> None:
        if not self.deletions.request_ids:  # nothing deleted: count the rows, load nothing
            for key in self.row_assets():
                if key in self.stored:
                    for partition in self.checked[key]:
                        result.artifacts += 1
                        result.rows += int(self.io.manifest(key, partition).rows or 0)
            return
        instance = {s: ids for s, ids in self.deletions.instance.items() if len(ids)}
        for key in self.row_assets():
            for partition, value in self.parts(key).items():
                result.artifacts += 1
                rows = _rows_of(value)
                if rows is None:
                    result.add(
                        self.name(key),
                        partition,
                        f"holds a {type(value).__name__}, "
                        "not an artifact with row provenance; rematerialise it",
                        1,
                    )
                    continue
                prov, indexes = rows
                result.rows += prov.n
                asset = self.name(key)
                per_source = {
                    s: int(rows_mentioning(prov, {s: ids}).size) for s, ids in instance.items()
                }
                hit = rows_mentioning(prov, instance)
                if hit.size:
                    detail = ", ".join(f"{s}: {n}" for s, n in per_source.items() if n)
                    result.add(
                        asset,
                        partition,
                        f"{hit.size} row(s) derived from a deleted record ({detail})",
                        int(hit.size),
                    )
                for source, ids in instance.items():
                    index = indexes.get(source)
                    held = int(index.index.isin(ids).sum()) if index is not None else 0
                    if held:
                        result.add(
                            asset,
                            partition,
                            f"its key index of {source!r} still holds {held} deleted key(s)",
                            held,
                        )
                if isinstance(value, TrainingState):
                    self.model_rows(result, asset, value)

    def no_stale_versions(self, result: CheckResult) -> None:
        """With deletions in effect, no artifact keeps an older version on disk: the store
        keeps one previous version for concurrent readers, and it may hold deleted data (the
        deletion run removes it when it commits)."""
        for key in self.row_assets():
            if key not in self.stored:
                continue
            for partition in self.checked[key]:
                result.artifacts += 1
                older = len(list_versions(self.io.path_for(key, partition))) - 1
                if older > 0 and self.deletions.request_ids:
                    result.add(
                        self.name(key),
                        partition,
                        f"{older} older version(s) of the artifact are still on disk and may "
                        "hold deleted data; re-run the deletion run or "
                        "lester_dagster.store.collect_garbage() on it",
                        older,
                    )

    def model_rows(self, result: CheckResult, asset: str, state: TrainingState) -> None:
        """The training state holds one row per training row everywhere, and no removed row."""
        unlearner = state.unlearner
        counts = {
            "frame": len(state.frame),
            "X": int(state.X.shape[0]),
            "y": len(state.y),
            "provenance": state.prov.n,
            "model": unlearner.n_rows,
        }
        if len(set(counts.values())) != 1:
            text = ", ".join(f"{k} {v}" for k, v in counts.items())
            result.add(
                asset,
                None,
                f"its training rows disagree ({text}); rematerialise it",
                max(counts.values()) - min(counts.values()),
            )
        stored = int(unlearner._X_all.shape[0])  # the matrix as stored, removed rows included
        if stored > unlearner.n_rows:
            dead = stored - unlearner.n_rows
            result.add(
                asset,
                None,
                f"its model still stores {dead} removed training row(s) "
                "(tombstones of forgotten rows; compact the unlearner)",
                dead,
            )

    # -- (b) deleted values --------------------------------------------------------------------
    def values_missing(self, result: CheckResult) -> None:
        for source, columns in self.deletions.values.items():
            key = self.built.key("source", source)
            for partition, art in self.parts(key).items():
                result.artifacts += 1
                if not isinstance(art, FrameArtifact):
                    continue
                for column, ids in columns.items():
                    rows = rows_mentioning(art.prov, {source: ids})
                    result.rows += int(rows.size)
                    if column not in art.data.columns or not rows.size:
                        continue
                    kept = int(art.data[column].iloc[rows].notna().sum())
                    if kept:
                        result.add(
                            self.name(key),
                            partition,
                            f"{kept} deleted value(s) of {column!r} still stored",
                            kept,
                        )

    def fresh(self) -> tuple[FrameArtifact | None, list[str]]:
        """The re-executed prepared rows of the records with deleted values (on the stored
        sources with every deletion enforced), and why some could not be compared."""
        if self._fresh is not None:
            return self._fresh
        if not self.value_ids:
            self._fresh = (None, [])
            return self._fresh
        sources: dict[str, FrameArtifact] = {}
        for name in self.pipeline.sources:
            whole = self.whole(self.built.key("source", name))
            if whole is None:
                self._fresh = (None, [f"source {name!r} is not stored: nothing to re-execute"])
                return self._fresh
            enforced = forget_in_source(
                whole, name, self.deletions.instance.get(name), self.deletions.values.get(name, {})
            )
            sources[name] = enforced if enforced is not None else whole
        plan = self.pipeline.prepare(**steps.source_frames(self.pipeline, sources))
        ids: dict[str, Ids] = {}
        skipped: list[str] = []
        for source, wanted in self.value_ids.items():
            rule, why = deletion_rule(plan.node, source)
            if rule == "recompute":
                skipped.append(
                    f"rows with deleted values of {source!r} ({why}): they have no row identity; "
                    "compare with a full rematerialisation"
                )
            else:
                ids[source] = wanted
        self._fresh = (reexecute_all(self.pipeline, sources, ids), skipped)
        return self._fresh

    def expected_rows(self, kind: StepKind) -> FrameArtifact | None:
        fresh, _ = self.fresh()
        if fresh is None or kind == "prepared":
            return fresh
        return steps.split_rows(self.pipeline, fresh, "train" if kind == "train" else "test")

    def rows_reexecuted(self, result: CheckResult) -> None:
        if not self.value_ids:
            return
        kinds = [k for k in _ROW_KINDS if self.built.key(k) in self.stored]
        if not kinds:
            return
        fresh, skipped = self.fresh()
        result.skipped.extend(skipped)
        if fresh is None:
            return
        ids = {s: i for s, i in self.value_ids.items() if s in fresh.prov.sources}
        for kind in kinds:
            key = self.built.key(kind)
            expected = self.expected_rows(kind)
            assert expected is not None
            found = np.zeros(len(expected), dtype=bool)
            identities = row_identity(expected.prov)
            for partition, art in self.parts(key).items():
                result.artifacts += 1
                affected = rows_mentioning(art.prov, ids)
                result.rows += int(affected.size)
                at = positions_in(identities, row_identity(art.prov)[affected])
                asset = self.name(key)
                stale = int((at < 0).sum())
                if stale:
                    result.add(
                        asset,
                        partition,
                        f"{stale} row(s) of records with deleted values "
                        "that a re-execution of the plan does not produce",
                        stale,
                    )
                match = at >= 0
                found[at[match]] = True
                columns = [c for c in expected.columns if c in art.data.columns]
                extra = sorted(set(art.columns) ^ set(expected.columns))
                if extra:
                    result.add(
                        asset,
                        partition,
                        f"columns {extra} differ from a re-execution's {expected.columns}",
                        len(extra),
                    )
                mine = art.data.iloc[affected[match]][columns]
                theirs = expected.data.iloc[at[match]][columns]
                differ, where = _differing(mine, theirs)
                if differ.any():
                    result.add(
                        asset,
                        partition,
                        f"{int(differ.sum())} row(s) of records with "
                        "deleted values differ from a re-execution of the plan (columns "
                        f"{', '.join(where)})",
                        int(differ.sum()),
                    )
            missing = int((~found).sum())
            if missing:
                result.add(
                    self.name(key),
                    None,
                    f"{missing} re-executed row(s) of records with deleted values are not stored",
                    missing,
                )

    def rows_reencoded(self, result: CheckResult) -> None:
        if not self.value_ids:
            return
        names: tuple[StepKind, ...] = ("X_train", "y_train", "model", "X_test", "y_test")
        targets = [k for k in names if self.built.key(k) in self.stored]
        if not targets:
            return
        fresh, skipped = self.fresh()
        result.skipped.extend(skipped)
        state = self.state()
        if fresh is None:
            return
        if state is None:
            result.add(
                self.name(self.built.key("model")),
                None,
                "is not a TrainingState (or not "
                "stored): X cannot be re-encoded; rematerialise the model",
                1,
            )
            return
        ids = {s: i for s, i in self.value_ids.items() if s in fresh.prov.sources}
        for kind in targets:
            key = self.built.key(kind)
            side: StepKind = "test" if kind in ("X_test", "y_test") else "train"
            expected = self.expected_rows(side)
            assert expected is not None
            for partition, value in self.parts(key).items():
                result.artifacts += 1
                asset = self.name(key)
                if isinstance(value, TrainingState):
                    self.compare_matrix(result, asset, value.features, expected, state, ids)
                    self.compare_labels(result, asset, value.y, value.prov, expected, ids)
                elif isinstance(value, FeatureMatrix):
                    self.compare_matrix(result, asset, value, expected, state, ids)
                elif isinstance(value, LabelsArtifact):
                    labels = value.labels
                    self.compare_labels(result, asset, labels.y, labels.prov, expected, ids)
                else:
                    result.add(
                        asset, partition, f"holds a {type(value).__name__}; rematerialise it", 1
                    )

    def compare_matrix(
        self,
        result: CheckResult,
        asset: str,
        matrix: FeatureMatrix,
        expected: FrameArtifact,
        state: TrainingState,
        ids: Mapping[str, Ids],
    ) -> None:
        affected = rows_mentioning(matrix.prov, ids)
        result.rows += int(affected.size)
        at = positions_in(row_identity(expected.prov), row_identity(matrix.prov)[affected])
        stale = int((at < 0).sum())
        if stale:
            result.add(
                asset,
                None,
                f"{stale} X row(s) of records with deleted values that a "
                "re-execution of the plan does not produce",
                stale,
            )
        missing = len(expected) - int(np.unique(at[at >= 0]).size)
        if missing:
            result.add(
                asset,
                None,
                f"{missing} re-executed row(s) of records with deleted values have no X row",
                missing,
            )
        match = at >= 0
        if not match.any():
            return
        encoded = steps.encode_test(state, expected.take(at[match]))
        if encoded.shape[1] != matrix.shape[1]:
            result.add(
                asset,
                None,
                f"X has {matrix.shape[1]} columns, the model's encoders produce {encoded.shape[1]}",
                1,
            )
            return
        delta = np.abs(_dense(matrix.X[affected[match]]) - _dense(encoded.X))
        bad = delta.max(axis=1) > X_TOLERANCE
        if bad.any():
            blocks = [
                b.name for b in matrix.blocks if (delta[:, b.start : b.stop] > X_TOLERANCE).any()
            ]
            result.add(
                asset,
                None,
                f"{int(bad.sum())} X row(s) of records with deleted values "
                "differ from their re-executed rows encoded with the model's fitted "
                f"encoders (blocks {', '.join(blocks)}; max abs diff "
                f"{float(delta.max()):.3g})",
                int(bad.sum()),
            )

    def compare_labels(
        self,
        result: CheckResult,
        asset: str,
        y: npt.NDArray[Any],
        prov: Prov,
        expected: FrameArtifact,
        ids: Mapping[str, Ids],
    ) -> None:
        affected = rows_mentioning(prov, ids)
        at = positions_in(row_identity(expected.prov), row_identity(prov)[affected])
        match = at >= 0
        if not match.any():
            return
        rows = expected.take(at[match])
        labels = encode_labels(
            self.pipeline.label, rows.to_result(), inputs=self.pipeline.label_inputs
        ).y
        mine = np.asarray(y)[affected[match]]
        differ = int((mine != np.asarray(labels)).sum())
        if differ:
            result.add(
                asset,
                None,
                f"{differ} label(s) of records with deleted values differ "
                "from the label function of their re-executed rows",
                differ,
            )
