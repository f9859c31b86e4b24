"""Where a source record reaches: every stored artifact row, X row and column, and the model.

:func:`trace` reads a key of a source (coerced to the key columns' dtypes, as ``forget`` reads
it: ``"17"`` is the int key 17), hashes it to its key id and lists, per stored asset and
partition, what derives from the record:

* frames (the source itself, the prepared rows, train, test): the row positions whose
  provenance mentions the record, and for every other source the keys of those rows (e.g. the
  mail ids of a customer's prepared rows);
* X_train / X_test: the X rows, and the X columns that hold the source's data (the column range
  of every transformer block whose lineage includes a column of the source);
* y_train / y_test: the rows;
* the model: how many of its training rows derive from the record (and the same column ranges).

It also says what the ledger holds for the key: deleted by request #N, the values of some
columns deleted, a deletion pending or running, or not deleted. Rows are found through the
stored provenance by key id, so a trace works before and after a deletion (after it, the record
reaches nothing).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import ArtifactNotFoundError, UnknownKeyError
from lester_dagster.features.matrix import Block, FeatureMatrix
from lester_dagster.frame import Prov
from lester_dagster.frame.result import hash_key_values, keys_for_ids
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import FrameArtifact, LabelsArtifact
from lester_dagster.orchestration.assets import build_assets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline, StepKind
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.submit import SourceTable, _by_keys, load_source_table
from lester_dagster.orchestration.translator import LesterTranslator
from lester_dagster.store.ledger import Ledger
from lester_dagster.store.requests import normalise_keys

__all__ = ["ColumnRange", "LedgerEntry", "Reach", "TraceReport", "trace"]

_SHOWN = 10  # row positions printed per artifact (JSON has them all)
_STEPS: tuple[StepKind, ...] = (
    "prepared", "train", "test", "X_train", "y_train", "model", "X_test", "y_test",
)  # fmt: skip


@dataclass(frozen=True)
class ColumnRange:
    """X columns ``[start, stop)`` of transformer ``block``, which encodes ``source_columns``
    of the traced source."""

    block: str
    start: int
    stop: int
    source_columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.block} [{self.start}, {self.stop}) <- {', '.join(self.source_columns)}"


@dataclass(frozen=True)
class Reach:
    """The rows of one stored artifact (``asset``, ``partition``) that derive from the record:
    ``rows`` (positions) of its ``of_rows`` rows; for frames, ``keys`` per other source (one
    key per row, ``None`` where the row has no record of it); for X and the model, the
    ``columns`` that hold the source's data."""

    asset: str
    partition: str | None
    kind: str  # "rows", "X", "y" or "model"
    rows: tuple[int, ...]
    of_rows: int
    keys: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    columns: tuple[ColumnRange, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.asset}[{self.partition}]" if self.partition is not None else self.asset

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition,
            "kind": self.kind,
            "rows": list(self.rows),
            "of_rows": self.of_rows,
            "keys": {s: [_jsonable(k) for k in keys] for s, keys in self.keys.items()},
            "columns": [
                {"block": c.block, "start": c.start, "stop": c.stop,
                 "source_columns": list(c.source_columns)}
                for c in self.columns
            ],
        }  # fmt: skip

    def line(self) -> str:
        shown = ", ".join(map(str, self.rows[:_SHOWN]))
        more = f" (+{len(self.rows) - _SHOWN} more)" if len(self.rows) > _SHOWN else ""
        noun = "row" if len(self.rows) == 1 else "rows"
        if self.kind == "model":
            text = f"trained on {len(self.rows)} of its {self.of_rows} rows ({noun} {shown}{more})"
        else:
            text = f"{noun} {shown}{more} of {self.of_rows}"
        for source, keys in self.keys.items():
            values = ", ".join(str(k) for k in keys[:_SHOWN] if k is not None) or "-"
            text += f"; {source} {values}"
        if self.columns:
            text += "; columns " + "; ".join(map(str, self.columns))
        return f"  {self.label:<20} {text}"


@dataclass(frozen=True)
class LedgerEntry:
    """A request of the ledger that names the traced key."""

    request: int
    kind: str
    columns: tuple[str, ...]
    status: str

    def describe(self) -> str:
        verb = {"running": "being ", "pending": "to be "}.get(self.status, "")
        what = "" if self.kind == "instance" else f"values of {', '.join(self.columns)} "
        status = f" ({self.status})" if self.status != "applied" else ""
        return f"{what}{verb}deleted by request #{self.request}{status}"


@dataclass
class TraceReport:
    """What :func:`trace` found (see the module docstring)."""

    pipeline: str
    source: str
    key: Any
    key_id: int
    in_source: bool  # a record with this key is in the source (stored asset, else file)
    requests: list[LedgerEntry]
    reaches: list[Reach]
    ledger_checked: bool = True
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """The key's deletion status in the ledger."""
        live = [r for r in self.requests if r.status != "rejected"]
        if not live:
            return "not deleted" + ("" if self.ledger_checked else " (no ledger)")
        return "; ".join(r.describe() for r in live)

    @property
    def deleted(self) -> bool:
        """Whether an applied request deleted the whole record."""
        return any(r.kind == "instance" and r.status == "applied" for r in self.requests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "source": self.source,
            "key": _jsonable(self.key),
            "key_id": f"{self.key_id:016x}",
            "in_source": self.in_source,
            "status": self.status,
            "requests": [
                {"id": r.request, "kind": r.kind, "columns": list(r.columns), "status": r.status}
                for r in self.requests
            ],
            "reaches": [r.to_dict() for r in self.reaches],
            "seconds": round(self.seconds, 6),
        }

    def lines(self) -> list[str]:
        """A human-readable listing (what ``lester-dagster trace`` prints)."""
        head = f"{self.pipeline}.{self.source} {_jsonable(self.key)} (key id {self.key_id:016x})"
        where = ""
        if not self.in_source:
            where = "; gone from the source" if self.deleted else "; no such record in the source"
        out = [f"{head}: {self.status}{where}"]
        if not self.reaches:
            out.append("  reaches nothing in the stored artifacts")
            return out
        out.append(f"  reaches {len(self.reaches)} stored artifact(s):")
        out.extend(r.line() for r in self.reaches)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _keys_of_rows(
    prov: Prov, indexes: Mapping[str, pd.DataFrame], rows: npt.NDArray[np.intp], skip: str
) -> dict[str, tuple[Any, ...]]:
    """Per source other than ``skip``, the key of each row's record (None if unknown)."""
    out: dict[str, tuple[Any, ...]] = {}
    for source in prov.sources:
        if source == skip:
            continue
        index = indexes.get(source)
        if prov.single:
            ids = [[int(i)] for i in prov.keys[source][rows]]
        else:
            ids = [[int(i) for i in prov.ids_of_row(int(r)).get(source, [])] for r in rows]
        keys: list[Any] = []
        for row_ids in ids:
            known = [i for i in row_ids if index is not None and i in index.index]
            found = keys_for_ids(index, known) if known and index is not None else []
            keys.append(None if not found else found[0] if len(found) == 1 else tuple(found))
        out[source] = tuple(keys)
    return out


def _columns(blocks: Sequence[Block], source: str) -> tuple[ColumnRange, ...]:
    return tuple(
        ColumnRange(
            b.name,
            b.start,
            b.stop,
            tuple(sorted(r.column for r in b.lineage if r.source == source)),
        )
        for b in blocks
        if source in b.sources
    )


def _reach(asset: str, partition: str | None, value: Any, source: str, key_id: int) -> Reach | None:
    """The rows of ``value`` that derive from the record, if any."""
    wanted = np.array([key_id], dtype=np.uint64)
    if isinstance(value, FrameArtifact):
        rows = value.prov.rows_mentioning(source, wanted)
        keys = _keys_of_rows(value.prov, value.key_indexes, rows, source)
        return (
            Reach(asset, partition, "rows", tuple(rows.tolist()), len(value), keys)
            if (rows.size)
            else None
        )
    if isinstance(value, FeatureMatrix):
        rows = value.prov.rows_mentioning(source, wanted)
        if not rows.size:
            return None
        columns = _columns(value.blocks, source)
        return Reach(asset, partition, "X", tuple(rows.tolist()), value.shape[0], {}, columns)
    if isinstance(value, LabelsArtifact):
        rows = value.labels.prov.rows_mentioning(source, wanted)
        return Reach(asset, partition, "y", tuple(rows.tolist()), len(value)) if rows.size else None
    if isinstance(value, TrainingState):
        rows = value.prov.rows_mentioning(source, wanted)
        if not rows.size:
            return None
        columns = _columns(value.features.blocks, source)
        return Reach(asset, partition, "model", tuple(rows.tolist()), value.prov.n, {}, columns)
    return None


def _ledger_entries(
    ledger: Ledger, pipeline: str, source: str, index: pd.DataFrame, key_id: int
) -> list[LedgerEntry]:
    out = []
    for request in ledger.all(pipeline):
        if request.source != source:
            continue
        try:
            ids = hash_key_values(source, index, request.keys)
        except UnknownKeyError:  # keys of another shape (the source's key changed since)
            continue
        if np.any(ids == np.uint64(key_id)):
            out.append(LedgerEntry(request.id, request.kind, request.columns, request.status))
    return out


def trace(
    pipeline: LesterPipeline,
    io: LesterIOManager,
    source: str,
    key: Any,
    *,
    ledger: Ledger | None = None,
    translator: LesterTranslator | None = None,
) -> TraceReport:
    """Every stored artifact row, X row and column, and the model that ``key`` of ``source``
    reaches, and its status in ``ledger`` (see the module docstring). ``key``: a value of the
    source's key column (a tuple or list for a composite key, the hex content hash for a source
    without key columns), coerced to the column's dtype. Raises :class:`ArtifactNotFoundError`
    if nothing of the pipeline is stored under ``io``'s root."""
    started = time.perf_counter()
    built = build_assets(pipeline, translator)
    keys = [built.key("source", s) for s in pipeline.sources]
    keys += [built.key(kind) for kind in _STEPS]
    stored = {k: stored_partitions(io, k) for k in keys}
    if not any(stored.values()):
        raise ArtifactNotFoundError(
            f"no artifact of pipeline {pipeline.name!r} is stored under {io.root()}; materialise "
            "it first (or point at its artifact root)"
        )
    loaded: dict[tuple[dg.AssetKey, str | None], Any] = {}

    def load(asset: dg.AssetKey, partition: str | None) -> Any:
        if (asset, partition) not in loaded:
            loaded[asset, partition] = io.load(asset, partition)
        return loaded[asset, partition]

    source_key = built.key("source", source) if source in pipeline.sources else None
    if source_key is not None and stored[source_key]:
        frames = [load(source_key, p) for p in stored[source_key]]
        table = SourceTable(source, concat_frames(frames), f"the stored asset {source_key}")
    else:  # unknown source (raises) or not materialised: its file
        table = load_source_table(pipeline, source, io_manager=io, translator=translator)
    resolved = _by_keys(pipeline, table, normalise_keys([key]))
    (given,) = resolved.given
    key_id = int(hash_key_values(source, table.index, [given])[0])
    reaches = []
    for asset in keys:
        for partition in stored[asset]:
            found = _reach(
                asset.to_user_string(), partition, load(asset, partition), source, key_id
            )
            if found is not None:
                reaches.append(found)
    entries = (
        _ledger_entries(ledger, pipeline.name, source, table.index, key_id)
        if ledger is not None
        else []
    )
    return TraceReport(
        pipeline.name,
        source,
        given,
        key_id,
        bool(resolved.keys),
        entries,
        reaches,
        ledger is not None,
        time.perf_counter() - started,
    )
