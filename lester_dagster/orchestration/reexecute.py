"""Re-executing the prepared rows of some records: what a value deletion does to the rows
derived from the records whose values it deletes (and what verification compares them with).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lester_dagster.frame.provenance import Ids
from lester_dagster.ivm.frames import row_identity, rows_mentioning
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline

__all__ = ["reexecute_all", "reexecute_rows"]


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
