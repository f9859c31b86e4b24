"""The Frame API: a lazy, immutable, provenance-tracking dataframe that reads like pandas.

::

    from lester_dagster.frame import col, read_csv

    customers = read_csv("customers.csv", key="customer_id")
    mails = read_csv("mails.csv", key="mail_id")
    prepared = (
        mails.filter(col("date") >= "2022-01-01")
        .join(customers.filter(col("country").isin(["DE", "FR"])), on="email")
        .with_column("text", col("text").str.lower())
    )
    result = prepared.execute()
    result.to_pandas()                      # the rows, as pandas
    result.lineage.backward(0)              # {"mails": [17], "customers": [4]}
    result.lineage.forward("customers", [4])
    result.lineage.columns("text")          # {ColumnRef("mails", "text")}

Every method returns a new Frame; nothing runs until :meth:`Frame.execute`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from lester_dagster.errors import PlanError, SourceError, UnknownColumnError
from lester_dagster.frame.engine import PandasEngine
from lester_dagster.frame.expr import Expr, col
from lester_dagster.frame.plan import (
    Agg,
    Aggregate,
    Distinct,
    Filter,
    Join,
    Node,
    Rename,
    RowFunc,
    Schema,
    Select,
    Sort,
    Source,
    SourceSpec,
    Split,
    Union,
    WithColumn,
    dtype_kind,
)
from lester_dagster.frame.result import Result

__all__ = [
    "Frame",
    "GroupBy",
    "execute",
    "from_pandas",
    "read_csv",
    "read_json",
    "read_parquet",
]

_SAMPLE_ROWS = 1000  # rows read at plan-build time to learn a text file's column types


def _names(args: tuple[Any, ...], what: str) -> tuple[str, ...]:
    """Accept f(a, b), f([a, b]) and f((a, b)) alike."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    for a in args:
        if not isinstance(a, str):
            raise PlanError(f"{what} takes column names (strings), got {a!r}")
    return tuple(args)


class Frame:
    """A lazily built, immutable plan of relational operations on sources with provenance."""

    __slots__ = ("_node",)

    def __init__(self, node: Node) -> None:
        self._node = node

    # -- introspection -------------------------------------------------------------------------
    @property
    def node(self) -> Node:
        """The plan node this frame stands for."""
        return self._node

    @property
    def schema(self) -> Schema:
        return self._node.schema

    @property
    def columns(self) -> list[str]:
        return list(self._node.schema.columns)

    @property
    def sources(self) -> list[str]:
        """Names of the sources the rows derive from."""
        return list(self._node.schema.sources)

    def column_lineage(self, column: str | None = None) -> Any:
        """The source columns of ``column``, or a dict for all columns when none is given."""
        lineage = self._node.schema.lineage
        if column is None:
            return dict(lineage)
        if column not in lineage:
            raise UnknownColumnError(column, self.columns)
        return lineage[column]

    def explain(self) -> str:
        """The plan as an indented tree, root first."""
        lines: list[str] = []

        def walk(node: Node, depth: int) -> None:
            lines.append("  " * depth + node.describe())
            for child in node.children:
                walk(child, depth + 1)

        walk(self._node, 0)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Frame columns={self.columns} sources={self.sources}>\n{self.explain()}"

    # -- operators -----------------------------------------------------------------------------
    def filter(
        self, predicate: Expr | Callable[..., Any], *, columns: Sequence[str] | None = None
    ) -> Frame:
        """Keep the rows where ``predicate`` holds.

        ``predicate`` is an expression (``col("x") > 3``), or a Python function called once per
        row with the values of the declared ``columns``: ``filter(is_spam, columns=["text"])``.
        """
        return Frame(
            Filter(self._node, _value(predicate, columns, vectorized=False, what="filter"))
        )

    def select(self, *columns: str | Sequence[str]) -> Frame:
        """Keep only these columns, in this order."""
        return Frame(Select(self._node, _names(columns, "select()")))

    def drop(self, *columns: str | Sequence[str]) -> Frame:
        """Remove these columns."""
        names = _names(columns, "drop()")
        self.schema.require(names, "drop")
        return Frame(Select(self._node, tuple(c for c in self.columns if c not in names)))

    def rename(
        self, mapping: Mapping[str, str] | None = None, *, columns: Mapping[str, str] | None = None
    ) -> Frame:
        """Rename columns: ``rename({"old": "new"})`` or pandas' ``rename(columns={...})``."""
        m = mapping if mapping is not None else columns
        if not m:
            raise PlanError("rename() needs a mapping of old to new column names")
        return Frame(Rename(self._node, tuple(m.items())))

    def with_column(
        self,
        name: str,
        value: Expr | Callable[..., Any],
        *,
        inputs: Sequence[str] | None = None,
        vectorized: bool = False,
    ) -> Frame:
        """Add (or replace) column ``name``.

        ``value`` is an expression, or a function of the declared ``inputs`` columns: called per
        row with their values, or, with ``vectorized=True``, once with a Series (one input) or a
        DataFrame (several), returning one value per row.

        A vectorised function must still be row-wise in effect: value ``i`` may depend only on
        input row ``i`` (``s.str.len()``, not ``s - s.mean()``). Row provenance says each row
        derives from its own records, and forgetting re-executes just the affected rows; a
        function that looks across rows would make both wrong. Compute cross-row statistics in
        the feature encoders (a StandardScaler), which forget them exactly.
        """
        return Frame(WithColumn(self._node, name, _value(value, inputs, vectorized, "with_column")))

    def assign(self, **columns: Expr) -> Frame:
        """Add several columns from expressions, like pandas' ``assign``."""
        frame = self
        for name, value in columns.items():
            if not isinstance(value, Expr):
                raise PlanError(
                    f"assign({name}=...) takes expressions; for a function use "
                    f"with_column({name!r}, func, inputs=[...])"
                )
            frame = frame.with_column(name, value)
        return frame

    def join(
        self,
        other: Frame,
        on: str | Sequence[str] | None = None,
        *,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        how: Literal["inner", "left"] = "inner",
        suffixes: tuple[str, str] = ("_x", "_y"),
    ) -> Frame:
        """Join with ``other`` (pandas ``merge`` semantics: one-to-many and many-to-many)."""
        if not isinstance(other, Frame):
            raise PlanError(f"join() needs a Frame to join with, got {type(other).__name__}")
        if on is not None:
            if left_on is not None or right_on is not None:
                raise PlanError("pass either on= or left_on= and right_on=, not both")
            left_on = right_on = on
        if left_on is None or right_on is None:
            raise PlanError("join() needs on= (same column names) or both left_on= and right_on=")
        lk = (left_on,) if isinstance(left_on, str) else tuple(left_on)
        rk = (right_on,) if isinstance(right_on, str) else tuple(right_on)
        return Frame(Join(self._node, other._node, lk, rk, how, tuple(suffixes)))  # type: ignore[arg-type]

    def union(self, *others: Frame) -> Frame:
        """Rows of this frame followed by the rows of ``others`` (same columns; pandas concat)."""
        return Frame(Union((self._node, *(o._node for o in others))))

    def drop_duplicates(self, subset: str | Sequence[str] | None = None) -> Frame:
        """Keep the first of each set of equal rows; it carries the provenance of all of them."""
        names = (
            None if subset is None else ((subset,) if isinstance(subset, str) else tuple(subset))
        )
        return Frame(Distinct(self._node, names))

    def dropna(self, subset: str | Sequence[str] | None = None) -> Frame:
        """Drop rows with a missing value in any of ``subset`` (default: all columns)."""
        names = (
            self.columns
            if subset is None
            else ([subset] if isinstance(subset, str) else list(subset))
        )
        self.schema.require(names, "dropna")
        if not names:
            return self
        condition = col(names[0]).not_null()
        for name in names[1:]:
            condition = condition & col(name).not_null()
        return self.filter(condition)

    def fillna(self, value: Any) -> Frame:
        """Fill missing values: one value for every column, or a dict per column."""
        fills = value if isinstance(value, Mapping) else dict.fromkeys(self.columns, value)
        frame = self
        for name, fill in fills.items():
            frame = (
                frame.with_column(name, col(name).fill_null(fill))
                if name in self.schema.dtypes
                else frame
            )
            self.schema.require([name], "fillna")
        return frame

    def group_by(self, *by: str | Sequence[str], dropna: bool = True) -> GroupBy:
        """Group rows by these columns; finish with :meth:`GroupBy.agg`."""
        return GroupBy(self, _names(by, "group_by()"), dropna)

    groupby = group_by

    def sort(self, by: str | Sequence[str], ascending: bool | Sequence[bool] = True) -> Frame:
        """Order rows by these columns (stable)."""
        names = (by,) if isinstance(by, str) else tuple(by)
        flags = (ascending,) * len(names) if isinstance(ascending, bool) else tuple(ascending)
        return Frame(Sort(self._node, names, flags))

    sort_values = sort

    def split(self, by: str, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[Frame, Frame]:
        """Deterministic (train, test) split by a hash of the key of source ``by``.

        A record's side depends only on its own key and the seed, so deleting records never
        moves other records between train and test.
        """
        return (
            Frame(Split(self._node, by, float(test_fraction), int(seed), "train")),
            Frame(Split(self._node, by, float(test_fraction), int(seed), "test")),
        )

    # -- running -------------------------------------------------------------------------------
    def execute(self) -> Result:
        """Run the plan with the pandas engine."""
        return execute(self)[0]

    collect = execute


class GroupBy:
    """The pending result of :meth:`Frame.group_by`."""

    def __init__(self, frame: Frame, by: tuple[str, ...], dropna: bool) -> None:
        frame.schema.require(by, "group_by")
        self._frame, self._by, self._dropna = frame, by, dropna

    def agg(self, **named: tuple[str, str]) -> Frame:
        """Named aggregations, as in pandas: ``agg(n=("mail_id", "count"), avg=("x", "mean"))``."""
        aggs = []
        for name, spec in named.items():
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise PlanError(
                    f"agg({name}=...) needs a (column, function) pair such as "
                    f'("mail_id", "count"), got {spec!r}'
                )
            aggs.append(Agg(name, spec[0], spec[1]))
        return Frame(Aggregate(self._frame.node, self._by, tuple(aggs), self._dropna))


def _value(
    value: Expr | Callable[..., Any], inputs: Sequence[str] | None, vectorized: bool, what: str
) -> Expr | RowFunc:
    if isinstance(value, Expr):
        if inputs is not None:
            raise PlanError(f"{what}: an expression knows its columns; drop columns=/inputs=")
        return value
    if callable(value):
        if inputs is None:
            raise PlanError(
                f"{what}: a function needs its input columns declared (columns=[...] for "
                "filter, inputs=[...] for with_column) so lineage can follow them"
            )
        names = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        if not names:
            raise PlanError(f"{what}: declare at least one input column for the function")
        return RowFunc(value, names, vectorized)
    raise PlanError(f"{what} takes an expression (col(...) ...) or a function, got {value!r}")


def execute(*frames: Frame) -> tuple[Result, ...]:
    """Run several frames in one go; shared sub-plans (e.g. train and test) run once."""
    engine = PandasEngine()
    out = []
    for frame in frames:
        computed = engine.run(frame.node)
        out.append(Result(frame.schema, computed.frame, computed.prov, engine.sources))
    return tuple(out)


# -- sources ---------------------------------------------------------------------------------
def _key(key: str | Sequence[str] | None) -> tuple[str, ...]:
    if key is None:
        return ()
    return (key,) if isinstance(key, str) else tuple(key)


def _make_source(
    name: str, fmt: Any, path: str | None, key: tuple[str, ...], sample: pd.DataFrame,
    options: dict[str, Any], data: pd.DataFrame | None = None,
) -> Frame:  # fmt: skip
    if not isinstance(name, str) or not name or name.startswith("__"):
        raise PlanError(f"a source needs a name (letters, digits, _), got {name!r}")
    columns = tuple(str(c) for c in sample.columns)
    for k in key:
        if k not in columns:
            raise UnknownColumnError(k, columns, f"the key of source {name!r}")
    spec = SourceSpec(
        name=name,
        fmt=fmt,
        key=key,
        columns=columns,
        dtypes=tuple(dtype_kind(t) for t in sample.dtypes),
        path=path,
        options=tuple(sorted(options.items())),
        data=data,
    )
    return Frame(Source(spec))


def _path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise SourceError(f"no such file: {p}")
    return p


def read_csv(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    key: str | Sequence[str] | None = None,
    **read_options: Any,
) -> Frame:
    """A csv source. ``key``: the column(s) that identify a record (default: a content hash).

    Extra keyword arguments go to ``pandas.read_csv``. The file is read when the plan runs.
    """
    p = _path(path)
    sample = pd.read_csv(p, nrows=_SAMPLE_ROWS, **read_options)
    return _make_source(name or p.stem, "csv", str(p), _key(key), sample, read_options)


def read_parquet(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    key: str | Sequence[str] | None = None,
    **read_options: Any,
) -> Frame:
    """A Parquet source (the schema is read from the file's metadata)."""
    import pyarrow.parquet as pq

    p = _path(path)
    sample = pq.read_schema(p).empty_table().to_pandas()
    if "columns" in read_options:
        sample = sample[list(read_options["columns"])]
    return _make_source(name or p.stem, "parquet", str(p), _key(key), sample, read_options)


def read_json(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    key: str | Sequence[str] | None = None,
    **read_options: Any,
) -> Frame:
    """A JSON-lines source (one record per line)."""
    p = _path(path)
    sample = pd.read_json(p, lines=True, nrows=_SAMPLE_ROWS, **read_options)
    return _make_source(name or p.stem, "json", str(p), _key(key), sample, read_options)


def from_pandas(frame: pd.DataFrame, *, name: str, key: str | Sequence[str] | None = None) -> Frame:
    """A source from an in-memory pandas DataFrame (its index is ignored)."""
    if not isinstance(frame, pd.DataFrame):
        raise PlanError(f"from_pandas() needs a pandas DataFrame, got {type(frame).__name__}")
    data = frame.reset_index(drop=True)
    return _make_source(name, "pandas", None, _key(key), data, {}, data)
