"""The values that flow between a pipeline's assets, each carrying row keys and lineage.

* :class:`FrameArtifact`: rows (sources, prepared, train, test) with provenance, the columns'
  source lineage and the sources' key indexes;
* :class:`~lester_dagster.features.FeatureMatrix`: X (its ``resolve`` holds the key indexes);
* :class:`LabelsArtifact`: y with provenance and key indexes;
* anything else, e.g. the model's :class:`~lester_dagster.ivm.training.TrainingState`: one
  pickled object.

:class:`~lester_dagster.orchestration.LesterIOManager` stores and loads exactly these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import ArtifactError
from lester_dagster.features.matrix import FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, KeyResolver, Prov, Result, restore_result
from lester_dagster.frame.provenance import Ids

__all__ = [
    "FrameArtifact",
    "LabelsArtifact",
    "forget_in_source",
    "key_indexes_of",
    "lineage_from_json",
    "lineage_to_json",
    "with_missing",
    "without_keys",
]

ColumnLineage = Mapping[str, frozenset[ColumnRef]]


def lineage_to_json(lineage: ColumnLineage) -> dict[str, list[list[str]]]:
    """Column lineage as JSON: ``{column: [[source, source_column], ...]}`` (sorted)."""
    return {c: sorted([r.source, r.column] for r in refs) for c, refs in lineage.items()}


def lineage_from_json(doc: Any, where: str) -> dict[str, frozenset[ColumnRef]]:
    """The inverse of :func:`lineage_to_json`."""
    if not isinstance(doc, Mapping):
        raise ArtifactError(
            f"{where} holds no column lineage; it was not written by the lester IO manager. "
            "Rematerialise the asset"
        )
    try:
        return {
            str(c): frozenset(ColumnRef(str(s), str(k)) for s, k in refs) for c, refs in doc.items()
        }
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where} has malformed column lineage ({exc}); rematerialise") from exc


@dataclass(frozen=True, eq=False)
class FrameArtifact:
    """Rows with provenance: user columns (``data``), one provenance polynomial per row
    (``prov``), each column's source columns (``lineage``) and, per source, the key index
    (key id -> key values) that turns provenance back into source keys."""

    data: pd.DataFrame
    prov: Prov
    lineage: ColumnLineage
    key_indexes: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.data) != self.prov.n:
            raise ArtifactError(
                f"a frame artifact of {len(self.data)} rows needs the provenance of exactly "
                f"those rows, got provenance of {self.prov.n}"
            )

    @classmethod
    def from_result(cls, result: Result) -> FrameArtifact:
        """An executed frame's rows, provenance, column lineage and complete key indexes."""
        return cls(
            result.to_pandas(),
            result.prov,
            dict(result.schema.lineage),
            {name: table.keys for name, table in result.sources.items()},
        )

    def to_result(self) -> Result:
        """The rows as a :class:`Result` (for ``fit_encode``, ``TrainingState.fit`` ...)."""
        return restore_result(
            self.data, self.prov, lineage=self.lineage, key_indexes=self.key_indexes
        )

    def take(self, rows: npt.ArrayLike) -> FrameArtifact:
        """The rows at positions ``rows``, in that order."""
        positions = np.asarray(rows, dtype=np.intp)
        return FrameArtifact(
            self.data.take(positions).reset_index(drop=True),
            self.prov.take(positions),
            self.lineage,
            self.key_indexes,
        )

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.data.columns]

    @property
    def keys(self) -> KeyResolver:
        return KeyResolver(self.key_indexes)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True, eq=False)
class LabelsArtifact:
    """y (a :class:`Labels`: values, row provenance, inputs, lineage) and its key indexes."""

    labels: Labels
    key_indexes: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def y(self) -> npt.NDArray[Any]:
        return self.labels.y

    def __len__(self) -> int:
        return len(self.labels.y)


def without_keys(
    indexes: Mapping[str, pd.DataFrame], instance: Mapping[str, Ids]
) -> dict[str, pd.DataFrame]:
    """``indexes`` without the entries of the deleted keys ``instance`` (source -> key ids)."""
    out = dict(indexes)
    for source, ids in instance.items():
        index = out.get(source)
        if index is not None and len(ids):
            out[source] = index.loc[~index.index.isin(np.asarray(ids, dtype=np.uint64))]
    return out


def with_missing(data: pd.DataFrame, rows: npt.NDArray[np.intp], column: str) -> pd.DataFrame:
    """``data`` with ``column`` missing at ``rows``, typed as a reader would type a column
    with gaps (integers become floats, booleans objects)."""
    series = data[column]
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iub":
        # numpy integers and booleans cannot hold a gap: as a reader types such a column
        series = series.astype("float64" if series.dtype.kind != "b" else object)
    values = series.copy()
    values.iloc[rows] = None
    out = data.copy()
    out[column] = values
    return out


def forget_in_source(
    art: FrameArtifact,
    source: str,
    records: Ids | None,
    values: Mapping[str, Ids],
) -> FrameArtifact | None:
    """Rows of source ``source`` without the deleted ``records`` (key ids; their key index
    entries go too) and with the deleted ``values`` (column -> key ids) missing; ``None`` if
    nothing changes (what a deletion does to a source artifact, and what a rematerialisation
    does to a freshly read source file)."""
    ids = art.prov.keys.get(source)
    if ids is None:
        return None
    changed = False
    if records is not None and len(records):
        drop = art.prov.rows_mentioning(source, records)
        if drop.size:
            keep = np.ones(len(art), dtype=bool)
            keep[drop] = False
            art = art.take(np.flatnonzero(keep))
            changed = True
        index = art.key_indexes.get(source)
        if index is not None and index.index.isin(records).any():
            changed = True
        art = FrameArtifact(
            art.data, art.prov, art.lineage, without_keys(art.key_indexes, {source: records})
        )
    data = art.data
    for column, column_ids in values.items():
        if not len(column_ids):
            continue
        rows = art.prov.rows_mentioning(source, column_ids)
        if rows.size and data[column].iloc[rows].notna().any():
            data = with_missing(data, rows, column)
            changed = True
    if not changed:
        return None
    return FrameArtifact(data, art.prov, art.lineage, art.key_indexes)


def key_indexes_of(value: FeatureMatrix) -> dict[str, pd.DataFrame]:
    """The key indexes a feature matrix resolves keys with (empty if its resolver is opaque)."""
    if isinstance(value, FeatureMatrix) and isinstance(value.resolve, KeyResolver):
        return dict(value.resolve.indexes)
    return {}
