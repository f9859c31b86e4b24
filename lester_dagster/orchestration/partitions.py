"""Key-hash-bucket partitions of a pipeline (``LesterPipeline(partitions=N)``, N > 0).

The mapping, and why:

* **Sources**: a ``StaticPartitionsDefinition`` of N buckets ``b00`` .. ``b<N-1>``. A record's
  bucket is ``mix64(key_id, BUCKET_SALT) % N`` (:func:`bucket_of`): a function of its key id
  only, so a record never moves between buckets when other records change, and partition ``b``
  stores exactly the records of bucket ``b`` (and the key index of those records). The salt is
  a fixed constant unlike any split seed, so buckets do not correlate with the train/test side
  (``mix64(key_id, seed)``, :func:`lester_dagster.frame.split_mask`): every bucket holds about
  ``test_fraction`` test rows.
* **Prepared rows**: partitioned the same way only where the plan allows it
  (:func:`check_partitionable`): every prepared row derives from exactly one record of the split
  source, so ``prepared[b] = prepare(split_source[b], other sources[all])`` and the union of the
  partitions is the unpartitioned result. The split source is read with an identity partition
  mapping, the other sources with ``AllPartitionMapping``.
* **train / test**: identity mapping from the prepared rows (the split is row-wise).
* **X_train / y_train / model**: unpartitioned (one multi-asset fits all three together and
  Dagster's multi-assets cannot mix partitioned and unpartitioned outputs); they read all
  ``train`` partitions, which the IO manager concatenates (:func:`concat_frames`).
* **X_test / y_test**: unpartitioned likewise (X_test needs the unpartitioned model); they read
  all ``test`` partitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import PlanError, SourceError
from lester_dagster.frame import ColumnRef, Frame, Prov, read_csv, read_json, read_parquet
from lester_dagster.frame.plan import (
    Aggregate,
    Distinct,
    Filter,
    Join,
    Node,
    Rename,
    Select,
    Sort,
    Source,
    Split,
    Union,
    WithColumn,
)
from lester_dagster.frame.provenance import mix64
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.pipeline import LesterPipeline

__all__ = [
    "BUCKET_SALT",
    "bucket_keys",
    "bucket_of",
    "check_partitionable",
    "concat_frames",
    "partitions_def",
    "source_partition",
]

BUCKET_SALT = 0x6C65_7374_6572_4275  # "lesterBu": fixed, far from any split seed
"""The salt of the bucket hash ``mix64(key_id, BUCKET_SALT) % N``."""

_ROW_WISE = (Filter, Select, Rename, WithColumn, Sort, Split)
_READERS = {"csv": read_csv, "parquet": read_parquet, "json": read_json}


def bucket_keys(n: int) -> list[str]:
    """The partition keys of ``n`` buckets: ``b00``, ``b01``, ... (zero-padded, sortable)."""
    width = max(2, len(str(n - 1)))
    return [f"b{i:0{width}d}" for i in range(n)]


def bucket_of(ids: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """The bucket (0 .. n-1) of each key id."""
    return (mix64(np.asarray(ids, dtype=np.uint64), BUCKET_SALT) % np.uint64(n)).astype(np.int64)


def partitions_def(pipeline: LesterPipeline) -> dg.StaticPartitionsDefinition | None:
    """The buckets of a partitioned pipeline (``None``: unpartitioned)."""
    if not pipeline.partitions:
        return None
    return dg.StaticPartitionsDefinition(bucket_keys(pipeline.partitions))


def source_partition(
    artifact: FrameArtifact, source: str, partition_key: str, n: int
) -> FrameArtifact:
    """The records of ``artifact`` (source ``source``'s rows) in bucket ``partition_key``, with
    the key index of just those records."""
    keys = bucket_keys(n)
    if partition_key not in keys:
        raise PlanError(f"unknown partition {partition_key!r}; partitions: {keys}")
    ids = artifact.prov.keys[source]
    part = artifact.take(np.flatnonzero(bucket_of(ids, n) == keys.index(partition_key)))
    indexes = dict(part.key_indexes)
    index = indexes.get(source)
    if index is not None:
        kept = part.prov.keys[source]
        indexes[source] = index.loc[index.index.isin(kept)]
    return FrameArtifact(part.data, part.prov, part.lineage, indexes)


def concat_frames(parts: Sequence[FrameArtifact]) -> FrameArtifact:
    """The rows of all ``parts`` one after another, with their provenance (``Prov.concat``)
    and the union of their key indexes."""
    if not parts:
        raise PlanError("no partitions to concatenate; materialise the upstream partitions first")
    if len(parts) == 1:
        return parts[0]
    data = pd.concat([p.data for p in parts], ignore_index=True)
    prov = Prov.concat([p.prov for p in parts])
    lineage: dict[str, frozenset[ColumnRef]] = {}
    for p in parts:
        for column, refs in p.lineage.items():
            lineage[column] = lineage.get(column, frozenset()) | refs
    indexes: dict[str, list[pd.DataFrame]] = {}
    for p in parts:
        for source, index in p.key_indexes.items():
            indexes.setdefault(source, []).append(index)
    merged = {}
    for source, chunks in indexes.items():
        both = pd.concat(chunks)
        merged[source] = both[~both.index.duplicated(keep="first")]
    return FrameArtifact(data, prov, lineage, merged)


def _split_rows(node: Node, split: str) -> int:
    """How many records of ``split`` each row of ``node`` derives from (0 or 1); raises if a
    row may derive from several, or from none where others derive from one."""
    if isinstance(node, Source):
        return 1 if node.spec.name == split else 0
    if isinstance(node, (Aggregate, Distinct)):
        raise PlanError(
            f"the plan has a {type(node).__name__} ({node.describe()}): it merges rows, so a "
            f"prepared row may derive from several records of split source {split!r} in "
            "different buckets; partitions=N needs a plan without group_by/drop_duplicates"
        )
    if isinstance(node, _ROW_WISE):
        return _split_rows(node.parent, split)
    if isinstance(node, Join):
        left, right = _split_rows(node.left, split), _split_rows(node.right, split)
        if left and right:
            raise PlanError(
                f"the plan joins split source {split!r} with itself ({node.describe()}): a row "
                "derives from two of its records, possibly in different buckets"
            )
        if right and node.how == "left":
            raise PlanError(
                f"split source {split!r} is on the right side of a left join "
                f"({node.describe()}): unmatched rows derive from none of its records; put it "
                "on the left (or use an inner join)"
            )
        return left + right
    if isinstance(node, Union):
        counts = {_split_rows(p, split) for p in node.parts}
        if len(counts) > 1:
            raise PlanError(
                f"a union mixes parts with and without split source {split!r}; rows of the "
                "parts without it belong to no bucket"
            )
        return counts.pop()
    raise PlanError(f"cannot partition a plan with a {type(node).__name__} node")


def _definition_frames(pipeline: LesterPipeline) -> dict[str, Frame]:
    frames = {}
    for name, spec in pipeline.sources.items():
        if not spec.file.exists() and spec.generate is not None:
            spec.generate()
        if not spec.file.exists():
            raise SourceError(
                f"source {name!r}: partitions=N checks the prepared plan when the pipeline is "
                f"defined, which reads the file's schema, but there is no file at {spec.file}"
            )
        key = list(spec.key_columns) or None
        frames[name] = _READERS[spec.format](
            spec.file, name=name, key=key, **dict(spec.read_options)
        )
    return frames


def check_partitionable(pipeline: LesterPipeline) -> None:
    """Raise :class:`PlanError` unless every prepared row derives from exactly one record of
    the split source (no group_by / drop_duplicates, the split source on the kept side of every
    join, once per row). Builds the plan from the source files' schemas (a missing file with a
    ``generate`` function is generated first)."""
    plan = pipeline.prepare(**_definition_frames(pipeline))
    if not isinstance(plan, Frame):
        raise PlanError(f"prepare() must return a Frame, got {type(plan).__name__}")
    split = pipeline.split.by
    try:
        rows = _split_rows(plan.node, split)
    except PlanError as exc:
        raise PlanError(
            f"pipeline {pipeline.name!r} cannot be partitioned (partitions="
            f"{pipeline.partitions}): {exc}. Use partitions=0 or change prepare()"
        ) from exc
    if rows != 1:
        raise PlanError(
            f"pipeline {pipeline.name!r} cannot be partitioned: its prepared rows do not derive "
            f"from split source {split!r}; use partitions=0"
        )
