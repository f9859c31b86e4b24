"""Partitions of a pipeline: per file for multi-file sources, key-hash buckets for the others
(``LesterPipeline(partitions=N)``, N > 0), and the rows that follow the split source.

The mapping, and why:

* **Sources**: each source has its own partitions definition (:func:`plan_partitions`):

  - a **multi-file source** (``SourceSpec.path`` a glob pattern, i.e. containing ``*``, ``?``
    or ``[``, or a directory, i.e. its files ``*.csv`` / ``*.parquet`` / ``*.json`` and
    ``*.jsonl`` by format) has one static partition per file, and partition ``k`` stores
    exactly the records of its file. The files are listed, sorted by path, when the pipeline
    is defined (hidden files skipped, ``**`` matches subdirectories): adding or removing a file
    takes a reload of the code location. A partition key is the file's name without its last
    extension, every character other than an ASCII letter, digit, ``-`` or ``_`` replaced by
    ``_`` (:func:`file_partition_key`: ``mails-2024-01.csv`` -> ``mails-2024-01``,
    ``mails 2024.01.csv`` -> ``mails_2024_01``); two files with the same key are an error. A
    pattern (or directory) that matches no file is a :class:`SourceError`. Key uniqueness is
    checked per file only: the same key in two files is two records with the same key id (a
    deletion of that key reaches both);
  - otherwise, with ``partitions`` = N > 0, a ``StaticPartitionsDefinition`` of N buckets
    ``b00`` .. ``b<N-1>``. A record's bucket is ``mix64(key_id, BUCKET_SALT) % N``
    (:func:`bucket_of`): a function of its key id only, so a record never moves between
    buckets when other records change, and partition ``b`` stores exactly the records of
    bucket ``b`` (and the key index of those records). The salt is a fixed constant unlike any
    split seed, so buckets do not correlate with the train/test side (``mix64(key_id, seed)``,
    :func:`lester_dagster.frame.split_mask`): every bucket holds about ``test_fraction`` test
    rows;
  - otherwise unpartitioned.

* **Prepared rows**: partitioned like the split source (per file or per bucket, identity
  mapping) if the split source is partitioned and the plan allows it
  (:func:`check_partitionable`): every prepared row derives from exactly one record of the
  split source, so ``prepared[k] = prepare(split_source[k], other sources[all])`` and the union
  of the partitions is the unpartitioned result. The other sources are read with
  ``AllPartitionMapping`` (the IO manager concatenates their partitions). The check builds
  the plan from the source files' schemas (the first file of a multi-file source). If the
  plan does not allow it, a split source partitioned per file leaves the prepared rows, train
  and test unpartitioned, reading all partitions (the prepared asset's description and its
  ``lester/partitioning`` metadata say why), while a split source in key-hash buckets is an
  error when the pipeline is defined (``partitions=N`` asks for partitioned rows).
* **train / test**: identity mapping from the prepared rows (the split is row-wise).
* **X_train / y_train / model**: unpartitioned; they read all ``train`` partitions, which the
  IO manager concatenates (:func:`concat_frames`). The encoders (a scaler's mean and standard
  deviation, idf weights, one-hot categories) are fitted on all training rows, so deleting one
  row changes fitted statistics that every row of X depends on: no partition of X could be
  updated or recomputed on its own. X_train, y_train and the model are produced together (one
  multi-asset fits them, stored whole as the model artifact so later deletions can update it),
  and Dagster's multi-assets cannot mix partitioned and unpartitioned outputs.
* **X_test / y_test**: unpartitioned likewise (X_test needs the unpartitioned model's fitted
  encoding); they read all ``test`` partitions.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import PlanError, SourceError
from lester_dagster.frame import ColumnRef, Frame, Prov
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
from lester_dagster.orchestration.pipeline import LesterPipeline, SourceSpec, Step

__all__ = [
    "BUCKET_SALT",
    "Partitioning",
    "bucket_keys",
    "bucket_of",
    "check_partitionable",
    "concat_frames",
    "file_partition_key",
    "file_partitions",
    "partitions_def",
    "plan_partitions",
    "source_files",
    "source_partition",
]

BUCKET_SALT = 0x6C65_7374_6572_4275  # "lesterBu": fixed, far from any split seed
"""The salt of the bucket hash ``mix64(key_id, BUCKET_SALT) % N``."""

_ROW_WISE = (Filter, Select, Rename, WithColumn, Sort, Split)
_FORMAT_GLOBS = {"csv": ("*.csv",), "parquet": ("*.parquet",), "json": ("*.json", "*.jsonl")}
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_-]")
_ROWS = ("prepared", "train", "test")  # partitioned like the split source, if the plan allows


def bucket_keys(n: int) -> list[str]:
    """The partition keys of ``n`` buckets: ``b00``, ``b01``, ... (zero-padded, sortable)."""
    width = max(2, len(str(n - 1)))
    return [f"b{i:0{width}d}" for i in range(n)]


def bucket_of(ids: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """The bucket (0 .. n-1) of each key id."""
    return (mix64(np.asarray(ids, dtype=np.uint64), BUCKET_SALT) % np.uint64(n)).astype(np.int64)


def file_partition_key(file: str | os.PathLike[str]) -> str:
    """The partition key of a file of a multi-file source: its name without the last extension,
    every character other than an ASCII letter, digit, ``-`` or ``_`` replaced by ``_``
    (``mails-2024-01.csv`` -> ``mails-2024-01``; ``mails 2024.01.csv`` -> ``mails_2024_01``).
    Such a key is a valid Dagster partition key and a safe directory name."""
    return _NOT_IN_KEY.sub("_", Path(file).stem)


def source_files(name: str, spec: SourceSpec) -> list[Path]:
    """The files of multi-file source ``name``, sorted by path: those matching its glob pattern
    (``**`` matches subdirectories; hidden files only if the pattern names them) or, for a
    directory, its files of the format's extension. Raises :class:`SourceError` if there is
    none."""
    text = str(spec.path)
    if spec.pattern:
        patterns = [text]
        what = f"glob pattern {text!r}"
    elif spec.file.is_dir():
        globs = _FORMAT_GLOBS[spec.format]
        patterns = [os.path.join(glob.escape(text), g) for g in globs]
        what = f"directory {text!r} (files {' / '.join(globs)} of format {spec.format!r})"
    else:
        raise PlanError(f"source {name!r} is a single file ({text!r}), not a pattern or directory")
    files = sorted({Path(f) for p in patterns for f in glob.glob(p, recursive=True)})
    files = [f for f in files if f.is_file()]
    if not files:
        hint = " (generate= creates single files only)" if spec.generate is not None else ""
        raise SourceError(
            f"source {name!r}: {what} matched no file{hint}; add the files, or fix the path"
        )
    return files


def file_partitions(name: str, spec: SourceSpec) -> dict[str, Path]:
    """Partition key -> file of multi-file source ``name`` (:func:`source_files` in order,
    keyed by :func:`file_partition_key`); two files with the same key are a :class:`PlanError`."""
    keyed: dict[str, Path] = {}
    for file in source_files(name, spec):
        key = file_partition_key(file)
        if key in keyed:
            raise PlanError(
                f"source {name!r}: files {str(keyed[key])!r} and {str(file)!r} would both be "
                f"partition {key!r} (a partition key is the file name without its extension, "
                "characters other than letters, digits, '-' and '_' made '_'); rename one, or "
                "narrow the pattern"
            )
        keyed[key] = file
    return keyed


@dataclass(frozen=True)
class Partitioning:
    """How the steps of a pipeline are partitioned (see the module docstring).

    ``sources``: each source's partitions (``None``: unpartitioned); ``rows``: those of the
    prepared rows, train and test (the split source's, or ``None``); ``files``: partition key
    -> file of each multi-file source; ``buckets``: the number of key-hash buckets of the
    single-file sources (0: none); ``reason``: how the rows are partitioned, and why.
    """

    sources: Mapping[str, dg.StaticPartitionsDefinition | None]
    rows: dg.StaticPartitionsDefinition | None
    files: Mapping[str, Mapping[str, Path]]
    buckets: int
    reason: str

    def partitions_def(self, step: Step) -> dg.StaticPartitionsDefinition | None:
        """The partitions of ``step`` (``None``: unpartitioned)."""
        if step.kind == "source":
            return self.sources[step.name]
        return self.rows if step.kind in _ROWS else None

    @property
    def partitioned(self) -> bool:
        """True if any step is partitioned."""
        return any(d is not None for d in self.sources.values())

    def source_buckets(self, name: str) -> int:
        """The key-hash buckets of source ``name`` (0: it is not split into buckets)."""
        return self.buckets if name not in self.files else 0

    def file_of(self, name: str, partition_key: str) -> Path | None:
        """The file of partition ``partition_key`` of source ``name`` (``None``: the source
        is not multi-file)."""
        files = self.files.get(name)
        if files is None:
            return None
        if partition_key not in files:
            raise PlanError(
                f"source {name!r} has no partition {partition_key!r}; partitions (one per file "
                f"when the code location was loaded): {list(files)}"
            )
        return files[partition_key]


def plan_partitions(pipeline: LesterPipeline) -> Partitioning:
    """The partitions of every step of ``pipeline`` (lists the files of multi-file sources and,
    if the split source is partitioned, checks the plan: see the module docstring). Raises if
    the split source is in key-hash buckets and the plan cannot be partitioned."""
    files = _multi_file_partitions(pipeline)
    buckets = pipeline.partitions
    sources: dict[str, dg.StaticPartitionsDefinition | None] = {}
    for name in pipeline.sources:
        if name in files:
            sources[name] = dg.StaticPartitionsDefinition(list(files[name]))
        elif buckets:
            sources[name] = dg.StaticPartitionsDefinition(bucket_keys(buckets))
        else:
            sources[name] = None
    split = pipeline.split.by
    split_def = sources[split]
    if split_def is None:
        reason = f"unpartitioned: split source {split!r} is unpartitioned"
        return Partitioning(sources, None, files, buckets, reason)
    how = "one partition per file" if split in files else f"{buckets} key-hash buckets"
    why = _why_unpartitionable(pipeline, files)
    if why is None:
        reason = (
            f"partitioned like split source {split!r} ({how}): every prepared row derives from "
            "exactly one of its records"
        )
        return Partitioning(sources, split_def, files, buckets, reason)
    if split not in files:
        raise _unpartitionable_error(pipeline, why)
    reason = (
        f"unpartitioned, reading all partitions of every source: split source {split!r} is "
        f"partitioned ({how}), but the plan does not allow partitioned prepared rows: {why}"
    )
    return Partitioning(sources, None, files, buckets, reason)


def partitions_def(pipeline: LesterPipeline, step: Step) -> dg.StaticPartitionsDefinition | None:
    """The partitions of one step of ``pipeline`` (``None``: unpartitioned); for several
    steps, call :func:`plan_partitions` once (it lists files and checks the plan)."""
    return plan_partitions(pipeline).partitions_def(step)


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
            "different partitions; partitioned prepared rows need a plan without "
            "group_by/drop_duplicates"
        )
    if isinstance(node, _ROW_WISE):
        return _split_rows(node.parent, split)
    if isinstance(node, Join):
        left, right = _split_rows(node.left, split), _split_rows(node.right, split)
        if left and right:
            raise PlanError(
                f"the plan joins split source {split!r} with itself ({node.describe()}): a row "
                "derives from two of its records, possibly in different partitions"
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
                "parts without it belong to no partition"
            )
        return counts.pop()
    raise PlanError(f"cannot partition a plan with a {type(node).__name__} node")


def _multi_file_partitions(pipeline: LesterPipeline) -> dict[str, dict[str, Path]]:
    return {
        name: file_partitions(name, spec)
        for name, spec in pipeline.sources.items()
        if spec.multi_file
    }


def _definition_frames(
    pipeline: LesterPipeline, files: Mapping[str, Mapping[str, Path]]
) -> dict[str, Frame]:
    frames = {}
    for name, spec in pipeline.sources.items():
        if name in files:
            file = next(iter(files[name].values()))  # the first file's schema
        else:
            if not spec.file.exists() and spec.generate is not None:
                spec.generate()
            file = spec.file
        if not file.exists():
            raise SourceError(
                f"source {name!r}: a pipeline with a partitioned split source checks the "
                "prepared plan when it is defined, which reads the file's schema, but there is "
                f"no file at {file}"
            )
        frames[name] = spec.read(name, file)
    return frames


def _why_unpartitionable(
    pipeline: LesterPipeline, files: Mapping[str, Mapping[str, Path]]
) -> str | None:
    """Why the prepared rows cannot be partitioned like the split source (``None``: they
    can)."""
    plan = pipeline.prepare(**_definition_frames(pipeline, files))
    if not isinstance(plan, Frame):
        raise PlanError(f"prepare() must return a Frame, got {type(plan).__name__}")
    split = pipeline.split.by
    try:
        rows = _split_rows(plan.node, split)
    except PlanError as exc:
        return str(exc)
    if rows != 1:
        return f"its prepared rows do not derive from split source {split!r}"
    return None


def _unpartitionable_error(pipeline: LesterPipeline, why: str) -> PlanError:
    return PlanError(
        f"pipeline {pipeline.name!r} cannot be partitioned (partitions={pipeline.partitions}): "
        f"{why}. Use partitions=0 or change prepare()"
    )


def check_partitionable(pipeline: LesterPipeline) -> None:
    """Raise :class:`PlanError` unless every prepared row derives from exactly one record of
    the split source (no group_by / drop_duplicates, the split source on the kept side of every
    join, once per row). Builds the plan from the source files' schemas: the first file of a
    multi-file source; a missing single file with a ``generate`` function is generated first.
    """
    why = _why_unpartitionable(pipeline, _multi_file_partitions(pipeline))
    if why is not None:
        raise _unpartitionable_error(pipeline, why)
