"""Materialisation metadata: Dagster's table metadata plus ``lester/...`` provenance keys.

Every materialisation of a pipeline asset carries

* ``dagster/row_count``, ``dagster/column_schema`` (a TableSchema) and
  ``dagster/column_lineage`` (a TableColumnLineage whose deps name upstream *asset keys*: a
  prepared column points at the source assets' columns the frame's column lineage names; train
  and test columns at the prepared asset's column; an X block at the train columns its
  transformer reads; y at the label inputs; the model's blocks at X_train's blocks and y_train);
* ``lester/sources`` (per source its asset key and key columns), ``lester/provenance`` (layout,
  monomials, rows and distinct keys per source) and ``lester/ledger_watermark`` (the highest
  id of an applied deletion request of the pipeline when the artifact was written; the assets
  fill it in from the ledger resource);
* for X: ``lester/column_ranges`` (per transformer its columns ``[start, stop)``, inputs and
  source columns); for X_train / y_train / model: ``lester/update_strategy`` (per encoder and
  for the model, the strategy later deletions will use: exact, stateless, newton+refine, refit
  with its reason). The IO manager adds ``lester/manifest_digest`` and the artifact's path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg
import numpy as np

from lester_dagster.features.matrix import Block, FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, Prov
from lester_dagster.frame.provenance import sorted_unique
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import FrameArtifact

__all__ = [
    "LEDGER_WATERMARK",
    "SourceInfo",
    "column_ranges",
    "frame_metadata",
    "labels_metadata",
    "matrix_metadata",
    "model_metadata",
    "provenance_summary",
    "update_strategies",
]

LEDGER_WATERMARK = "lester/ledger_watermark"
"""Metadata key of the highest applied deletion request id when the artifact was written."""

SourceInfo = Mapping[str, tuple[dg.AssetKey, tuple[str, ...]]]
"""Per source name: its asset key and key columns."""


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON (numpy scalars and arrays included; anything else as text)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def provenance_summary(prov: Prov) -> dict[str, Any]:
    """Layout, monomials, rows per source (rows whose provenance mentions it) and distinct
    source keys per source."""
    row = prov.row_of_monomial()
    rows: dict[str, int] = {}
    keys: dict[str, int] = {}
    for source, ids in prov.keys.items():
        present = ids != 0
        rows[source] = int(present.sum()) if prov.single else len(sorted_unique(row[present]))
        keys[source] = len(sorted_unique(ids[present]))
    return {
        "layout": "single" if prov.single else "multi",
        "rows": prov.n,
        "monomials": len(row),
        "rows_per_source": rows,
        "keys_per_source": keys,
    }


def _sources(prov: Prov, sources: SourceInfo) -> dict[str, Any]:
    return {
        name: {"asset": sources[name][0].to_user_string(), "key": list(sources[name][1])}
        for name in prov.sources
        if name in sources
    }


def _common(prov: Prov, sources: SourceInfo) -> dict[str, Any]:
    return {
        "dagster/row_count": prov.n,
        "lester/sources": _sources(prov, sources),
        "lester/provenance": provenance_summary(prov),
        LEDGER_WATERMARK: None,
    }


def _deps(pairs: Iterable[tuple[dg.AssetKey, str]]) -> list[dg.TableColumnDep]:
    return [dg.TableColumnDep(asset_key=k, column_name=c) for k, c in pairs]


def frame_metadata(
    artifact: FrameArtifact,
    sources: SourceInfo,
    upstream: Callable[[str, frozenset[ColumnRef]], Iterable[tuple[dg.AssetKey, str]]],
) -> dict[str, Any]:
    """Metadata of rows (a source, the prepared rows, train or test); ``upstream(column,
    lineage)`` names the upstream asset columns of one column."""
    columns = [dg.TableColumn(name=c, type=str(artifact.data[c].dtype)) for c in artifact.columns]
    lineage = {
        c: _deps(upstream(c, artifact.lineage.get(c, frozenset()))) for c in artifact.columns
    }
    return {
        **_common(artifact.prov, sources),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=lineage),
    }


def _refs(refs: Iterable[ColumnRef]) -> list[str]:
    return sorted(str(r) for r in refs)


def column_ranges(blocks: Iterable[Block]) -> dict[str, Any]:
    """Per transformer: its X columns ``[start, stop)``, width, inputs and source columns."""
    return {
        b.name: {
            "start": b.start,
            "stop": b.stop,
            "width": b.width,
            "inputs": list(b.inputs),
            "source_columns": _refs(b.lineage),
        }
        for b in blocks
    }


def matrix_metadata(
    matrix: FeatureMatrix, sources: SourceInfo, rows_asset: dg.AssetKey
) -> dict[str, Any]:
    """Metadata of X: one schema column per transformer block (its X column range), lineage
    from each block to the ``rows_asset`` columns its transformer reads."""
    columns = [
        dg.TableColumn(
            name=b.name,
            type=f"float64[{b.width}]",
            description=f"X columns [{b.start}, {b.stop}) from {', '.join(b.inputs)}",
        )
        for b in matrix.blocks
    ]
    lineage = {b.name: _deps((rows_asset, c) for c in b.inputs) for b in matrix.blocks}
    return {
        **_common(matrix.prov, sources),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=lineage),
        "lester/column_ranges": column_ranges(matrix.blocks),
        "lester/shape": list(matrix.shape),
        "lester/sparse": bool(hasattr(matrix.X, "nnz")),
    }


def labels_metadata(labels: Labels, sources: SourceInfo, rows_asset: dg.AssetKey) -> dict[str, Any]:
    """Metadata of y: one column ``y`` computed from the label inputs of ``rows_asset``."""
    y = np.asarray(labels.y)
    values, counts = np.unique(y, return_counts=True) if y.size else (y, y)
    return {
        **_common(labels.prov, sources),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name="y", type=str(y.dtype), description="the label")]
        ),
        "dagster/column_lineage": dg.TableColumnLineage(
            deps_by_column={"y": _deps((rows_asset, c) for c in labels.inputs)}
        ),
        "lester/label_inputs": list(labels.inputs),
        "lester/label_source_columns": _refs(labels.lineage),
        "lester/label_counts": _jsonable(
            {str(v): int(n) for v, n in zip(values.tolist(), counts.tolist())}
        ),
    }


def update_strategies(state: TrainingState) -> dict[str, Any]:
    """What a later deletion will do, per encoder and for the model (never a silent refit)."""
    encoders = {
        name: {
            "transformer": type(tracker.transformer).__name__,
            "strategy": tracker.strategy,
            "reason": tracker.reason or None,
        }
        for name, tracker in state.trackers.items()
    }
    unlearner = state.unlearner
    model = {
        "component": unlearner.component,
        "strategy": unlearner.strategy,
        "fallback_reason": unlearner.fallback_reason,
        "adjustments": _jsonable(unlearner.adjustments),
    }
    return {"encoders": encoders, "model": model, "labels": "row-wise (recomputed per row)"}


def model_metadata(
    state: TrainingState,
    sources: SourceInfo,
    x_asset: dg.AssetKey,
    y_asset: dg.AssetKey,
) -> dict[str, Any]:
    """Metadata of the model: its inputs are X_train's blocks and y_train."""
    blocks = state.features.blocks
    columns = [
        dg.TableColumn(
            name=b.name,
            type=f"weights[{b.width}]",
            description=f"parameters of X columns [{b.start}, {b.stop})",
        )
        for b in blocks
    ]
    columns.append(dg.TableColumn(name="y", type="target", description="the training labels"))
    lineage = {b.name: _deps([(x_asset, b.name)]) for b in blocks}
    lineage["y"] = _deps([(y_asset, "y")])
    return {
        **_common(state.prov, sources),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=lineage),
        "lester/update_strategy": update_strategies(state),
        "lester/model": type(state.model).__name__,
        "lester/training_score": float(state.model.score(state.X, state.y))
        if hasattr(state.model, "score")
        else None,
    }
