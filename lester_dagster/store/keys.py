"""Source key indexes stored with artifacts, and key resolution on loaded artifacts.

A source's key index (:attr:`lester_dagster.frame.engine.SourceTable.keys`) maps each key id
(uint64) to the record's key values. An artifact stores, per source its rows derive from, one
Parquet file with the key columns plus ``__lester_key_id__`` (uint64). By default only the keys
that the artifact's provenance mentions are stored ("referenced"), so a partition's files grow
with the partition, not with the source; ``"all"`` stores the whole index.

:class:`KeyResolver` (defined in :mod:`lester_dagster.frame`, re-exported here) turns those
indexes back into the two lookups lineage needs:
source keys -> key ids (the ``resolve`` of a loaded :class:`FeatureMatrix`) and key ids ->
source keys. Key ids are hashes of the key values, so keys resolve without a full index; a key
missing from a referenced index is simply not in this artifact (dropped unless ``strict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.frame.engine import SourceTable
from lester_dagster.frame.provenance import member_mask, sorted_unique
from lester_dagster.store.links import IdentityMemo
from lester_dagster.store.tables import table_of_frame

__all__ = [
    "KEY_ID",
    "KeyIndexMode",
    "KeyResolver",
    "Sources",
    "key_index_of_table",
    "key_index_table",
    "key_indexes_to_store",
]

KEY_ID = "__lester_key_id__"
KeyIndexMode: TypeAlias = Literal["referenced", "all"]
Sources: TypeAlias = Mapping[str, SourceTable | pd.DataFrame]
"""Per source, its :class:`SourceTable` (as in ``Result.sources``) or just its key index."""


def _index_of(source: str, table: SourceTable | pd.DataFrame) -> pd.DataFrame:
    index = table.keys if isinstance(table, SourceTable) else table
    if not isinstance(index, pd.DataFrame):
        raise UnstorableError(
            f"the key index of source {source!r} must be a DataFrame indexed by key id (a "
            f"SourceTable's .keys), got {type(index).__name__}"
        )
    if index.index.dtype != np.uint64:
        raise UnstorableError(
            f"the key index of source {source!r} must be indexed by uint64 key ids, got an index "
            f"of dtype {index.index.dtype}; pass Result.sources or SourceTable.keys"
        )
    return index


def key_indexes_to_store(
    prov: Prov, sources: Sources | None, mode: KeyIndexMode = "referenced"
) -> dict[str, pd.DataFrame]:
    """The key indexes to store with an artifact of provenance ``prov``: one per source that
    ``prov`` mentions and ``sources`` describes, restricted to the mentioned keys unless
    ``mode='all'``."""
    if mode not in ("referenced", "all"):
        raise UnstorableError(f"key_index must be 'referenced' or 'all', got {mode!r}")
    out: dict[str, pd.DataFrame] = {}
    for source in prov.sources:
        if sources is None or source not in sources:
            continue
        index = _index_of(source, sources[source])
        if mode == "referenced":
            wanted = _mentioned(prov.keys[source])
            # an index holds every key its rows mention (writers keep it so); as large as the
            # mentioned keys, it holds nothing else, and the filter (~0.1 s per 1M keys) is moot
            if len(index) != len(wanted):
                ids = index.index.to_numpy(dtype=np.uint64)
                extra = _not_mentioned(ids, wanted)
                if extra.size:
                    index = index[~member_mask(ids, extra)]
        out[source] = index
    return out


def _not_mentioned(
    ids: npt.NDArray[np.uint64], wanted: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    """The ids of ``ids`` that the sorted, distinct ``wanted`` lacks (sorted). Both are
    searched in sorted order: a binary search of each of 171k unsorted ids costs ~20 ms here,
    a sort and an ordered search ~1 ms; the few keys an index holds beyond its rows (those of
    rows just deleted) are then removed with a search among them alone."""
    ordered = np.sort(ids)
    if wanted.size == 0:
        return ordered
    at = np.searchsorted(wanted, ordered)
    at[at == wanted.size] = 0
    out: npt.NDArray[np.uint64] = ordered[wanted[at] != ordered]
    return out


_mentioned_ids: IdentityMemo[npt.NDArray[np.uint64]] = IdentityMemo()


def _mentioned(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The distinct key ids of a provenance column, remembered for the same, unchanged array
    (X and y of the same rows are stored one after the other: one sort, not two)."""
    hit = _mentioned_ids.get(ids)
    if hit is not None:
        return hit
    out: npt.NDArray[np.uint64] = sorted_unique(ids)
    out.flags.writeable = False  # shared by later calls
    _mentioned_ids.put(ids, out)
    return out


def key_index_table(index: pd.DataFrame) -> pa.Table:
    """A key index as an Arrow table: its key columns plus ``__lester_key_id__``."""
    flat = index.reset_index(drop=True)
    table = table_of_frame(flat)
    ids = pa.array(index.index.to_numpy(dtype=np.uint64), pa.uint64())
    return table.append_column(KEY_ID, ids)


def key_index_of_table(table: pa.Table, where: str) -> pd.DataFrame:
    """The key index stored by :func:`key_index_table` (indexed by ``key_id``, uint64)."""
    if KEY_ID not in table.column_names:
        raise ArtifactError(f"{where} holds no {KEY_ID!r} column; it is not a key index")
    ids = table.column(KEY_ID).to_numpy(zero_copy_only=False).astype(np.uint64)
    frame: pd.DataFrame = table.drop_columns([KEY_ID]).to_pandas()
    return frame.set_axis(pd.Index(ids, dtype=np.uint64, name="key_id"), axis=0)
