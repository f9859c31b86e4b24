"""Frame-level IVM (lester_dagster.ivm.frames): the deletion rule of each operator, checked
against re-execution.

For every plan the rule calls ``"rows"``, the tests re-run the plan on changed source data
(the oracle) and check the two promises of the module:

* instance deletion of records ``K`` of ``S``: new result == old result minus
  ``rows_mentioning(prov, {S: ids(K)})``;
* value deletion (columns of ``K`` set to missing): new result == old result with the rows
  mentioning ``K`` replaced by the rows that re-executing the plan on ``S`` restricted to ``K``
  (values missing) produces, keeping those that mention ``K``.

Results are compared as multisets of (row identity, row values), so row order does not matter
but every row must come from the same records. For the ``"recompute"`` plans (right side of a
left join, under an aggregate or drop_duplicates) the same row rule is shown to be wrong.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lester_dagster.frame import ColumnRef, Frame, Prov, Result, col, from_pandas
from lester_dagster.ivm.frames import (
    deletion_rule,
    positions_in,
    reads_source,
    row_identity,
    rows_decided_by,
    rows_mentioning,
)

Data = dict[str, pd.DataFrame]
Build = Callable[[Mapping[str, Frame]], Frame]

KEYS = {"a": "a_id", "b": "b_id", "c": "c_id"}

DATA: Data = {
    # g: join key; g=1 and g=2 have two a records each, g=4 one a record with one b match,
    # g=5 no b match at all
    "a": pd.DataFrame(
        {
            "a_id": [1, 2, 3, 4, 5, 6, 7, 8],
            "g": [1, 1, 2, 2, 3, 3, 4, 5],
            "a1": [0, 1, 2, 0, 1, 2, 0, 1],
            "v": [0.5, 1.5, -2.0, 3.25, 4.0, -0.75, 2.0, 8.0],
            "word": ["x", "y", "x", "z", "y", "x", "w", "z"],
        }
    ),
    # g=1 matches twice (one-to-many), g=6 matches no a record
    "b": pd.DataFrame(
        {
            "b_id": [10, 11, 12, 13, 14, 15],
            "g": [1, 1, 2, 3, 4, 6],
            "b1": [5, 6, 7, 5, 6, 7],
        }
    ),
    "c": pd.DataFrame({"c_id": [100, 101, 102], "c1": [1, 2, 0], "cv": [9.0, -1.0, 0.25]}),
}


def frames_of(data: Data) -> dict[str, Frame]:
    return {name: from_pandas(df, name=name, key=KEYS[name]) for name, df in data.items()}


def run(build: Build, data: Data) -> Result:
    return build(frames_of(data)).execute()


# -- plans: one operator (or one position of the source) each --------------------------------
def _union(fs: Mapping[str, Frame]) -> Frame:
    left = fs["a"].select("a_id", "a1").rename({"a_id": "id", "a1": "x"})
    right = fs["c"].select("c_id", "c1").rename({"c_id": "id", "c1": "x"})
    return left.union(right)


def _self_union(fs: Mapping[str, Frame]) -> Frame:
    """``a`` in both branches: a record yields up to two rows with the same monomial."""
    return fs["a"].filter(col("a1") >= 1).union(fs["a"].filter(col("v") > 0))


def _pipeline(fs: Mapping[str, Frame]) -> Frame:
    """Filters, an inner join, computed columns, a projection and a sort, as in the example."""
    return (
        fs["a"]
        .filter(col("v") > -1)
        .join(fs["b"].filter(col("b1") >= 6), on="g")
        .with_column("w", col("v") * col("b1"))
        .select("a_id", "b_id", "w", "word")
        .sort("w")
    )


def _train(fs: Mapping[str, Frame]) -> Frame:
    return fs["a"].join(fs["b"], on="g").split("a", test_fraction=0.5, seed=1)[0]


ROWS_PLANS: dict[str, Build] = {
    "source": lambda fs: fs["a"],
    "filter": lambda fs: fs["a"].filter(col("a1") >= 1),
    "select": lambda fs: fs["a"].select("a_id", "v"),
    "with_column": lambda fs: fs["a"].with_column("w", col("a1") * 2 + col("v")),
    "inner_join": lambda fs: fs["a"].join(fs["b"], on="g"),
    "left_join": lambda fs: fs["a"].join(fs["b"], on="g", how="left"),
    "union": _union,
    "self_union": _self_union,
    "sort": lambda fs: fs["a"].sort(["v"], ascending=False),
    "split": _train,
    "pipeline": _pipeline,
    # an aggregate or drop_duplicates over *another* source only
    "join_aggregated_b": lambda fs: fs["a"].join(
        fs["b"].group_by("g").agg(n=("b_id", "count"), s=("b1", "sum")), on="g"
    ),
    "left_join_distinct_b": lambda fs: fs["a"].join(
        fs["b"].select("g").drop_duplicates(), on="g", how="left"
    ),
}

RECOMPUTE_PLANS: dict[str, Build] = {
    "left_join": ROWS_PLANS["left_join"],
    "left_join_deep": lambda fs: fs["c"].join(
        fs["a"].join(fs["b"], on="g"), left_on="c1", right_on="a1", how="left"
    ),
    "group_by": lambda fs: fs["a"].group_by("g").agg(n=("a_id", "count"), s=("v", "sum")),
    "drop_duplicates": lambda fs: fs["a"].select("g").drop_duplicates(),
    "join_then_group_by": lambda fs: (
        fs["a"].join(fs["b"], on="g").group_by("word").agg(n=("b_id", "count"))
    ),
    "join_aggregated_b": ROWS_PLANS["join_aggregated_b"],
    "left_join_distinct_b": ROWS_PLANS["left_join_distinct_b"],
}

# (plan, source, expected rule)
RULES: list[tuple[str, str, str]] = [
    ("source", "a", "rows"),
    ("filter", "a", "rows"),
    ("select", "a", "rows"),
    ("with_column", "a", "rows"),
    ("inner_join", "a", "rows"),
    ("inner_join", "b", "rows"),
    ("left_join", "a", "rows"),  # left side of a left join
    ("union", "a", "rows"),
    ("union", "c", "rows"),
    ("self_union", "a", "rows"),
    ("sort", "a", "rows"),
    ("split", "a", "rows"),
    ("split", "b", "rows"),
    ("pipeline", "a", "rows"),
    ("pipeline", "b", "rows"),
    ("join_aggregated_b", "a", "rows"),  # the aggregate reads only b
    ("left_join_distinct_b", "a", "rows"),
    # sources the plan does not read
    ("source", "b", "rows"),
    ("union", "b", "rows"),
    # merged rows / the right side of a left join
    ("left_join", "b", "recompute"),
    ("left_join_deep", "a", "recompute"),
    ("left_join_deep", "b", "recompute"),
    ("left_join_deep", "c", "rows"),
    ("group_by", "a", "recompute"),
    ("drop_duplicates", "a", "recompute"),
    ("join_then_group_by", "a", "recompute"),
    ("join_then_group_by", "b", "recompute"),
    ("join_aggregated_b", "b", "recompute"),
    ("left_join_distinct_b", "b", "recompute"),
]


def _plan(name: str) -> Build:
    return ROWS_PLANS[name] if name in ROWS_PLANS else RECOMPUTE_PLANS[name]


# -- the oracle's inputs -----------------------------------------------------------------------
def without(data: Data, source: str, keys: Sequence[Any]) -> Data:
    out = dict(data)
    df = data[source]
    out[source] = df[~df[KEYS[source]].isin(keys)].reset_index(drop=True)
    return out


def blanked(data: Data, source: str, keys: Sequence[Any], columns: Sequence[str]) -> Data:
    """``data`` with ``columns`` of the records ``keys`` of ``source`` set to missing."""
    out = dict(data)
    df = data[source].copy()
    hit = df[KEYS[source]].isin(keys)
    for column in columns:
        if pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype("float64")
            df.loc[hit, column] = np.nan
        else:
            df[column] = df[column].astype(object)
            df.loc[hit, column] = None
    out[source] = df
    return out


def restricted(data: Data, source: str, keys: Sequence[Any]) -> Data:
    """Only the records ``keys`` of ``source``; the other sources in full."""
    out = dict(data)
    df = data[source]
    out[source] = df[df[KEYS[source]].isin(keys)].reset_index(drop=True)
    return out


def key_ids(source: str, keys: Sequence[Any]) -> np.ndarray:
    """The key ids of records ``keys``, from an independent run of the bare source."""
    result = from_pandas(DATA[source], name=source, key=KEYS[source]).execute()
    return result.lineage.key_ids(source, keys)


# -- comparing results up to row order ---------------------------------------------------------
def _norm(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)  # an int column that gained a missing value reads as float
    return value


def _identities(prov: Prov) -> list[Any]:
    if prov.single:
        return [int(i) for i in row_identity(prov)]
    # rows joined with aggregated rows of another source: their set of monomials
    return [
        tuple(sorted(tuple(sorted(m.items())) for m in prov.monomials(i))) for i in range(prov.n)
    ]


def rows_of(result: Result, positions: np.ndarray | None = None) -> Counter[tuple[Any, ...]]:
    """The rows (or the rows at ``positions``) as a multiset of (identity, values)."""
    frame = result.to_pandas()
    ids = _identities(result.prov)
    chosen = range(len(frame)) if positions is None else [int(p) for p in positions]
    return Counter((ids[i], *(_norm(v) for v in frame.iloc[i].tolist())) for i in chosen)


def without_rows(result: Result, drop: np.ndarray) -> Counter[tuple[Any, ...]]:
    keep = np.setdiff1d(np.arange(len(result)), drop)
    return rows_of(result, keep)


def instance_rule(build: Build, source: str, keys: Sequence[Any]) -> Counter[tuple[Any, ...]]:
    """What the row rule predicts after deleting records ``keys`` of ``source``."""
    old = run(build, DATA)
    return without_rows(old, rows_mentioning(old.prov, {source: key_ids(source, keys)}))


def value_rule(
    build: Build, source: str, keys: Sequence[Any], columns: Sequence[str]
) -> Counter[tuple[Any, ...]]:
    """What the row rule predicts after blanking ``columns`` of records ``keys``."""
    ids = {source: key_ids(source, keys)}
    old = run(build, DATA)
    fresh = run(build, restricted(blanked(DATA, source, keys, columns), source, keys))
    return without_rows(old, rows_mentioning(old.prov, ids)) + rows_of(
        fresh, rows_mentioning(fresh.prov, ids)
    )


# -- the rule, per operator and position -------------------------------------------------------
@pytest.mark.parametrize(("plan", "source", "expected"), RULES)
def test_deletion_rule_per_operator_and_position(plan: str, source: str, expected: str) -> None:
    rule, why = deletion_rule(_plan(plan)(frames_of(DATA)).node, source)
    assert rule == expected, why
    assert why


def test_a_source_the_plan_does_not_read_is_named_in_the_reason() -> None:
    node = frames_of(DATA)["b"].filter(col("b1") > 5).node
    assert not reads_source(node, "a")
    assert reads_source(node, "b")
    rule, why = deletion_rule(node, "a")
    assert rule == "rows" and "does not read" in why and "'a'" in why


def test_the_recompute_reason_names_every_blocker() -> None:
    fs = frames_of(DATA)
    plan = fs["a"].join(fs["b"], on="g", how="left").group_by("word").agg(n=("b_id", "count"))
    rule, why = deletion_rule(plan.node, "b")
    assert rule == "recompute"
    assert "right side of the left join" in why and "merges rows" in why
    rule, why = deletion_rule(plan.node, "a")
    assert rule == "recompute"
    assert "merges rows" in why and "right side" not in why


# -- the row rule holds where the rule says "rows" ---------------------------------------------
ROWS_CASES = [(plan, source) for plan, source, rule in RULES if rule == "rows"]
DELETIONS = {
    "a": [[1], [7], [2, 5, 8], [1, 2, 3, 4, 5, 6, 7, 8]],
    "b": [[10], [14], [10, 11, 15]],
    "c": [[100], [101, 102]],
}
VALUE_COLUMNS = {"a": ["g", "a1", "v", "word"], "b": ["g", "b1"], "c": ["c1", "cv"]}


@pytest.mark.parametrize(("plan", "source"), ROWS_CASES)
def test_instance_deletion_removes_the_rows_mentioning_the_records(plan: str, source: str) -> None:
    build = _plan(plan)
    old = run(build, DATA)
    for keys in DELETIONS[source]:
        new = run(build, without(DATA, source, keys))
        predicted = instance_rule(build, source, keys)
        assert rows_of(new) == predicted, (plan, source, keys)
        if reads_source(build(frames_of(DATA)).node, source):
            continue
        assert rows_of(new) == rows_of(old)  # a source the plan does not read changes nothing


@pytest.mark.parametrize(("plan", "source"), ROWS_CASES)
def test_value_deletion_replaces_the_rows_mentioning_the_records(plan: str, source: str) -> None:
    build = _plan(plan)
    for keys in DELETIONS[source][:3]:
        for column in VALUE_COLUMNS[source]:
            new = run(build, blanked(DATA, source, keys, [column]))
            assert rows_of(new) == value_rule(build, source, keys, [column]), (
                plan,
                source,
                keys,
                column,
            )
    keys = DELETIONS[source][2 % len(DELETIONS[source])]
    columns = VALUE_COLUMNS[source]
    new = run(build, blanked(DATA, source, keys, columns))
    assert rows_of(new) == value_rule(build, source, keys, columns)


def test_the_checks_see_a_value_change() -> None:
    """Guard for the two tests above: blanking a value does change the result rows."""
    build = ROWS_PLANS["with_column"]
    assert rows_of(run(build, blanked(DATA, "a", [1], ["v"]))) != rows_of(run(build, DATA))
    assert rows_of(run(build, without(DATA, "a", [1]))) != rows_of(run(build, DATA))


# -- value deletions of columns that decide no rows: the partners suffice ----------------------
def partners_only(before: Data, data: Data, build: Build, source: str, keys: Sequence[Any]) -> Data:
    """``data`` with ``source`` restricted to ``keys`` and every other source restricted to the
    records the rows of those keys joined ``before`` the deletion (from their provenance)."""
    old = run(build, before)
    rows = rows_mentioning(old.prov, {source: key_ids(source, keys)})
    out = restricted(data, source, keys)
    for other in data:
        if other == source:
            continue
        mentioned = set(old.prov.keys[other][rows].tolist()) if other in old.prov.sources else set()
        every = from_pandas(data[other], name=other, key=KEYS[other]).execute()
        ids = every.prov.keys[other]
        out[other] = data[other][[int(i) in mentioned for i in ids]].reset_index(drop=True)
    return out


def _value_cases() -> list[tuple[str, str, str]]:
    return [
        (plan, source, column)
        for plan, source in ROWS_CASES
        for column in VALUE_COLUMNS[source]
        if not _plan(plan)(frames_of(DATA)).node.schema.multi
    ]


@pytest.mark.parametrize(("plan", "source", "column"), _value_cases())
def test_a_column_that_decides_no_rows_needs_only_the_partner_records(
    plan: str, source: str, column: str
) -> None:
    """Where ``rows_decided_by`` finds no operator choosing rows by the deleted column,
    re-executing the records with only the partners their rows joined gives exactly the rows
    re-executing with the other sources in full gives; where it names one, it is one that
    reads the column (and the partners may then not suffice)."""
    build = _plan(plan)
    node = build(frames_of(DATA)).node
    why = rows_decided_by(node, [ColumnRef(source, column)])
    for keys in DELETIONS[source][:3]:
        ids = {source: key_ids(source, keys)}
        blank = blanked(DATA, source, keys, [column])
        full = run(build, restricted(blank, source, keys))
        narrow = run(build, partners_only(DATA, blank, build, source, keys))
        same = rows_of(full, rows_mentioning(full.prov, ids)) == rows_of(
            narrow, rows_mentioning(narrow.prov, ids)
        )
        if why is None:
            assert same, (plan, source, column, keys)
    if why is not None:
        assert f"{source}.{column}" in why


def test_where_a_deleted_value_lets_a_row_in_the_partners_do_not_suffice() -> None:
    """Guard for the test above: a record whose blanked value now passes a filter joins
    records its old rows never mentioned; only re-executing with the sources in full finds
    them, and ``rows_decided_by`` names the filter."""

    def build(fs: Mapping[str, Frame]) -> Frame:
        return fs["a"].filter(~(col("v") > 0)).join(fs["b"], on="g")

    keys = [1]  # v = 0.5 > 0: filtered out, so it has no rows and no partners yet
    ids = {"a": key_ids("a", keys)}
    blank = blanked(DATA, "a", keys, ["v"])
    full = run(build, restricted(blank, "a", keys))
    narrow = run(build, partners_only(DATA, blank, build, "a", keys))
    assert len(rows_mentioning(full.prov, ids)) == 2  # it now joins both b records of g=1
    assert len(rows_mentioning(narrow.prov, ids)) == 0
    assert "a.v" in str(rows_decided_by(build(frames_of(DATA)).node, [ColumnRef("a", "v")]))


def test_operators_that_choose_rows_are_named_with_the_column_they_read() -> None:
    fs = frames_of(DATA)
    refs = [ColumnRef("a", "v")]
    assert rows_decided_by(fs["a"].with_column("w", col("v") * 2).node, refs) is None
    assert rows_decided_by(fs["a"].select("a_id", "v").node, refs) is None
    found = rows_decided_by(fs["a"].filter(col("v") > 0).node, refs)
    assert found is not None and found.startswith("Filter") and "a.v" in found
    assert "Sort" in str(rows_decided_by(fs["a"].sort(["v"]).node, refs))
    joined = fs["a"].join(fs["b"], on="g")
    assert rows_decided_by(joined.node, [ColumnRef("a", "v")]) is None
    assert "b.g" in str(rows_decided_by(joined.node, [ColumnRef("b", "g")]))
    # a derived column carries the lineage of what it was computed from
    derived = fs["a"].with_column("w", col("v") + 1).filter(col("w") > 0)
    assert "a.v" in str(rows_decided_by(derived.node, refs))
    grouped = fs["a"].group_by("g").agg(s=("v", "sum"))
    assert "a.v" in str(rows_decided_by(grouped.node, refs))
    assert "a.word" in str(
        rows_decided_by(fs["a"].drop_duplicates().node, [ColumnRef("a", "word")])
    )


# -- ... and fails where the rule says "recompute" ---------------------------------------------
def test_the_row_rule_is_wrong_on_the_right_side_of_a_left_join() -> None:
    build = RECOMPUTE_PLANS["left_join"]
    assert deletion_rule(build(frames_of(DATA)).node, "b")[0] == "recompute"
    # b 14 is the only match of a 7: after deleting it, a 7 comes back unmatched
    new = run(build, without(DATA, "b", [14]))
    predicted = instance_rule(build, "b", [14])
    assert rows_of(new) != predicted
    a7 = new.prov.rows_mentioning("a", key_ids("a", [7]))
    assert len(a7) == 1 and new.prov.keys["b"][a7[0]] == 0
    assert pd.isna(new.to_pandas()["b1"].iloc[a7[0]])
    assert len(new) == sum(predicted.values()) + 1
    # blanking b 14's join key has the same effect; the restricted re-run cannot produce it
    blank = run(build, blanked(DATA, "b", [14], ["g"]))
    assert rows_of(blank) == rows_of(new)
    assert rows_of(blank) != value_rule(build, "b", [14], ["g"])


def _group_rows(result: Result) -> Counter[tuple[Any, ...]]:
    frame = result.to_pandas()
    return Counter(tuple(_norm(v) for v in row) for row in frame.itertuples(index=False))


@pytest.mark.parametrize("plan", ["group_by", "drop_duplicates"])
def test_the_row_rule_is_wrong_under_a_merge_of_rows(plan: str) -> None:
    build = RECOMPUTE_PLANS[plan]
    assert deletion_rule(build(frames_of(DATA)).node, "a")[0] == "recompute"
    old = run(build, DATA)
    # a 1 shares its group g=1 with a 2: the group survives (changed) instead of vanishing
    new = run(build, without(DATA, "a", [1]))
    gone = rows_mentioning(old.prov, {"a": key_ids("a", [1])})
    assert len(gone) == 1
    keep = np.setdiff1d(np.arange(len(old)), gone)
    old_rows = old.to_pandas()
    predicted = Counter(tuple(_norm(v) for v in old_rows.iloc[i].tolist()) for i in keep)
    assert _group_rows(new) != predicted
    assert len(new) == len(old) == len(keep) + 1
    # blanking a 1's value: the restricted re-run yields a group of a 1 alone, not a 1 + a 2
    if plan == "group_by":
        blank = run(build, blanked(DATA, "a", [1], ["v"]))
        fresh = run(build, restricted(blanked(DATA, "a", [1], ["v"]), "a", [1]))
        mine = rows_mentioning(fresh.prov, {"a": key_ids("a", [1])})
        predicted_values = predicted + Counter(
            tuple(_norm(v) for v in fresh.to_pandas().iloc[i].tolist()) for i in mine
        )
        assert _group_rows(blank) != predicted_values
        n_of_g1 = blank.to_pandas().set_index("g").loc[1, "n"]
        assert n_of_g1 == 2  # the recompute keeps both records in the group


# -- rows_mentioning ---------------------------------------------------------------------------
def test_rows_mentioning_matches_the_monomials() -> None:
    fs = frames_of(DATA)
    result = fs["a"].join(fs["b"], on="g", how="left").execute()
    ids = {"a": key_ids("a", [3, 8]), "b": key_ids("b", [10]), "c": key_ids("c", [100])}
    wanted = {(s, int(i)) for s, group in ids.items() for i in group}
    expected = [
        row
        for row in range(len(result))
        if any((s, i) in wanted for m in result.prov.monomials(row) for s, i in m.items())
    ]
    got = rows_mentioning(result.prov, ids)
    assert got.tolist() == expected
    assert len(expected) == 4  # a 3 (one row), a 8 (unmatched), and a 1, a 2 with b 10
    assert rows_mentioning(result.prov, {"c": ids["c"]}).size == 0  # not a source of the rows
    assert rows_mentioning(result.prov, {"a": np.zeros(0, dtype=np.uint64)}).size == 0
    assert rows_mentioning(result.prov, {}).size == 0


# -- row_identity ------------------------------------------------------------------------------
def _prov(rows: list[dict[str, int]], order: Sequence[str] = ("a", "b")) -> Prov:
    return Prov(
        len(rows), {s: np.array([r.get(s, 0) for r in rows], dtype=np.uint64) for s in order}
    )


def test_row_identity_is_equal_for_equal_monomials_and_different_otherwise() -> None:
    rows = [
        {"a": 1, "b": 2},
        {"a": 2, "b": 1},  # the same ids, swapped between sources
        {"a": 1, "b": 3},
        {"a": 1},  # b absent (an unmatched left-join row)
        {"b": 2},
        {"a": 1, "b": 2},  # a repeat of row 0
        {"a": 2**64 - 1, "b": 2**63},
    ]
    ids = row_identity(_prov(rows)).tolist()
    assert ids[0] == ids[5]
    assert len(set(ids)) == len(rows) - 1
    # the identity does not depend on the order the sources are stored in, or on the artifact
    assert row_identity(_prov(rows, order=("b", "a"))).tolist() == ids
    assert row_identity(_prov(rows[::-1])).tolist() == ids[::-1]


def test_row_identity_is_stable_across_artifacts_of_the_same_records() -> None:
    fs = frames_of(DATA)
    joined = fs["a"].join(fs["b"], on="g")
    everything = joined.execute()
    some = joined.filter(col("v") > 0).sort("b1").execute()
    assert len(some) < len(everything)
    mine = {
        tuple(int(everything.prov.keys[s][i]) for s in ("a", "b")): ident
        for i, ident in enumerate(row_identity(everything.prov).tolist())
    }
    assert len(set(mine.values())) == len(everything)
    for i, ident in enumerate(row_identity(some.prov).tolist()):
        assert mine[tuple(int(some.prov.keys[s][i]) for s in ("a", "b"))] == ident


def test_row_identity_of_aggregated_rows_is_their_set_of_monomials() -> None:
    ids = np.array([1, 2, 3], dtype=np.uint64)
    prov = Prov(2, {"a": ids}, offsets=np.array([0, 2, 3], dtype=np.intp))
    swapped = Prov(2, {"a": ids[[1, 0, 2]]}, offsets=np.array([0, 2, 3], dtype=np.intp))
    fewer = Prov(2, {"a": ids[[0, 2]]}, offsets=np.array([0, 1, 2], dtype=np.intp))
    one = row_identity(Prov.of_source("a", ids))
    got = row_identity(prov)
    assert got[1] == one[2]  # a row of one monomial: its single identity
    assert row_identity(swapped).tolist() == got.tolist()  # order of monomials is irrelevant
    assert row_identity(fewer)[0] != got[0]  # a record left the aggregate: a new identity
    assert row_identity(fewer)[0] == one[0]
    grouped = RECOMPUTE_PLANS["group_by"](frames_of(DATA)).execute()
    assert len(set(row_identity(grouped.prov).tolist())) == len(grouped)


def test_row_identity_of_no_rows() -> None:
    assert row_identity(_prov([])).size == 0


# -- positions_in ------------------------------------------------------------------------------
def _positions(identities: np.ndarray, of: np.ndarray) -> list[int]:
    where = {int(v): i for i, v in enumerate(identities.tolist())}
    return [where.get(int(v), -1) for v in of.tolist()]


def test_positions_in_finds_present_and_marks_absent() -> None:
    rng = np.random.default_rng(3)
    identities = np.unique(rng.integers(0, 2**63, size=50, dtype=np.uint64) * np.uint64(2))
    rng.shuffle(identities)
    identities = np.concatenate([identities, np.array([2**64 - 1], dtype=np.uint64)])
    absent = identities[:10] + np.uint64(1)  # odd: never among the (even) identities
    of = np.concatenate([identities[::3], absent, np.array([2**64 - 2, 0], dtype=np.uint64)])
    rng.shuffle(of)
    got = positions_in(identities, of)
    assert got.tolist() == _positions(identities, of)
    assert (got >= 0).sum() == len(identities[::3])
    assert np.array_equal(identities[got[got >= 0]], of[got >= 0])


def test_positions_in_with_empty_arrays() -> None:
    some = np.array([5, 3, 9], dtype=np.uint64)
    none = np.zeros(0, dtype=np.uint64)
    assert positions_in(none, some).tolist() == [-1, -1, -1]
    assert positions_in(some, none).tolist() == []
    assert positions_in(none, none).tolist() == []
    assert positions_in(some, np.array([9, 10, 3, 0], dtype=np.uint64)).tolist() == [2, -1, 1, -1]


def test_positions_in_aligns_two_results_by_row_identity() -> None:
    """The use in the orchestration: where each row of a new result was in an old one."""
    build = ROWS_PLANS["pipeline"]
    old = run(build, DATA)
    new = run(build, without(DATA, "a", [2, 5]))
    where = positions_in(row_identity(old.prov), row_identity(new.prov))
    assert (where >= 0).all()
    old_rows, new_rows = old.to_pandas(), new.to_pandas()
    pd.testing.assert_frame_equal(
        old_rows.iloc[where].reset_index(drop=True), new_rows.reset_index(drop=True)
    )
    back = positions_in(row_identity(new.prov), row_identity(old.prov))
    gone = rows_mentioning(old.prov, {"a": key_ids("a", [2, 5])})
    assert np.flatnonzero(back < 0).tolist() == gone.tolist()
