"""The sample data as the rewrite prompt states it: files, columns, types, rows, keys.

:func:`describe_data` reads every data file of a directory (``.csv``, ``.parquet``, ``.json`` /
``.jsonl`` as JSON lines) with pandas and returns a :class:`DataDescription`: per file its
rows, columns with dtype, missing values and distinct values, the first rows, and its
**candidate keys**: single columns, then pairs of columns, that are unique and non-null in the
data (confirmed against every row, not guessed from names; id-like names first). The
description's :meth:`~DataDescription.markdown` is the ``data_description`` of
:func:`lester_dagster.rewrite.prompts.rewrite_messages`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lester_dagster.errors import RewriteError, preview

__all__ = ["DATA_SUFFIXES", "ColumnInfo", "DataDescription", "FileInfo", "describe_data"]

DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "json"}
"""File suffixes read as sources, with the ``SourceSpec`` format they map to."""

_SAMPLE_ROWS = 3
_MAX_FILES = 20


@dataclass(frozen=True)
class ColumnInfo:
    """One column: pandas dtype, missing values, distinct values (and a few of them)."""

    name: str
    dtype: str
    missing: int
    distinct: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileInfo:
    """One data file: name, format, rows, columns, the first rows and the candidate keys."""

    name: str
    format: str
    rows: int
    columns: tuple[ColumnInfo, ...]
    head: str
    keys: tuple[tuple[str, ...], ...] = ()

    @property
    def key(self) -> tuple[str, ...] | None:
        """The preferred key (the first candidate), ``None`` if no column set is unique."""
        return self.keys[0] if self.keys else None


@dataclass(frozen=True)
class DataDescription:
    """Every data file of ``directory``; :meth:`markdown` for the prompt, :meth:`to_dict`
    for the report."""

    directory: Path
    files: tuple[FileInfo, ...] = field(default=())

    def markdown(self, data_dir: str | None = None) -> str:
        """The description as the prompt shows it; ``data_dir``: where the module reads the
        files (its ``DATA_DIR``)."""
        where = f"`{data_dir}`" if data_dir else "the data directory"
        lines = [
            f"{len(self.files)} file(s), read by the module from {where} (the script reads them "
            "from the directory given as its first argument). Keys were confirmed on every row "
            "(unique, never missing)."
        ]
        for info in self.files:
            key = ", ".join(info.key) if info.key else None
            others = [", ".join(k) for k in info.keys[1:4]]
            lines += [
                "",
                f"## `{info.name}` ({info.format}, {info.rows} rows)",
                "",
                f"Key: `{key}`" if key else "Key: none (no unique, non-null column or pair)",
            ]
            if others:
                lines[-1] += f" (other unique columns: {', '.join(f'`{k}`' for k in others)})"
            lines += [
                "",
                "| column | dtype | missing | distinct | examples |",
                "|---|---|---|---|---|",
            ]
            for c in info.columns:
                examples = ", ".join(c.examples)
                lines.append(f"| {c.name} | {c.dtype} | {c.missing} | {c.distinct} | {examples} |")
            lines += ["", "First rows:", "", "```text", info.head, "```"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "files": [
                {
                    "name": f.name,
                    "format": f.format,
                    "rows": f.rows,
                    "columns": {c.name: c.dtype for c in f.columns},
                    "keys": [list(k) for k in f.keys],
                }
                for f in self.files
            ],
        }

    def summary(self) -> str:
        """One line: the files with their rows and keys."""
        parts = [
            f"{f.name} ({f.rows} rows, key {'+'.join(f.key) if f.key else 'none'})"
            for f in self.files
        ]
        return ", ".join(parts)


def _read(path: Path, fmt: str) -> Any:
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def _idlike(name: str) -> bool:
    lower = name.lower()
    return lower == "id" or lower.endswith(("_id", "id", "_key", "key", "email"))


def _candidate_keys(frame: Any) -> tuple[tuple[str, ...], ...]:
    if len(frame) == 0:
        return ()
    complete = [c for c in frame.columns if not frame[c].isna().any()]
    singles = [c for c in complete if frame[c].is_unique]
    singles.sort(key=lambda c: (not _idlike(str(c)), list(frame.columns).index(c)))
    if singles:
        return tuple((str(c),) for c in singles)
    pairs = [
        (str(a), str(b))
        for a, b in itertools.combinations(complete[:12], 2)
        if not frame.duplicated(subset=[a, b]).any()
    ]
    return tuple(pairs[:3])


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def describe_data(directory: str | os.PathLike[str]) -> DataDescription:
    """Describe every data file of ``directory`` (see the module docstring). Raises
    :class:`RewriteError` when the directory is missing, holds no data file, or a file
    cannot be read."""
    import pandas as pd

    root = Path(directory)
    if not root.is_dir():
        raise RewriteError(
            f"sample data directory {os.fspath(directory)!r} does not exist; pass the directory "
            "holding the script's input files (--data DIR)"
        )
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not paths:
        found = sorted(p.name for p in root.iterdir())
        raise RewriteError(
            f"no data files in {root} (looked for {', '.join(sorted(DATA_SUFFIXES))}); it holds: "
            f"{preview(found)}"
        )
    if len(paths) > _MAX_FILES:
        raise RewriteError(
            f"{root} holds {len(paths)} data files; the rewrite describes at most {_MAX_FILES}: "
            "pass a directory with only the script's inputs"
        )
    files = []
    for path in paths:
        fmt = DATA_SUFFIXES[path.suffix.lower()]
        try:
            frame = _read(path, fmt)
        except Exception as error:
            raise RewriteError(
                f"cannot read sample data file {path} as {fmt}: {type(error).__name__}: {error}"
            ) from error
        columns = []
        for name in frame.columns:
            series = frame[name]
            distinct = series.dropna().unique()
            columns.append(
                ColumnInfo(
                    name=str(name),
                    dtype=str(series.dtype),
                    missing=int(series.isna().sum()),
                    distinct=len(distinct),
                    examples=tuple(_text(v) for v in distinct[:3]),
                )
            )
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            head = frame.head(_SAMPLE_ROWS).to_string(index=False, max_colwidth=40)
        files.append(
            FileInfo(path.name, fmt, len(frame), tuple(columns), head, _candidate_keys(frame))
        )
    return DataDescription(root, tuple(files))
