"""Per-operator tests: (a) result rows against plain pandas, (b) the row-provenance rule,
(c) the column-lineage rule; plus: provenance never reaches user-visible data or user code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import UnknownColumnError
from lester_dagster.frame import AGGREGATIONS, RESERVED_PREFIX, ColumnRef, Frame, Result, col
from lester_dagster.frame import from_pandas as source

CUSTOMERS = pd.DataFrame(
    {
        "cid": [1, 2, 3, 4],
        "name": ["Ann", "Bob", "Cy", "Dee"],
        "country": ["DE", "FR", "DE", None],
        "score": [3.0, 1.0, np.nan, 2.0],
    }
)
MAILS = pd.DataFrame(
    {
        "mid": [10, 11, 12, 13, 14],
        "cid": [1, 1, 2, 5, 3],  # customer 1 has two mails, cid 5 has no customer
        "subject": ["hi", "bank", "hi", "spam", "fee"],
        "score": [np.nan, 2.0, 3.0, 4.0, 5.0],
    }
)
TAGS = pd.DataFrame({"tid": [100, 101, 102], "word": ["hi", "hi", "fee"]})
NEW = pd.DataFrame(  # same key value 1 as customers, but another source
    {"cid": [1, 7], "name": ["Eve", "Fay"], "country": ["FR", "DE"], "score": [4.0, 5.0]}
)

C = source(CUSTOMERS, name="customers", key="cid")
M = source(MAILS, name="mails", key="mid")
T = source(TAGS, name="tags", key="tid")
N = source(NEW, name="new_customers", key="cid")


def rows(frame: Frame) -> pd.DataFrame:
    return frame.execute().to_pandas()


def assert_rows(actual: pd.DataFrame, expected: pd.DataFrame, **kw: Any) -> None:
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), **kw
    )


def back(result: Result, i: int) -> dict[str, set[Any]]:
    return {s: set(keys) for s, keys in result.lineage.backward(i).items()}


def terms(result: Result, i: int) -> list[tuple[str, ...]]:
    """The polynomial of row i as a sorted list of monomials, each a sorted tuple of factors."""
    return sorted(tuple(sorted(t.split("*"))) for t in result.lineage.polynomial(i).split(" + "))


# -- (a) result rows against pandas ----------------------------------------------------------
def same(method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """The same method call on a Frame and on a pandas DataFrame."""
    return (
        lambda f: getattr(f, method)(*args, **kwargs),
        lambda d: getattr(d, method)(*args, **kwargs),
    )


def _udf_minus(d: pd.DataFrame) -> pd.Series:
    return d["cid"] - d["score"]


UNARY_CASES = {  # Frame operator on C, equivalent pandas code on CUSTOMERS
    "filter_expr": (lambda f: f.filter(col("country") == "DE"), lambda d: d[d.country == "DE"]),
    "filter_row_predicate": (
        lambda f: f.filter(lambda c, s: c == "DE" or s < 2, columns=["country", "score"]),
        lambda d: d[(d.country == "DE") | (d.score < 2)],
    ),
    "select": (lambda f: f.select("score", "cid"), lambda d: d[["score", "cid"]]),
    "select_list": (lambda f: f.select(["name"]), lambda d: d[["name"]]),
    "drop": (lambda f: f.drop("name", "score"), lambda d: d.drop(columns=["name", "score"])),
    "rename": (lambda f: f.rename({"cid": "id"}), lambda d: d.rename(columns={"cid": "id"})),
    "rename_kw": same("rename", columns={"score": "s"}),
    "with_column_expr": (
        lambda f: f.with_column("x", col("score") * 2 + col("cid")),
        lambda d: d.assign(x=d.score * 2 + d.cid),
    ),
    "with_column_row_udf": (
        lambda f: f.with_column("tag", lambda n, c: f"{n}@{c}", inputs=["name", "cid"]),
        lambda d: d.assign(tag=d.name + "@" + d.cid.astype(str)),
    ),
    "with_column_vectorized": (
        lambda f: f.with_column("x", _udf_minus, inputs=["cid", "score"], vectorized=True),
        lambda d: d.assign(x=d.cid - d.score),
    ),
    "with_column_replaces_in_place": (
        lambda f: f.with_column("name", col("name").str.upper()),
        lambda d: d.assign(name=d.name.str.upper()),
    ),
    "drop_duplicates_all_columns": (
        lambda f: f.select("country").drop_duplicates(),
        lambda d: d[["country"]].drop_duplicates(),
    ),
    "drop_duplicates_subset": same("drop_duplicates", "country"),
    "drop_duplicates_subset_list": same("drop_duplicates", ["country", "cid"]),
    "dropna_all": same("dropna"),
    "dropna_subset": (lambda f: f.dropna("score"), lambda d: d.dropna(subset=["score"])),
    "dropna_subset_list": same("dropna", subset=["country"]),
    "fillna_scalar": (
        lambda f: f.drop("name", "country").fillna(0.5),
        lambda d: d.drop(columns=["name", "country"]).fillna(0.5),
    ),
    "fillna_dict": same("fillna", {"score": -1.0, "country": "??"}),
    "sort_asc": (lambda f: f.sort("score"), lambda d: d.sort_values("score", kind="stable")),
    "sort_desc": (
        lambda f: f.sort("score", ascending=False),
        lambda d: d.sort_values("score", ascending=False, kind="stable"),
    ),
    "sort_multiple_keys": (
        lambda f: f.sort(["country", "score"], ascending=[True, False]),
        lambda d: d.sort_values(["country", "score"], ascending=[True, False], kind="stable"),
    ),
}


@pytest.mark.parametrize("op", UNARY_CASES)
def test_unary_operator_rows_match_pandas(op: str) -> None:
    build, expected = UNARY_CASES[op]
    assert_rows(rows(build(C)), expected(CUSTOMERS))


def test_with_column_row_udf_values_by_hand() -> None:
    out = rows(C.with_column("n", len, inputs=["name"]))
    assert out["n"].tolist() == [3, 3, 2, 3]


def test_sort_is_stable_for_ties_in_both_directions() -> None:
    # mails' cid: 1, 1, 2, 5, 3 -> mails 10 and 11 tie and must keep their order
    assert rows(M.sort("cid"))["mid"].tolist() == [10, 11, 12, 14, 13]
    assert rows(M.sort("cid", ascending=False))["mid"].tolist() == [13, 14, 12, 10, 11]


CR = CUSTOMERS.rename(columns={"cid": "customer_id"})
JOIN_CASES = {  # Frame join, equivalent pd.merge
    "inner_on": (lambda: M.join(C, on="cid"), lambda: pd.merge(MAILS, CUSTOMERS, on="cid")),
    "left_on": (
        lambda: M.join(C, on="cid", how="left"),
        lambda: pd.merge(MAILS, CUSTOMERS, on="cid", how="left"),
    ),
    "left_on_right_on_different_names": (
        lambda: M.join(C.rename({"cid": "customer_id"}), left_on="cid", right_on="customer_id"),
        lambda: pd.merge(MAILS, CR, left_on="cid", right_on="customer_id"),
    ),
    "one_to_many": (lambda: C.join(M, on="cid"), lambda: pd.merge(CUSTOMERS, MAILS, on="cid")),
    "many_to_many": (
        lambda: M.join(T, left_on="subject", right_on="word"),
        lambda: pd.merge(MAILS, TAGS, left_on="subject", right_on="word"),
    ),
    "custom_suffixes": (
        lambda: M.join(C, on="cid", suffixes=("_m", "_c")),
        lambda: pd.merge(MAILS, CUSTOMERS, on="cid", suffixes=("_m", "_c")),
    ),
}


@pytest.mark.parametrize("case", JOIN_CASES)
def test_join_rows_match_pandas_merge(case: str) -> None:
    build, expected = JOIN_CASES[case]
    assert_rows(rows(build()), expected())


def test_join_overlapping_non_key_columns_get_suffixes() -> None:
    want = ["mid", "cid", "subject", "score_x", "name", "country", "score_y"]
    assert M.join(C, on="cid").columns == want
    assert len(rows(M.join(T, left_on="subject", right_on="word"))) == 5  # 2 x 2 "hi" + 1 "fee"


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (lambda: C.union(N), lambda: pd.concat([CUSTOMERS, NEW])),
        (
            lambda: C.select("name", "cid").union(N.select("cid", "name")),
            lambda: pd.concat([CUSTOMERS[["name", "cid"]], NEW[["name", "cid"]]]),
        ),
        (
            lambda: C.union(N, C.filter(col("cid") > 2)),
            lambda: pd.concat([CUSTOMERS, NEW, CUSTOMERS[CUSTOMERS["cid"] > 2]]),
        ),
    ],
    ids=["two_frames", "column_order_differs", "three_frames"],
)
def test_union_rows_match_pandas_concat(parts: Any, expected: Any) -> None:
    assert_rows(rows(parts()), expected())


@pytest.mark.parametrize("func", AGGREGATIONS)
def test_group_by_each_aggregation_matches_pandas(func: str) -> None:
    got = rows(M.group_by("cid").agg(out=("score", func)))
    want = MAILS.groupby("cid").agg(out=("score", func)).reset_index()
    assert_rows(got, want, check_dtype=False)


def test_group_by_several_keys_and_aggregations_matches_pandas() -> None:
    joined = pd.merge(MAILS, CUSTOMERS, on="cid")
    specs = dict(
        n=("mid", "count"),
        total=("score_x", "sum"),
        avg=("score_y", "mean"),
        lo=("mid", "min"),
        hi=("mid", "max"),
        first=("subject", "first"),
    )
    got = rows(M.join(C, on="cid").group_by("country", "name").agg(**specs))
    want = joined.groupby(["country", "name"]).agg(**specs).reset_index()
    assert_rows(got, want, check_dtype=False)


def test_group_by_count_and_sum_by_hand() -> None:
    got = rows(M.group_by("cid").agg(n=("mid", "count"), s=("score", "sum")))
    assert got["cid"].tolist() == [1, 2, 3, 5]
    assert got["n"].tolist() == [2, 1, 1, 1]
    assert got["s"].tolist() == [2.0, 3.0, 5.0, 4.0]  # NaN is skipped in the sum


# -- (b) row provenance -----------------------------------------------------------------------
ROW_PRESERVING = {
    "filter": lambda f: f.filter(col("score") > 1),
    "filter_row_predicate": lambda f: f.filter(lambda s: s != "hi", columns=["subject"]),
    "sort": lambda f: f.sort("cid", ascending=False),
    "dropna": lambda f: f.dropna(),
    "fillna": lambda f: f.fillna({"score": 0.0}),
    "with_column": lambda f: f.with_column("x", col("score") + 1),
    "rename": lambda f: f.rename({"subject": "title"}),
    "select": lambda f: f.select("mid", "subject"),
}


@pytest.mark.parametrize("op", ROW_PRESERVING)
def test_row_preserving_operators_keep_each_rows_own_key(op: str) -> None:
    result = ROW_PRESERVING[op](M).execute()
    mids = result.to_pandas()["mid"].tolist()
    assert [back(result, i) for i in range(len(result))] == [{"mails": {m}} for m in mids]
    assert [result.lineage.polynomial(i) for i in range(len(result))] == [
        f"mails[{m}]" for m in mids
    ]
    for i, m in enumerate(mids):
        assert result.lineage.forward("mails", [m]) == [i]


def test_filtered_out_key_reaches_no_row() -> None:
    result = M.filter(col("cid") == 1).execute()
    assert result.lineage.forward("mails", [12, 13]) == []
    assert result.lineage.forward("mails", [11, 12]) == [1]


@pytest.mark.parametrize("how", ["inner", "left"])
def test_joined_row_is_the_product_of_one_key_per_side(how: str) -> None:
    result = M.join(C, on="cid", how=how).execute()
    out = result.to_pandas()
    for i, (mid, cid) in enumerate(zip(out["mid"], out["cid"])):
        if cid == 5:  # left join, no customer 5: only the mail remains
            assert back(result, i) == {"mails": {13}}
            assert result.lineage.polynomial(i) == "mails[13]"
        else:
            assert back(result, i) == {"mails": {mid}, "customers": {cid}}
            assert terms(result, i) == [(f"customers[{cid}]", f"mails[{mid}]")]
    assert len(out) == (5 if how == "left" else 4)


def test_join_forward_finds_exactly_the_rows_of_a_key() -> None:
    result = M.join(C, on="cid").execute()
    out = result.to_pandas()
    assert result.lineage.forward("customers", [1]) == out.index[out["cid"] == 1].tolist()
    assert result.lineage.forward("customers", [4]) == []  # customer 4 has no mail
    assert result.lineage.forward("mails", [14]) == out.index[out["mid"] == 14].tolist()


def test_many_to_many_join_pairs_every_mail_with_every_tag() -> None:
    result = M.join(T, left_on="subject", right_on="word").execute()
    out = result.to_pandas()
    got = {(min(back(result, i)["mails"]), min(back(result, i)["tags"])) for i in range(len(out))}
    assert got == set(zip(out["mid"], out["tid"]))
    assert got == {(10, 100), (10, 101), (12, 100), (12, 101), (14, 102)}


def test_union_rows_keep_their_own_source_even_with_equal_key_values() -> None:
    result = C.union(N).execute()
    want = [{"customers": {k}} for k in (1, 2, 3, 4)] + [
        {"new_customers": {1}},
        {"new_customers": {7}},
    ]
    assert [back(result, i) for i in range(6)] == want
    assert result.lineage.forward("customers", [1]) == [0]
    assert result.lineage.forward("new_customers", [1]) == [4]


def test_drop_duplicates_row_carries_the_provenance_of_all_collapsed_rows() -> None:
    result = C.drop_duplicates("country").execute()
    assert result.to_pandas()["cid"].tolist() == [1, 2, 4]  # the first row of each group is kept
    assert back(result, 0) == {"customers": {1, 3}}
    assert terms(result, 0) == [("customers[1]",), ("customers[3]",)]
    assert back(result, 1) == {"customers": {2}}
    assert result.lineage.forward("customers", [3]) == [0]


def test_group_rows_sum_the_monomials_of_their_members() -> None:
    result = M.group_by("cid").agg(n=("mid", "count")).execute()
    assert result.to_pandas()["cid"].tolist() == [1, 2, 3, 5]
    assert back(result, 0) == {"mails": {10, 11}}
    assert terms(result, 0) == [("mails[10]",), ("mails[11]",)]
    assert result.lineage.forward("mails", [11, 13]) == [0, 3]


def test_group_after_join_sums_products() -> None:
    result = M.join(C, on="cid").group_by("country").agg(n=("mid", "count")).execute()
    assert result.to_pandas()["country"].tolist() == ["DE", "FR"]
    assert back(result, 0) == {"mails": {10, 11, 14}, "customers": {1, 3}}
    assert terms(result, 0) == [
        ("customers[1]", "mails[10]"),
        ("customers[1]", "mails[11]"),
        ("customers[3]", "mails[14]"),
    ]
    assert result.lineage.forward("customers", [2]) == [1]


# -- (c) column lineage -----------------------------------------------------------------------
def refs(text: str) -> set[ColumnRef]:
    """``"customers.name mails.cid"`` -> {ColumnRef("customers", "name"), ...}."""
    return {ColumnRef(*r.split(".")) for r in text.split()}


def _concat(n: Any, c: Any) -> str:
    return f"{n}{c}"


J = M.join(C, on="cid")
JT = M.join(T, left_on="subject", right_on="word")
G = M.group_by("cid").agg(total=("score", "sum"))
WITH = C.with_column("x", col("cid") + 1)
LINEAGE_CASES = [  # frame, column, its source columns
    (C, "name", "customers.name"),
    (C.rename({"name": "who"}), "who", "customers.name"),
    (C.select("score", "cid"), "score", "customers.score"),
    (C.filter(col("cid") > 1).sort("name").dropna(), "country", "customers.country"),
    (C.drop_duplicates("country"), "name", "customers.name"),
    (C.fillna({"score": 0.0}), "score", "customers.score"),
    (C.with_column("x", col("score") * col("cid")), "x", "customers.score customers.cid"),
    (
        C.with_column("x", _concat, inputs=["name", "country"]),
        "x",
        "customers.name customers.country",
    ),
    (
        C.with_column("x", _udf_minus, inputs=["cid", "score"], vectorized=True),
        "x",
        "customers.cid customers.score",
    ),
    (C.with_column("name", col("country").str.lower()), "name", "customers.country"),
    (WITH.with_column("y", col("x") * col("score")), "y", "customers.cid customers.score"),
    (J, "cid", "mails.cid customers.cid"),
    (M.join(C, on="cid", how="left"), "cid", "mails.cid"),
    (J, "score_x", "mails.score"),
    (J, "score_y", "customers.score"),
    (J, "name", "customers.name"),
    (JT, "word", "tags.word"),
    (JT, "subject", "mails.subject"),
    (G, "total", "mails.score"),
    (G, "cid", "mails.cid"),
    (C.union(N), "name", "customers.name new_customers.name"),
    (
        C.select("cid").union(N.select("cid"), C.select("cid")),
        "cid",
        "customers.cid new_customers.cid",
    ),
]


@pytest.mark.parametrize(("frame", "column", "expected"), LINEAGE_CASES)
def test_column_lineage_rule(frame: Frame, column: str, expected: str) -> None:
    assert frame.column_lineage(column) == refs(expected)
    assert frame.execute().lineage.columns(column) == refs(expected)
    assert frame.column_lineage()[column] == refs(expected)


def test_renamed_away_column_has_no_lineage() -> None:
    with pytest.raises(UnknownColumnError):
        C.rename({"name": "who"}).column_lineage("name")


# -- provenance stays out of user-visible data and user code ----------------------------------
def test_provenance_never_reaches_results_or_user_functions() -> None:
    seen: dict[str, list[Any]] = {"keep": [], "tag": [], "loud": [], "shout": []}

    def keep(cid: Any) -> bool:
        seen["keep"].append(cid)
        return bool(cid != 2)

    def tag(*values: Any) -> str:
        seen["tag"].append(values)
        return f"{values[0]}/{'?' if pd.isna(values[1]) else values[1]}"

    def loud(arg: pd.DataFrame) -> pd.Series:
        seen["loud"].append((list(arg.columns), arg.index.names))
        return arg["subject"].str.upper() + arg["name"].fillna("")

    def shout(arg: pd.Series) -> pd.Series:
        seen["shout"].append((arg.name, arg.index.names))
        return arg.str.upper()

    steps = [M.filter(keep, columns=["cid"]).join(C.rename({"score": "cs"}), on="cid", how="left")]
    steps.append(steps[-1].with_column("tag", tag, inputs=["subject", "country"]))
    steps.append(steps[-1].with_column("loud", loud, inputs=["subject", "name"], vectorized=True))
    steps.append(steps[-1].with_column("subject", shout, inputs="subject", vectorized=True))
    steps.append(steps[-1].with_column("x", col("score") + 1).select("mid", "cid", "x", "tag"))
    steps.append(steps[-1].drop("x").union(steps[-1].drop("x").filter(col("cid") == 1)))
    steps.append(steps[-1].fillna({"tag": "-"}).dropna("cid").drop_duplicates(["mid"]))
    steps.append(steps[-1].sort("mid").group_by("cid").agg(n=("mid", "count"), t=("tag", "first")))
    for frame in steps:
        out = frame.execute().to_pandas()
        assert list(out.columns) == frame.columns
        assert not [c for c in out.columns if str(c).startswith(RESERVED_PREFIX)]
        assert list(out.index.names) == [None]
    for calls in seen.values():
        calls.clear()
    final = rows(steps[-1])  # one execution: shared sub-plans run once, so one call per row
    assert final.to_dict("list") == {
        "cid": [1, 3, 5],
        "n": [2, 1, 1],
        "t": ["hi/DE", "fee/DE", "spam/?"],
    }
    assert sorted(seen["keep"]) == sorted(MAILS["cid"])  # row functions get plain values
    assert all(type(v) is int for v in seen["keep"])
    tags = sorted((a, "?" if pd.isna(b) else b) for a, b in seen["tag"])
    assert tags == [("bank", "DE"), ("fee", "DE"), ("hi", "DE"), ("spam", "?")]
    assert seen["loud"] == [(["subject", "name"], [None])]  # exactly the declared columns
    assert seen["shout"] == [("subject", [None])]
