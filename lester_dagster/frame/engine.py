"""The pandas engine: executes a plan and carries provenance beside every intermediate frame.

User data and provenance travel separately: each intermediate is a pandas DataFrame with a
RangeIndex (only the user's columns) plus a :class:`Prov` of the same length. Operators that
select or reorder rows compute an index array and apply it to both, so user code (expressions,
UDFs) never sees provenance, and provenance never leaks into a result's columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.errors import (
    DuplicateKeyError,
    ExpressionError,
    JoinTypeError,
    LesterError,
    PlanError,
    SourceError,
    UDFError,
    UnknownColumnError,
    UnknownSourceError,
    UnsupportedOperationError,
)
from lester_dagster.frame.expr import Expr
from lester_dagster.frame.plan import (
    Aggregate,
    Distinct,
    Filter,
    Join,
    Node,
    Rename,
    RowFunc,
    Select,
    Sort,
    Source,
    SourceSpec,
    Split,
    Union,
    WithColumn,
    comparable,
    dtype_kind,
)
from lester_dagster.frame.provenance import Ids, Prov, hash_keys, mix64

__all__ = [
    "KEY_HASH_COLUMN",
    "Computed",
    "PandasEngine",
    "SourceTable",
    "evaluate",
    "read_source",
    "split_mask",
]

KEY_HASH_COLUMN = "key_hash"


@dataclass(frozen=True)
class SourceTable:
    """A source as read: its key columns and the key id of every record (the key index)."""

    spec: SourceSpec
    keys: pd.DataFrame  # index: key id (uint64); columns: the key columns, or KEY_HASH_COLUMN
    rows: int


@dataclass(frozen=True)
class Computed:
    frame: pd.DataFrame
    prov: Prov


def read_source(spec: SourceSpec) -> pd.DataFrame:
    """Read a source's records with pandas (the file is read at execution time)."""
    opts = dict(spec.options)
    try:
        if spec.fmt == "pandas":
            assert spec.data is not None
            return spec.data.reset_index(drop=True)
        assert spec.path is not None
        frame: pd.DataFrame
        if spec.fmt == "csv":
            frame = pd.read_csv(spec.path, **opts)
        elif spec.fmt == "parquet":
            frame = pd.read_parquet(spec.path, **opts)
        else:
            frame = pd.read_json(spec.path, lines=True, **opts)
        return frame
    except FileNotFoundError as exc:
        raise SourceError(f"source {spec.name!r}: file {spec.path} does not exist") from exc
    except (ValueError, OSError) as exc:
        raise SourceError(
            f"source {spec.name!r}: cannot read {spec.path} as {spec.fmt}: {exc}"
        ) from exc


def _key_ids(spec: SourceSpec, df: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    if spec.key:
        keys = df[list(spec.key)]
        for k in spec.key:
            missing = int(keys[k].isna().sum())
            if missing:
                raise DuplicateKeyError(
                    f"source {spec.name!r}: key column {k!r} has {missing} missing value(s); "
                    "every record needs a key (choose other key columns or drop those rows)"
                )
        ids = hash_keys(df, spec.key)
        # equal keys hash alike, so unique ids prove unique keys (one hash-table pass)
        if not pd.Index(ids).is_unique:
            dup = keys.duplicated(keep=False)
            if not dup.any():  # pragma: no cover - two distinct keys with the same 64-bit hash
                raise DuplicateKeyError(f"source {spec.name!r}: two distinct keys hash alike")
            examples = keys[dup].drop_duplicates().head(5).to_dict("records")
            raise DuplicateKeyError(
                f"source {spec.name!r}: key {list(spec.key)} is not unique, e.g. {examples}; "
                "name key columns that identify each record"
            )
        index = keys.set_axis(pd.Index(ids, dtype=np.uint64, name="key_id"), axis=0)
    else:
        ids = hash_keys(df, list(df.columns))
        hexes = pd.Series(ids).map(lambda i: format(i, "016x"))
        index = pd.DataFrame(
            {KEY_HASH_COLUMN: hexes.to_numpy()}, index=pd.Index(ids, dtype=np.uint64, name="key_id")
        )
        index = index[~index.index.duplicated()]
    return ids, index


def _series(value: Any, n: int) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.reset_index(drop=True)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return pd.Series(value)
    return pd.Series([value] * n) if n else pd.Series([], dtype=object)


def _str(s: pd.Series) -> Any:
    if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
        raise PlanError(
            f"a .str method was used on a column of dtype {s.dtype}; cast with .astype('str')"
        )
    return s.str


def _dates(s: pd.Series) -> Any:
    return (s if pd.api.types.is_datetime64_any_dtype(s.dtype) else pd.to_datetime(s)).dt


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
    "pow": lambda a, b: a**b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "and": lambda a, b: a & b, "or": lambda a, b: a | b,
}  # fmt: skip

_METHODS: dict[str, Callable[..., Any]] = {
    "neg": lambda s: -s,
    "invert": lambda s: ~s,
    "isin": lambda s, values: s.isin(list(values)),
    "is_null": lambda s: s.isna(),
    "not_null": lambda s: s.notna(),
    "fill_null": lambda s, v: s.fillna(v),
    "astype": lambda s, dtype: s.astype(dtype),
    "between": lambda s, lo, hi: (s >= lo) & (s <= hi),
    "abs": lambda s: s.abs(),
    "round": lambda s, d: s.round(d),
    "clip": lambda s, lo, hi: s.clip(lo, hi),
    "to_datetime": lambda s, format=None: pd.to_datetime(s, format=format),
    "str_lower": lambda s: _str(s).lower(),
    "str_upper": lambda s: _str(s).upper(),
    "str_strip": lambda s: _str(s).strip(),
    "str_len": lambda s: _str(s).len(),
    "str_word_count": lambda s: _str(s).split().str.len(),
    "str_contains": lambda s, pat, case=True, regex=True: _str(s).contains(
        pat, case=case, regex=regex, na=False
    ),
    "str_startswith": lambda s, p: _str(s).startswith(p, na=False),
    "str_endswith": lambda s, p: _str(s).endswith(p, na=False),
    "str_replace": lambda s, pat, repl, regex=False: _str(s).replace(pat, repl, regex=regex),
    "str_slice": lambda s, start, stop: _str(s).slice(start, stop),
    "dt_year": lambda s: _dates(s).year,
    "dt_month": lambda s: _dates(s).month,
    "dt_day": lambda s: _dates(s).day,
    "dt_dayofweek": lambda s: _dates(s).day_of_week,  # .dayofweek is deprecated in pandas 3
    "when": lambda c, a, b: np.where(np.asarray(c.fillna(False), dtype=bool), a, b),
}


def evaluate(expr: Expr, frame: pd.DataFrame) -> Any:
    """Evaluate an expression against a pandas DataFrame (a Series, or a scalar for literals)."""
    if expr.op == "col":
        name = expr.args[0]
        if name not in frame.columns:
            raise UnknownColumnError(name, [str(c) for c in frame.columns], "expression")
        return frame[name]
    if expr.op == "lit":
        return expr.args[0]
    args = [evaluate(a, frame) if isinstance(a, Expr) else a for a in expr.args]
    if expr.op in _BINARY:
        return _BINARY[expr.op](args[0], args[1])
    if expr.op == "when":
        return pd.Series(_METHODS["when"](_series(args[0], len(frame)), args[1], args[2]))
    if args and not isinstance(args[0], pd.Series):
        args[0] = _series(args[0], len(frame))
    return _METHODS[expr.op](*args, **dict(expr.options))


def _run_expr(expr: Expr, frame: pd.DataFrame) -> Any:
    """:func:`evaluate`, with pandas' failures turned into an error that names the expression."""
    try:
        return evaluate(expr, frame)
    except LesterError:
        raise
    except Exception as exc:
        raise ExpressionError(
            f"expression {expr!r} failed on the data: {type(exc).__name__}: {exc}; check the "
            "column types (cast with .astype(...)) and missing values (.fill_null(...))"
        ) from exc


def _apply_func(fn: RowFunc, frame: pd.DataFrame) -> pd.Series:
    inputs = list(fn.inputs)
    n = len(frame)
    try:
        if fn.vectorized:
            arg = frame[inputs[0]] if len(inputs) == 1 else frame[inputs]
            out = fn.func(arg)
        elif len(inputs) == 1:
            out = [fn.func(v) for v in frame[inputs[0]].tolist()]
        else:
            out = [fn.func(*vals) for vals in zip(*(frame[c].tolist() for c in inputs))]
    except Exception as exc:
        raise UDFError(f"function {fn.name} on columns {inputs} failed: {exc!r}") from exc
    series = (
        _series(out, n)
        if not isinstance(out, list)
        else pd.Series(out, dtype=object if not out else None)
    )
    if len(series) != n:
        raise UDFError(
            f"function {fn.name} returned {len(series)} values for {n} rows; "
            "it must return one value per row"
        )
    return series


def _mask(value: Any, n: int, what: str) -> np.ndarray:
    series = _series(value, n)
    if not (pd.api.types.is_bool_dtype(series.dtype) or series.isna().all()):
        raise PlanError(f"{what} must give True/False per row, got values of dtype {series.dtype}")
    return np.asarray(series.fillna(False), dtype=bool)


def _split_hash(ids: Ids, seed: int) -> npt.NDArray[np.float64]:
    """A uniform number in [0, 1) per key id, from the id and the seed only."""
    return (mix64(ids, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_mask(prov: Prov, source: str, test_fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """The rows of ``prov`` on the test side of a split by the key of ``source``.

    Exactly what :meth:`Frame.split` computes (``True``: test, ``False``: train): the side of a
    row depends only on the key id of its ``source`` record and ``seed``, so stored provenance
    alone (an artifact, a partition) is enough to split, and deleting records never moves other
    records between train and test.
    """
    if source not in prov.keys:
        raise UnknownSourceError(source, prov.sources)
    if isinstance(test_fraction, bool) or not 0.0 < float(test_fraction) < 1.0:
        raise PlanError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    ids = prov.keys[source]
    if not prov.single:
        # an aggregated row splits with the one record of ``source`` all its monomials share
        # (e.g. orders summed per customer, split by customer)
        lengths = prov.lengths()
        if (lengths == 0).any():
            raise PlanError(
                f"split by {source!r}: {int((lengths == 0).sum())} row(s) derive from no record"
            )
        starts = np.asarray(prov.offsets, dtype=np.intp)[:-1]
        first = ids[starts]
        mixed = ids != first[prov.row_of_monomial()]
        if mixed.any():
            rows = np.unique(prov.row_of_monomial()[mixed])
            raise UnsupportedOperationError(
                f"split by {source!r} needs rows that each derive from one record of "
                f"{source!r}, but {rows.size} row(s) (e.g. row {int(rows[0])}) were aggregated "
                f"over several of its records; group by {source!r}'s key, or split before "
                "group_by/drop_duplicates"
            )
        ids = first
    if (ids == 0).any():
        raise PlanError(
            f"split by {source!r}: {int((ids == 0).sum())} row(s) do not derive from any "
            f"record of {source!r} (left join or union); split by another source"
        )
    mask: npt.NDArray[np.bool_] = _split_hash(ids, int(seed)) < float(test_fraction)
    return mask


class PandasEngine:
    """Executes plans with pandas. One instance caches shared sub-plans within one execution."""

    def __init__(self) -> None:
        self._cache: dict[int, Computed] = {}
        self._keep: list[Node] = []  # keeps cached nodes alive so their ids stay unique
        self.sources: dict[str, SourceTable] = {}

    def run(self, node: Node) -> Computed:
        hit = self._cache.get(id(node))
        if hit is not None:
            return hit
        method: Callable[[Any], Computed] = getattr(self, "_" + type(node).__name__.lower())
        out = method(node)
        self._cache[id(node)] = out
        self._keep.append(node)
        return out

    # -- sources -------------------------------------------------------------------------------
    def _source(self, node: Source) -> Computed:
        spec = node.spec
        df = read_source(spec)
        missing = [c for c in spec.columns if c not in df.columns]
        if missing:
            raise SourceError(
                f"source {spec.name!r} no longer has column(s) {missing} (has {list(df.columns)}); "
                "rebuild the plan"
            )
        df = df[list(spec.columns)]
        ids, index = _key_ids(spec, df)
        self.sources[spec.name] = SourceTable(spec, index, len(df))
        return Computed(df.reset_index(drop=True), Prov.of_source(spec.name, ids))

    # -- row-preserving operators --------------------------------------------------------------
    def _take(self, c: Computed, rows: np.ndarray) -> Computed:
        return Computed(c.frame.take(rows).reset_index(drop=True), c.prov.take(rows))

    def _filter(self, node: Filter) -> Computed:
        c = self.run(node.parent)
        p = node.predicate
        value = _run_expr(p, c.frame) if isinstance(p, Expr) else _apply_func(p, c.frame)
        return self._take(
            c, np.flatnonzero(_mask(value, len(c.frame), f"filter {node.describe()}"))
        )

    def _split(self, node: Split) -> Computed:
        c = self.run(node.parent)
        test = split_mask(c.prov, node.source, node.test_fraction, node.seed)
        return self._take(c, np.flatnonzero(test if node.side == "test" else ~test))

    def _sort(self, node: Sort) -> Computed:
        c = self.run(node.parent)
        order = (
            c.frame.reset_index(drop=True)
            .sort_values(list(node.by), ascending=list(node.ascending), kind="stable")
            .index.to_numpy()
        )
        return self._take(c, order)

    def _select(self, node: Select) -> Computed:
        c = self.run(node.parent)
        return Computed(c.frame[list(node.columns)], c.prov)

    def _rename(self, node: Rename) -> Computed:
        c = self.run(node.parent)
        return Computed(c.frame.rename(columns=dict(node.mapping)), c.prov)

    def _withcolumn(self, node: WithColumn) -> Computed:
        c = self.run(node.parent)
        v = node.value
        value = _run_expr(v, c.frame) if isinstance(v, Expr) else _apply_func(v, c.frame)
        frame = c.frame.copy(deep=False)
        frame[node.name] = (
            _series(value, len(frame)).to_numpy()
            if not isinstance(value, pd.Series)
            else value.reset_index(drop=True)
        )
        return Computed(frame, c.prov)

    # -- combining operators -------------------------------------------------------------------
    def _join(self, node: Join) -> Computed:
        lc, rc = self.run(node.left), self.run(node.right)
        for lk, rk in zip(node.left_on, node.right_on):
            lt, rt = dtype_kind(lc.frame[lk].dtype), dtype_kind(rc.frame[rk].dtype)
            if not comparable(lt, rt):
                raise JoinTypeError(
                    f"join key types differ: left column {lk!r} is {lc.frame[lk].dtype}, right "
                    f"column {rk!r} is {rc.frame[rk].dtype}; cast one side first with "
                    f"with_column({rk!r}, col({rk!r}).astype(...))"
                )
        lpos, rpos = "__lester_lpos", "__lester_rpos"
        left = lc.frame.rename(columns=dict(node.left_names))
        left[lpos] = np.arange(len(left))
        tmp = {c: f"__lester_key{i}" for i, c in enumerate(node.right_on)}
        right = rc.frame.rename(columns={c: n or tmp[c] for c, n in node.right_names.items()})
        right[rpos] = np.arange(len(right))
        rkeys = [node.right_names[k] or tmp[k] for k in node.right_on]
        lkeys = [node.left_names[k] for k in node.left_on]
        merged = left.merge(right, how=node.how, left_on=lkeys, right_on=rkeys, sort=False)
        lrows = merged[lpos].to_numpy(dtype=np.intp)
        rrows = merged[rpos].fillna(-1).to_numpy(dtype=np.intp)
        out = merged[list(node.schema.columns)].reset_index(drop=True)
        return Computed(out, Prov.product(lc.prov, lrows, rc.prov, rrows))

    def _union(self, node: Union) -> Computed:
        parts = [self.run(p) for p in node.parts]
        columns = list(node.schema.columns)
        frame = pd.concat([p.frame[columns] for p in parts], ignore_index=True)
        return Computed(frame, Prov.concat([p.prov for p in parts]))

    def _distinct(self, node: Distinct) -> Computed:
        c = self.run(node.parent)
        subset = list(node.subset or c.frame.columns)
        grouped = c.frame.groupby(subset, sort=False, dropna=False)
        group = grouped.ngroup().to_numpy().astype(np.intp)
        n = int(grouped.ngroups)
        first = np.full(n, len(group), dtype=np.intp)
        np.minimum.at(first, group, np.arange(len(group), dtype=np.intp))
        frame = c.frame.take(first).reset_index(drop=True)
        return Computed(frame, c.prov.group(group, n))

    def _aggregate(self, node: Aggregate) -> Computed:
        c = self.run(node.parent)
        by = list(node.by)
        grouped = c.frame.groupby(by, sort=True, dropna=node.dropna)
        out = grouped.agg(**{a.name: (a.column, a.func) for a in node.aggs}).reset_index()
        group = grouped.ngroup()
        group_ids = group.fillna(-1).to_numpy().astype(np.intp)
        if len(out) != int(grouped.ngroups):  # pragma: no cover - pandas invariant
            raise PlanError("internal error: group count mismatch")
        return Computed(out[list(node.schema.columns)], c.prov.group(group_ids, len(out)))
