"""Plan nodes: the immutable tree a :class:`~lester_dagster.frame.Frame` builds.

Each node computes its :class:`Schema` when it is created: the output columns, what is known of
their dtypes, their **column lineage** (which source columns each output column is computed
from), the sources the rows derive from, and whether rows can carry several provenance
monomials (after aggregation). Building a node validates it, so a wrong column name fails where
the plan is written, not when it runs.

The rules, one per node type (each has its own test in tests/frame):

================  ========================================  ====================================
node              row provenance                            column lineage
================  ========================================  ====================================
Source            the record's own key id                   column <- (source, column)
Filter, Sort,     kept rows keep theirs                     unchanged
Split
Select / Rename   unchanged                                 kept / carried over to the new name
WithColumn        unchanged                                 new column <- union of its inputs
Join              product of both sides (left join: a       left columns from the left, right
                  row without match keeps the left only)    from the right, shared keys from both
Union             each row keeps its own                    per column, union over the inputs
Distinct          sum over the rows that collapsed          unchanged
Aggregate         sum over the rows of the group            group keys: theirs; each aggregate
                                                            <- its input column
================  ========================================  ====================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import pandas as pd

from lester_dagster.errors import (
    JoinTypeError,
    PlanError,
    UnknownColumnError,
    UnknownSourceError,
    UnsupportedOperationError,
)
from lester_dagster.frame.expr import Expr

__all__ = [
    "AGGREGATIONS",
    "RESERVED_PREFIX",
    "Agg",
    "Aggregate",
    "ColumnRef",
    "Distinct",
    "Filter",
    "Join",
    "Node",
    "Rename",
    "RowFunc",
    "Schema",
    "Select",
    "Sort",
    "Source",
    "SourceSpec",
    "Split",
    "Union",
    "WithColumn",
    "dtype_kind",
]

RESERVED_PREFIX = "__lester_"
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "first")


class ColumnRef(NamedTuple):
    """A column of a source: ``ColumnRef("customers", "country")``."""

    source: str
    column: str

    def __str__(self) -> str:
        return f"{self.source}.{self.column}"


Lineage = Mapping[str, frozenset[ColumnRef]]


def dtype_kind(dtype: Any) -> str:
    """A coarse dtype class used to check join keys: int, float, bool, string, datetime, other."""
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string"
    return "other"


def comparable(a: str | None, b: str | None) -> bool:
    """Whether values of the two dtype kinds can be equal (unknown kinds are given the benefit)."""
    if a is None or b is None or "other" in (a, b) or a == b:
        return True
    return {a, b} <= {"int", "float", "bool"}


@dataclass(frozen=True)
class Schema:
    """What is known about a node's output before it runs."""

    columns: tuple[str, ...]
    dtypes: Mapping[str, str | None]
    lineage: Lineage
    sources: Mapping[str, SourceSpec]
    multi: bool  # rows may carry several monomials (after group-by / drop_duplicates)

    def require(self, names: Sequence[str], where: str) -> None:
        for name in names:
            if name not in self.dtypes:
                raise UnknownColumnError(name, self.columns, where)


@dataclass(frozen=True, eq=False)
class SourceSpec:
    """Where a source's records come from and how they are identified."""

    name: str
    fmt: Literal["csv", "parquet", "json", "pandas"]
    key: tuple[str, ...]  # empty: a content hash of the whole record is the key
    columns: tuple[str, ...]
    dtypes: tuple[str, ...]
    path: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    data: pd.DataFrame | None = field(default=None, repr=False)

    def same_as(self, other: SourceSpec) -> bool:
        if self is other:
            return True
        return (self.fmt, self.path, self.key, self.options) == (
            other.fmt, other.path, other.key, other.options
        ) and self.fmt != "pandas"  # fmt: skip


@dataclass(frozen=True, eq=False)
class RowFunc:
    """A user function with its declared input columns.

    Row-wise (``vectorized=False``): called once per row with the input values as positional
    arguments. Vectorised: called once with a Series (one input) or a DataFrame (several).
    """

    func: Callable[..., Any]
    inputs: tuple[str, ...]
    vectorized: bool = False

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", type(self.func).__name__)


def _merge_sources(*schemas: Schema) -> dict[str, SourceSpec]:
    merged: dict[str, SourceSpec] = {}
    for schema in schemas:
        for name, spec in schema.sources.items():
            if name in merged and not merged[name].same_as(spec):
                raise PlanError(
                    f"two different sources are both named {name!r}; give each source a "
                    "distinct name= when reading it"
                )
            merged.setdefault(name, spec)
    return merged


def _lineage_of(schema: Schema, names: frozenset[str]) -> frozenset[ColumnRef]:
    out: frozenset[ColumnRef] = frozenset()
    for name in names:
        out |= schema.lineage[name]
    return out


class Node:
    """Base class of plan nodes; subclasses are frozen dataclasses with a ``schema``."""

    schema: Schema

    @property
    def children(self) -> tuple[Node, ...]:
        return ()

    def _set_schema(self, schema: Schema) -> None:
        object.__setattr__(self, "schema", schema)

    def describe(self) -> str:
        return type(self).__name__


def _check_not_reserved(names: Sequence[str], where: str) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise PlanError(f"column names must be non-empty strings; got {name!r} in {where}")
        if name.startswith(RESERVED_PREFIX):
            raise PlanError(
                f"column name {name!r} in {where} starts with the reserved prefix "
                f"{RESERVED_PREFIX!r}; rename it"
            )


@dataclass(frozen=True, eq=False)
class Source(Node):
    spec: SourceSpec

    def __post_init__(self) -> None:
        spec = self.spec
        _check_not_reserved(spec.columns, f"source {spec.name!r}")
        self._set_schema(
            Schema(
                columns=spec.columns,
                dtypes=MappingProxyType(dict(zip(spec.columns, spec.dtypes))),
                lineage=MappingProxyType(
                    {c: frozenset({ColumnRef(spec.name, c)}) for c in spec.columns}
                ),
                sources=MappingProxyType({spec.name: spec}),
                multi=False,
            )
        )

    def describe(self) -> str:
        key = ", ".join(self.spec.key) if self.spec.key else "content hash"
        where = f" {self.spec.path}" if self.spec.path else ""
        return f"Source {self.spec.name!r} ({self.spec.fmt}{where}; key: {key})"


def _inputs_of(value: Expr | RowFunc) -> frozenset[str]:
    return value.columns() if isinstance(value, Expr) else frozenset(value.inputs)


@dataclass(frozen=True, eq=False)
class _Unary(Node):
    parent: Node

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.parent,)


@dataclass(frozen=True, eq=False)
class Filter(_Unary):
    predicate: Expr | RowFunc

    def __post_init__(self) -> None:
        self.parent.schema.require(sorted(_inputs_of(self.predicate)), "filter")
        self._set_schema(self.parent.schema)

    def describe(self) -> str:
        p = self.predicate
        return f"Filter {p!r}" if isinstance(p, Expr) else f"Filter {p.name}({', '.join(p.inputs)})"


@dataclass(frozen=True, eq=False)
class Select(_Unary):
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        s = self.parent.schema
        s.require(self.columns, "select")
        if len(set(self.columns)) != len(self.columns):
            raise PlanError(f"select() lists a column twice: {list(self.columns)}")
        self._set_schema(
            Schema(
                self.columns,
                MappingProxyType({c: s.dtypes[c] for c in self.columns}),
                MappingProxyType({c: s.lineage[c] for c in self.columns}),
                s.sources,
                s.multi,
            )
        )

    def describe(self) -> str:
        return f"Select {list(self.columns)}"


@dataclass(frozen=True, eq=False)
class Rename(_Unary):
    mapping: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        s = self.parent.schema
        m = dict(self.mapping)
        s.require(list(m), "rename")
        _check_not_reserved(list(m.values()), "rename")
        out = tuple(m.get(c, c) for c in s.columns)
        if len(set(out)) != len(out):
            raise PlanError(f"rename {m} would give two columns the same name: {list(out)}")
        self._set_schema(
            Schema(
                out,
                MappingProxyType({m.get(c, c): s.dtypes[c] for c in s.columns}),
                MappingProxyType({m.get(c, c): s.lineage[c] for c in s.columns}),
                s.sources,
                s.multi,
            )
        )

    def describe(self) -> str:
        return f"Rename {dict(self.mapping)}"


@dataclass(frozen=True, eq=False)
class WithColumn(_Unary):
    name: str
    value: Expr | RowFunc

    def __post_init__(self) -> None:
        s = self.parent.schema
        _check_not_reserved([self.name], "with_column")
        inputs = _inputs_of(self.value)
        s.require(sorted(inputs), f"with_column({self.name!r})")
        columns = s.columns if self.name in s.dtypes else (*s.columns, self.name)
        dtypes = dict(s.dtypes)
        dtypes[self.name] = None
        lineage = dict(s.lineage)
        lineage[self.name] = _lineage_of(s, inputs)
        self._set_schema(
            Schema(columns, MappingProxyType(dtypes), MappingProxyType(lineage), s.sources, s.multi)
        )

    def describe(self) -> str:
        v = self.value
        shown = repr(v) if isinstance(v, Expr) else f"{v.name}({', '.join(v.inputs)})"
        return f"WithColumn {self.name!r} = {shown}"


@dataclass(frozen=True, eq=False)
class Sort(_Unary):
    by: tuple[str, ...]
    ascending: tuple[bool, ...]

    def __post_init__(self) -> None:
        self.parent.schema.require(self.by, "sort")
        if len(self.by) != len(self.ascending):
            raise PlanError(
                f"sort() got {len(self.by)} columns but {len(self.ascending)} ascending flags"
            )
        self._set_schema(self.parent.schema)

    def describe(self) -> str:
        return f"Sort {list(self.by)} ascending={list(self.ascending)}"


@dataclass(frozen=True, eq=False)
class Split(_Unary):
    """Rows whose key of ``source`` hashes into the test (or train) share."""

    source: str
    test_fraction: float
    seed: int
    side: Literal["train", "test"]

    def __post_init__(self) -> None:
        s = self.parent.schema
        if self.source not in s.sources:
            raise UnknownSourceError(self.source, s.sources)
        if not 0.0 < self.test_fraction < 1.0:
            raise PlanError(
                f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction!r}"
            )
        if s.multi:
            raise UnsupportedOperationError(
                "split() needs rows that each derive from one record of "
                f"{self.source!r}, but this frame was aggregated or de-duplicated; split before "
                "group_by/drop_duplicates"
            )
        self._set_schema(s)

    def describe(self) -> str:
        return f"Split {self.side} by key of {self.source!r} (test_fraction={self.test_fraction}, seed={self.seed})"  # noqa: E501


@dataclass(frozen=True, eq=False)
class Join(Node):
    left: Node
    right: Node
    left_on: tuple[str, ...]
    right_on: tuple[str, ...]
    how: Literal["inner", "left"]
    suffixes: tuple[str, str] = ("_x", "_y")
    # computed: output name of every left / right input column (None: merged into a shared key)
    left_names: Mapping[str, str] = field(init=False, repr=False)
    right_names: Mapping[str, str | None] = field(init=False, repr=False)

    @property
    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def __post_init__(self) -> None:
        ls, rs = self.left.schema, self.right.schema
        if self.how not in ("inner", "left"):
            raise PlanError(f"how must be 'inner' or 'left', got {self.how!r}")
        if not self.left_on or len(self.left_on) != len(self.right_on):
            raise PlanError(
                f"join needs as many left keys as right keys, got left_on={list(self.left_on)} "
                f"and right_on={list(self.right_on)}"
            )
        ls.require(self.left_on, "join (left side)")
        rs.require(self.right_on, "join (right side)")
        for lk, rk in zip(self.left_on, self.right_on):
            lt, rt = ls.dtypes[lk], rs.dtypes[rk]
            if not comparable(lt, rt):
                raise JoinTypeError(
                    f"join key types differ: left column {lk!r} is {lt}, right column {rk!r} is "
                    f"{rt}; cast one side first, e.g. with_column({rk!r}, col({rk!r}).astype(...))"
                )
        sources = _merge_sources(ls, rs)  # two different sources named alike: PlanError first
        overlap = set(ls.sources) & set(rs.sources)
        if overlap:
            raise UnsupportedOperationError(
                f"both sides of the join derive from source(s) {sorted(overlap)} (a self-join); "
                "this is not supported yet: read the file twice under two names instead"
            )
        shared = {lk for lk, rk in zip(self.left_on, self.right_on) if lk == rk}
        lsuf, rsuf = self.suffixes
        left_names = {
            c: (c + lsuf if c in rs.dtypes and c not in shared else c) for c in ls.columns
        }
        right_names: dict[str, str | None] = {
            c: None if c in shared else (c + rsuf if c in ls.dtypes else c) for c in rs.columns
        }
        out = [*left_names.values(), *(n for n in right_names.values() if n is not None)]
        if len(set(out)) != len(out):
            raise PlanError(
                f"join output would have duplicate column names {out}; pass other suffixes="
            )
        dtypes: dict[str, str | None] = {left_names[c]: ls.dtypes[c] for c in ls.columns}
        lineage = {left_names[c]: ls.lineage[c] for c in ls.columns}
        for c in rs.columns:
            name = right_names[c]
            if name is None:  # a shared key: its values are equal on both sides of an inner join
                if self.how == "inner":
                    lineage[c] = lineage[c] | rs.lineage[c]
            else:
                dtypes[name], lineage[name] = rs.dtypes[c], rs.lineage[c]
        object.__setattr__(self, "left_names", MappingProxyType(left_names))
        object.__setattr__(self, "right_names", MappingProxyType(right_names))
        self._set_schema(
            Schema(
                tuple(out),
                MappingProxyType(dtypes),
                MappingProxyType(lineage),
                MappingProxyType(sources),
                ls.multi or rs.multi,
            )
        )

    def describe(self) -> str:
        return f"Join {self.how} on {list(self.left_on)} = {list(self.right_on)}"


@dataclass(frozen=True, eq=False)
class Union(Node):
    parts: tuple[Node, ...]

    @property
    def children(self) -> tuple[Node, ...]:
        return self.parts

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise PlanError("union() needs at least two frames")
        first = self.parts[0].schema
        lineage = dict(first.lineage)
        dtypes = dict(first.dtypes)
        for i, part in enumerate(self.parts[1:], start=1):
            s = part.schema
            if set(s.columns) != set(first.columns):
                raise PlanError(
                    f"union() needs frames with the same columns; frame {i} has {list(s.columns)}, "
                    f"frame 0 has {list(first.columns)}"
                )
            for c in first.columns:
                lineage[c] = lineage[c] | s.lineage[c]
                if dtypes[c] != s.dtypes[c]:
                    dtypes[c] = None
        self._set_schema(
            Schema(
                first.columns,
                MappingProxyType(dtypes),
                MappingProxyType(lineage),
                MappingProxyType(_merge_sources(*(p.schema for p in self.parts))),
                any(p.schema.multi for p in self.parts),
            )
        )

    def describe(self) -> str:
        return f"Union of {len(self.parts)} frames"


@dataclass(frozen=True, eq=False)
class Distinct(_Unary):
    subset: tuple[str, ...] | None

    def __post_init__(self) -> None:
        s = self.parent.schema
        if self.subset is not None:
            if not self.subset:
                raise PlanError("drop_duplicates(subset=[]) names no column; omit subset instead")
            s.require(self.subset, "drop_duplicates")
        self._set_schema(Schema(s.columns, s.dtypes, s.lineage, s.sources, True))

    def describe(self) -> str:
        return f"Distinct on {list(self.subset) if self.subset else 'all columns'}"


class Agg(NamedTuple):
    """One named aggregation: output ``name`` = ``func`` of ``column``."""

    name: str
    column: str
    func: str


@dataclass(frozen=True, eq=False)
class Aggregate(_Unary):
    by: tuple[str, ...]
    aggs: tuple[Agg, ...]
    dropna: bool = True

    def __post_init__(self) -> None:
        s = self.parent.schema
        if not self.by:
            raise PlanError("group_by() needs at least one column")
        s.require(self.by, "group_by")
        if not self.aggs:
            raise PlanError(
                'agg() needs at least one aggregation, e.g. agg(n=("mail_id", "count"))'
            )
        names = [*self.by, *(a.name for a in self.aggs)]
        if len(set(names)) != len(names):
            raise PlanError(f"group_by/agg output has duplicate column names: {names}")
        _check_not_reserved([a.name for a in self.aggs], "agg")
        dtypes: dict[str, str | None] = {b: s.dtypes[b] for b in self.by}
        lineage = {b: s.lineage[b] for b in self.by}
        for a in self.aggs:
            s.require([a.column], f"agg({a.name}=...)")
            if a.func not in AGGREGATIONS:
                raise PlanError(
                    f"unknown aggregation {a.func!r} for {a.name!r}; "
                    f"use one of {list(AGGREGATIONS)}"
                )
            dtypes[a.name] = "int" if a.func == "count" else None
            lineage[a.name] = s.lineage[a.column]
        self._set_schema(
            Schema(
                tuple(names), MappingProxyType(dtypes), MappingProxyType(lineage), s.sources, True
            )
        )

    def describe(self) -> str:
        aggs = ", ".join(f"{a.name}={a.func}({a.column})" for a in self.aggs)
        return f"Aggregate by {list(self.by)}: {aggs}"
