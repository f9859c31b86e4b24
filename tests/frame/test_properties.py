"""Property-based tests: provenance predicts exactly what deleting source records does.

Sources are small in-memory frames ``a``, ``b``, ``c`` with an integer key ``<s>_id`` and two
small-domain columns ``<s>1``, ``<s>2``; every source appears at most once in a plan, and all
column names are distinct, so plans never hit naming errors. A random plan is drawn as a
*builder* (a function of the source frames), so the very same plan can be rebuilt on source data
from which the test itself removed records: that re-run is the oracle.

Deletion invariant (D): delete the records ``K`` of source ``S`` and re-run. For every plan
whose operators are monotone in ``S`` -- filters, projections, with_column, inner joins, unions,
and left joins as long as ``S`` is not on their right side -- the new result equals the old result
minus exactly the rows whose provenance mentions ``K`` (compared as multisets of rows).

Left joins with ``S`` on the right side are not monotone: a left row whose every match is deleted
does not disappear, it comes back as one unmatched row (right columns missing). For a left join
at the top of the plan (optionally followed by a projection) the test asserts exactly that: new
result = old result - rows mentioning ``K`` + one unmatched row per left row all of whose rows
mentioned ``K``. Deeper in a plan, later operators may treat those new missing values in any
way (``x != 1`` holds for a missing ``x``), so there only "the new result mentions none of ``K``"
is asserted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lester_dagster.frame import Expr, Frame, Result, col, execute, from_pandas, lit, when

Build = Callable[[Mapping[str, Frame]], Frame]
Draw = Callable[[st.SearchStrategy[Any]], Any]  # data.draw
Data = dict[str, pd.DataFrame]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- inputs --------------------------------------------------------------------------------------
@st.composite
def source_data(draw: st.DrawFn) -> Data:
    names = draw(st.sampled_from([("a", "b"), ("a", "b", "c")]))
    out: Data = {}
    for name in names:
        ids = draw(st.permutations(range(7)))[: draw(st.integers(1, 6))]
        columns: dict[str, Any] = {f"{name}_id": np.array(ids, dtype=np.int64)}
        for column in (f"{name}1", f"{name}2"):
            values = draw(st.lists(st.integers(0, 2), min_size=len(ids), max_size=len(ids)))
            columns[column] = np.array(values, dtype=np.int64)
        out[name] = pd.DataFrame(columns)
    return out


def frames_of(data: Data) -> dict[str, Frame]:
    return {name: from_pandas(df, name=name, key=f"{name}_id") for name, df in data.items()}


def without(data: Data, source: str, keys: list[Any]) -> Data:
    """The oracle's input: ``data`` with the records ``keys`` of ``source`` removed."""
    out = dict(data)
    df = data[source]
    out[source] = df[~df[f"{source}_id"].isin(keys)].reset_index(drop=True)
    return out


# -- random plans --------------------------------------------------------------------------------
class PlanGen:
    """Draws random plans over the sources; remembers which sources feed a left join's right."""

    def __init__(self, draw: Draw, probe: Mapping[str, Frame]) -> None:
        self.draw, self.probe, self.counter = draw, probe, 0
        self.right_of_left_join: set[str] = set()

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def columns(self, build: Build) -> list[str]:
        return build(self.probe).columns

    def subset(self, columns: list[str], k: int) -> list[str]:
        """``k`` distinct columns, in a random order."""
        return list(self.draw(st.permutations(columns)))[:k]

    def plan(self, names: tuple[str, ...], allow_left: bool) -> Build:
        if len(names) == 1:
            name = names[0]

            build: Build = lambda fs: fs[name]  # noqa: E731
        else:
            k = self.draw(st.integers(1, len(names) - 1))
            left = self.plan(names[:k], allow_left)
            right = self.plan(names[k:], allow_left)
            kinds = ["inner", "left", "union"] if allow_left else ["inner", "union"]
            build = self.combine(self.draw(st.sampled_from(kinds)), left, right)
        for _ in range(self.draw(st.integers(0, 2))):
            build = self.unary(build)
        return build

    def combine(self, kind: str, left: Build, right: Build) -> Build:
        lcols, rcols = self.columns(left), self.columns(right)
        if kind == "union":
            k = self.draw(st.integers(1, min(2, len(lcols), len(rcols))))
            lsel, rsel = self.subset(lcols, k), self.subset(rcols, k)
            out = [self.fresh("u") for _ in range(k)]
            return lambda fs: (
                left(fs)
                .select(lsel)
                .rename(dict(zip(lsel, out)))
                .union(right(fs).select(rsel).rename(dict(zip(rsel, out))))
            )
        lc, rc = self.draw(st.sampled_from(lcols)), self.draw(st.sampled_from(rcols))
        if kind == "left":
            self.right_of_left_join |= set(right(self.probe).sources)
        return lambda fs: left(fs).join(right(fs), left_on=lc, right_on=rc, how=kind)  # type: ignore[arg-type]

    def unary(self, build: Build) -> Build:
        cols = self.columns(build)
        op = self.draw(st.sampled_from(["filter", "select", "with_column"]))
        if op == "select":
            chosen = self.subset(cols, self.draw(st.integers(1, len(cols))))
            return lambda fs: build(fs).select(chosen)
        x, y = self.draw(st.sampled_from(cols)), self.draw(st.sampled_from(cols))
        t = self.draw(st.integers(0, 2))
        kind = self.draw(st.integers(0, 2))
        if op == "filter":
            predicate: Expr = [
                col(x) >= t,
                (col(x) != t) | (col(y) == t),
                col(x).isin([t, t + 1]),
            ][kind]
            return lambda fs: build(fs).filter(predicate)
        name = self.draw(st.sampled_from([*cols, ""])) or self.fresh("w")
        value: Expr = [col(x) + col(y), col(x) * lit(2) - col(y), when(col(x) >= t, 1, 0)][kind]
        return lambda fs: build(fs).with_column(name, value)


# -- comparing results ---------------------------------------------------------------------------
def _norm(v: Any) -> float | None:
    return None if pd.isna(v) else float(v)


def bag(df: pd.DataFrame) -> Counter[tuple[float | None, ...]]:
    return Counter(tuple(_norm(v) for v in row) for row in df.itertuples(index=False, name=None))


def drop_rows(df: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    keep = np.ones(len(df), dtype=bool)
    keep[rows] = False
    return df[keep]


def pick_deletion(
    draw: Draw, old: Result, data: Data, prefer: set[str] | None = None
) -> tuple[str, list[Any]]:
    """Source S and keys K: those ``backward`` reports for a random row, plus a few others.

    With ``prefer``, S is mostly one of those sources (when some row derives from one).
    """
    rows = list(range(len(old)))
    if prefer and draw(st.integers(0, 3)):
        rows = [r for r in rows if prefer & set(old.prov.ids_of_row(r))] or rows
    else:
        prefer = None
    if rows:
        back = old.lineage.backward(draw(st.sampled_from(rows)))
        source = draw(st.sampled_from(sorted((prefer or set()) & set(back)) or sorted(back)))
        keys = list(back[source])
    else:
        source, keys = draw(st.sampled_from(sorted(old.sources))), []
    all_ids = data[source][f"{source}_id"].tolist()
    if all_ids:
        keys += draw(st.lists(st.sampled_from(all_ids), max_size=2))
    return source, sorted(set(keys))


def mentions_none(result: Result, old: Result, source: str, keys: list[Any]) -> bool:
    ids = old.lineage.key_ids(source, keys)
    return len(result.prov.rows_mentioning(source, ids)) == 0


# -- properties ----------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_deletion_removes_exactly_the_rows_that_mention_the_keys(data: st.DataObject) -> None:
    inputs = data.draw(source_data())
    gen = PlanGen(data.draw, frames_of(inputs))
    build = gen.plan(tuple(data.draw(st.permutations(sorted(inputs)))), allow_left=True)
    old = build(frames_of(inputs)).execute()
    source, keys = pick_deletion(data.draw, old, inputs)
    gone = old.lineage.forward(source, keys)
    new = build(frames_of(without(inputs, source, keys))).execute()
    assert mentions_none(new, old, source, keys)
    event(f"removed {min(len(gone), 3)}+ of {min(len(old), 3)}+ rows")
    event(f"right of a left join: {source in gen.right_of_left_join}")
    if source in gen.right_of_left_join:
        return  # not monotone in this source: see the module docstring
    plan = build(gen.probe).explain()
    assert bag(new.to_pandas()) == bag(drop_rows(old.to_pandas(), gone)), (plan, source, keys)


@SETTINGS
@given(st.data())
def test_deletion_under_a_left_join(data: st.DataObject) -> None:
    inputs = data.draw(source_data())
    probe = frames_of(inputs)
    gen = PlanGen(data.draw, probe)
    names = tuple(data.draw(st.permutations(sorted(inputs))))
    k = data.draw(st.integers(1, len(names) - 1))
    left, right = gen.plan(names[:k], False), gen.plan(names[k:], False)
    lc = data.draw(st.sampled_from(gen.columns(left)))
    rc = data.draw(st.sampled_from(gen.columns(right)))
    joined_cols = [*gen.columns(left), *gen.columns(right)]
    project = (
        gen.subset(joined_cols, data.draw(st.integers(1, len(joined_cols))))
        if data.draw(st.booleans())
        else None
    )

    def build(fs: Mapping[str, Frame]) -> Frame:
        out = left(fs).join(right(fs), left_on=lc, right_on=rc, how="left")
        return out if project is None else out.select(project)

    old = build(probe).execute()
    source, keys = pick_deletion(data.draw, old, inputs, prefer=set(right(probe).sources))
    gone = old.lineage.forward(source, keys)
    new = build(frames_of(without(inputs, source, keys))).execute()
    assert mentions_none(new, old, source, keys)

    old_rows = old.to_pandas()
    right_cols = [c for c in old_rows.columns if c in set(gen.columns(right))]
    right_sources = right(probe).sources
    for result in (old, new):  # no right record in the provenance <=> no right values
        matched = np.zeros(len(result), dtype=bool)
        for s in right_sources:
            matched |= result.prov.keys[s] != 0
        values = result.to_pandas()[right_cols]
        if right_cols:
            assert (values.notna().all(axis=1).to_numpy() == matched).all()
            assert (values.isna().all(axis=1).to_numpy() == ~matched).all()

    expected = bag(drop_rows(old_rows, gone))
    left_sources = left(probe).sources
    if source not in left_sources:
        # left rows that lost all their matches come back once, without right values
        identity = list(zip(*(old.prov.keys[s].tolist() for s in left_sources)))
        all_rows: dict[tuple[int, ...], list[int]] = {}
        for row, ident in enumerate(identity):
            all_rows.setdefault(ident, []).append(row)
        gone_set = set(gone)
        for rows in all_rows.values():
            if set(rows) <= gone_set:
                unmatched = old_rows.iloc[[rows[0]]].astype(object)
                unmatched.loc[:, right_cols] = None
                expected += bag(unmatched)
                event("a left row lost all its matches")
    assert bag(new.to_pandas()) == expected, (build(probe).explain(), source, keys)


@SETTINGS
@given(st.data())
def test_deletion_changes_only_the_groups_that_mention_the_keys(data: st.DataObject) -> None:
    inputs = data.draw(source_data())
    probe = frames_of(inputs)
    gen = PlanGen(data.draw, probe)
    base = gen.plan(tuple(data.draw(st.permutations(sorted(inputs)))), allow_left=False)
    cols = gen.columns(base)
    g = data.draw(st.sampled_from(cols))
    if len(cols) == 1:
        prepared: Build = lambda fs: base(fs).with_column("v", col(g) + 1)  # noqa: E731
        v = "v"
    else:
        prepared, v = base, data.draw(st.sampled_from([c for c in cols if c != g]))

    def aggregate(frame: Frame) -> Frame:
        return frame.group_by(g).agg(s=(v, "sum"), n=(v, "count"))

    def build(fs: Mapping[str, Frame]) -> Frame:
        return aggregate(prepared(fs))

    before = prepared(probe)
    rows, old = execute(before, aggregate(before))  # the rows before grouping, and the groups
    source, keys = pick_deletion(data.draw, old, inputs)
    new = build(frames_of(without(inputs, source, keys))).execute()
    old_groups = {_norm(r[0]): (_norm(r[1]), _norm(r[2])) for r in old.to_pandas().to_numpy()}
    new_groups = {_norm(r[0]): (_norm(r[1]), _norm(r[2])) for r in new.to_pandas().to_numpy()}
    assert len(old_groups) == len(old) and len(new_groups) == len(new)

    deleted = set(old.lineage.key_ids(source, keys).tolist())
    touched = set(old.lineage.forward(source, keys))
    group_of = old.to_pandas()[g].tolist()
    for row, group in enumerate(group_of):
        key = _norm(group)
        if row not in touched:
            assert new_groups.get(key) == old_groups[key]
            continue
        monomials = old.prov.monomials(row)
        if all(m.get(source) in deleted for m in monomials):
            event("a group disappears")
            assert key not in new_groups
        else:
            event("a group changes")
            assert key in new_groups
    assert set(new_groups) <= set(old_groups)

    # the changed groups hold the aggregates of the surviving rows (pandas as the oracle)
    surviving = drop_rows(rows.to_pandas(), rows.lineage.forward(source, keys))
    expected = surviving.groupby(g).agg(s=(v, "sum"), n=(v, "count")).reset_index()
    assert new_groups == {
        _norm(r[0]): (_norm(r[1]), _norm(r[2])) for r in expected[[g, "s", "n"]].to_numpy()
    }


@SETTINGS
@given(st.data())
def test_provenance_never_shows_in_the_data(data: st.DataObject) -> None:
    inputs = data.draw(source_data())
    probe = frames_of(inputs)
    gen = PlanGen(data.draw, probe)
    build = gen.plan(tuple(data.draw(st.permutations(sorted(inputs)))), allow_left=True)
    frame = build(probe)
    if data.draw(st.booleans()):
        g = data.draw(st.sampled_from(frame.columns))
        frame = frame.group_by(g).agg(n=(g, "count"))
    result = frame.execute()
    out = result.to_pandas()
    assert list(out.columns) == frame.columns == result.columns
    assert not any(c.startswith("__") or c in ("key_id", "key_hash") for c in out.columns)
    assert out.index.equals(pd.RangeIndex(len(out)))
    assert result.prov.n == len(out)
    # no user column holds key ids (64-bit hashes; user values here are small integers)
    for ids in result.prov.keys.values():
        hashed = ids[ids > 2**32].astype("float64")
        for c in out.columns:
            assert not out[c].astype("float64").isin(hashed).any()
