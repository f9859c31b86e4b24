"""Expressions: building, Expr.columns(), repr, misuse errors, and evaluation by the pandas
engine (through ``with_column``) compared with the equivalent pandas code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import LesterError, PlanError
from lester_dagster.frame import Expr, col, from_pandas, lit, when

DATA = pd.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "a": [1, -2, 3, 4],
        "b": [0.25, 2.5, np.nan, -1.75],
        "flag": [True, False, True, False],
        "s": ["  Hello World ", "foo bar baz", None, "Bank  account.no"],
        "d": ["2022-01-03", "2023-06-15", "2021-12-31", "2024-02-29"],
        "t": pd.to_datetime(
            ["2022-01-03 10:00", "2023-06-15 00:00", "2021-12-31 23:59", "2024-02-29 08:30"]
        ),
    }
)
F = from_pandas(DATA, name="data", key="id")


def evaluate(expr: Expr) -> pd.Series:
    """The values of ``expr`` as computed by the engine."""
    return F.with_column("out", expr).execute().to_pandas()["out"]


def assert_values(expr: Expr, expected: Any) -> None:
    want = pd.Series(expected).reset_index(drop=True).rename("out")
    pd.testing.assert_series_equal(evaluate(expr), want, check_dtype=False)


# Each case: expression, the same computation in pandas on DATA.
PANDAS_CASES = {
    "add": (col("a") + col("b"), lambda d: d.a + d.b),
    "add_literal": (col("a") + 1, lambda d: d.a + 1),
    "radd": (10 + col("a"), lambda d: 10 + d.a),
    "sub": (col("a") - col("b"), lambda d: d.a - d.b),
    "rsub": (1 - col("a"), lambda d: 1 - d.a),
    "mul": (col("a") * col("b"), lambda d: d.a * d.b),
    "rmul": (3 * col("b"), lambda d: 3 * d.b),
    "truediv": (col("a") / 4, lambda d: d.a / 4),
    "rtruediv": (1 / col("a"), lambda d: 1 / d.a),
    "floordiv": (col("a") // 2, lambda d: d.a // 2),
    "mod": (col("a") % 3, lambda d: d.a % 3),
    "pow": (col("a") ** 2, lambda d: d.a**2),
    "neg": (-col("b"), lambda d: -d.b),
    "nested": ((col("a") + 1) * (col("b") - 2) / 3, lambda d: (d.a + 1) * (d.b - 2) / 3),
    "gt": (col("b") > 1, lambda d: d.b > 1),
    "ge": (col("a") >= 3, lambda d: d.a >= 3),
    "lt": (col("a") < 0, lambda d: d.a < 0),
    "le": (col("b") <= 0.25, lambda d: d.b <= 0.25),
    "eq": (col("a") == 3, lambda d: d.a == 3),
    "ne": (col("a") != 3, lambda d: d.a != 3),
    "eq_columns": (col("a") == col("id"), lambda d: d.a == d.id),
    "reflected_lt": (1 < col("a"), lambda d: d.a > 1),  # noqa: SIM300
    "and": ((col("a") > 0) & col("flag"), lambda d: (d.a > 0) & d.flag),
    "or": ((col("a") > 3) | ~col("flag"), lambda d: (d.a > 3) | ~d.flag),
    "invert": (~col("flag"), lambda d: ~d.flag),
    "isin": (col("a").isin([1, 4, 99]), lambda d: d.a.isin([1, 4, 99])),
    "isin_tuple_of_strings": (col("d").isin(("2024-02-29",)), lambda d: d.d == "2024-02-29"),
    "is_null": (col("b").is_null(), lambda d: d.b.isna()),
    "not_null": (col("s").not_null(), lambda d: d.s.notna()),
    "fill_null_literal": (col("b").fill_null(0), lambda d: d.b.fillna(0)),
    "fill_null_column": (col("b").fill_null(col("a")), lambda d: d.b.fillna(d.a)),
    "astype_float": (col("a").astype("float64"), lambda d: d.a.astype("float64")),
    "astype_str": (col("a").astype("str"), lambda d: d.a.astype("str")),
    "between": (col("a").between(0, 3), lambda d: d.a.between(0, 3)),
    "between_columns": (col("b").between(col("a"), 3), lambda d: (d.b >= d.a) & (d.b <= 3)),
    "abs": (col("a").abs(), lambda d: d.a.abs()),
    "round": (col("b").round(1), lambda d: d.b.round(1)),
    "round_default": (col("b").round(), lambda d: d.b.round()),
    "clip": (col("a").clip(0, 3), lambda d: d.a.clip(0, 3)),
    "clip_lower": (col("a").clip(lower=2), lambda d: d.a.clip(lower=2)),
    "clip_upper": (col("b").clip(upper=1), lambda d: d.b.clip(upper=1)),
    "str_lower": (col("s").str.lower(), lambda d: d.s.str.lower()),
    "str_upper": (col("s").str.upper(), lambda d: d.s.str.upper()),
    "str_strip": (col("s").str.strip(), lambda d: d.s.str.strip()),
    "str_len": (col("s").str.len(), lambda d: d.s.str.len()),
    "str_replace": (col("s").str.replace("o", "0"), lambda d: d.s.str.replace("o", "0")),
    "str_replace_regex": (
        col("s").str.replace(r"\s+", "_", regex=True),
        lambda d: d.s.str.replace(r"\s+", "_", regex=True),
    ),
    "str_slice": (col("s").str.slice(0, 3), lambda d: d.s.str.slice(0, 3)),
    "str_slice_open": (col("s").str.slice(2), lambda d: d.s.str.slice(2)),
    "lower_then_strip": (col("s").str.lower().str.strip(), lambda d: d.s.str.lower().str.strip()),
    "dt_year_str": (col("d").dt.year, lambda d: pd.to_datetime(d.d).dt.year),
    "dt_month_datetime": (col("t").dt.month, lambda d: d.t.dt.month),
    "to_datetime": (col("d").to_datetime(), lambda d: pd.to_datetime(d.d)),
    "when_literals": (
        when(col("a") > 1, "big", "small"),
        lambda d: d.a.gt(1).map({True: "big", False: "small"}),
    ),
    "when_columns": (
        when(col("b").is_null(), col("a"), col("b")),
        lambda d: d.b.where(d.b.notna(), d.a),
    ),
}


@pytest.mark.parametrize("case", PANDAS_CASES)
def test_expression_matches_pandas(case: str) -> None:
    expr, pandas_fn = PANDAS_CASES[case]
    assert_values(expr, pandas_fn(DATA))


# Values worked out by hand (NaN for missing).
HAND_CASES = {
    "word_count": (col("s").str.word_count(), [2, 3, np.nan, 2]),  # runs of spaces count once
    "contains_case_sensitive": (col("s").str.contains("bank"), [False, False, False, False]),
    "contains_case_insensitive": (
        col("s").str.contains("bank", case=False),
        [False, False, False, True],
    ),
    "contains_regex": (col("s").str.contains(r"^f.o\b"), [False, True, False, False]),
    "contains_dot_as_regex": (col("s").str.contains("t.n"), [False, False, False, True]),
    "contains_dot_literal": (
        col("s").str.contains("t.n", regex=False),
        [False, False, False, True],
    ),
    "contains_literal_no_match": (
        col("s").str.contains("r.b", regex=False),
        [False, False, False, False],
    ),
    "contains_regex_match": (col("s").str.contains("r.b"), [False, True, False, False]),
    "startswith": (col("s").str.startswith("foo"), [False, True, False, False]),
    "endswith": (col("s").str.endswith(".no"), [False, False, False, True]),
    "dt_year": (col("d").dt.year, [2022, 2023, 2021, 2024]),
    "dt_month": (col("d").dt.month, [1, 6, 12, 2]),
    "dt_day": (col("d").dt.day, [3, 15, 31, 29]),
    "dt_dayofweek_str": (col("d").dt.dayofweek, [0, 3, 4, 3]),  # Mon, Thu, Fri, Thu
    "dt_dayofweek_datetime": (col("t").dt.dayofweek, [0, 3, 4, 3]),
    "dt_day_datetime": (col("t").dt.day, [3, 15, 31, 29]),
    "dt_year_datetime": (col("t").dt.year, [2022, 2023, 2021, 2024]),
    "literal": (lit(7), [7, 7, 7, 7]),
    "when_null_condition_is_false": (when(col("b") > 0, 1, 0), [1, 1, 0, 0]),
    "when_nested": (
        when(col("a") < 0, "neg", when(col("a") > 3, "big", "mid")),
        ["mid", "neg", "mid", "big"],
    ),
}


@pytest.mark.parametrize("case", HAND_CASES)
def test_expression_values_by_hand(case: str) -> None:
    expr, expected = HAND_CASES[case]
    assert_values(expr, expected)


def test_expression_as_filter_predicate_matches_pandas() -> None:
    predicate = (col("a") > 0) & ~col("s").is_null() | (col("b") < 0)
    got = F.filter(predicate).execute().to_pandas()
    want = DATA[((DATA.a > 0) & ~DATA.s.isna()) | (DATA.b < 0)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


# -- Expr.columns() -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "columns"),
    [
        (col("a"), {"a"}),
        (lit(3), set()),
        (col("a") + 1, {"a"}),
        ((col("a") + col("b")) * col("a"), {"a", "b"}),
        ((col("a") > 1) & ~col("flag"), {"a", "flag"}),
        (col("s").str.lower().str.contains("x"), {"s"}),
        (col("b").fill_null(col("a")), {"a", "b"}),
        (col("b").between(col("a"), col("id")), {"a", "b", "id"}),
        (when(col("flag"), col("a"), col("b")), {"flag", "a", "b"}),
        (when(col("flag"), 1, 0), {"flag"}),
        (col("d").dt.year, {"d"}),
        (col("a").isin([1, 2]), {"a"}),
    ],
    ids=repr,
)
def test_expr_columns_lists_every_column_read(expr: Expr, columns: set[str]) -> None:
    assert expr.columns() == frozenset(columns)


def test_with_column_lineage_follows_expr_columns() -> None:
    frame = F.with_column("x", when(col("flag"), col("a"), 0))
    assert {r.column for r in frame.column_lineage("x")} == {"flag", "a"}


# -- repr ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (col("a"), "col('a')"),
        (lit("x"), "lit('x')"),
        (col("a") + 1, "(col('a') + lit(1))"),
        (1 - col("a"), "(lit(1) - col('a'))"),
        ((col("a") >= 2) & (col("b") != 0), "((col('a') >= lit(2)) & (col('b') != lit(0)))"),
        (~col("flag") | col("flag"), "(~col('flag') | col('flag'))"),
        (-col("a"), "-col('a')"),
        (col("s").str.lower(), "col('s').str.lower()"),
        (col("s").str.word_count(), "col('s').str.word_count()"),
        (
            col("s").str.contains("x", case=False),
            "col('s').str.contains('x', case=False, regex=True)",
        ),
        (col("a").isin([1, 2]), "col('a').isin((1, 2))"),
        (col("a").is_null(), "col('a').is_null()"),
        (col("b").fill_null(0), "col('b').fill_null(lit(0))"),
        (col("d").dt.year, "col('d').dt.year"),
        (when(col("a") > 1, "y", "n"), "when((col('a') > lit(1)), lit('y'), lit('n'))"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_repr_reads_like_the_code_that_built_it(expr: Expr, text: str) -> None:
    assert repr(expr) == text


# -- misuse --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "misuse",
    [
        lambda: bool(col("a") > 1),
        lambda: (col("a") > 1) and (col("b") < 2),
        lambda: (col("a") > 1) or (col("b") < 2),
        lambda: not col("flag"),
        lambda: 0 < col("a") < 3,  # chained comparison calls bool() on the first part
        lambda: [x for x in [1] if col("a") == x],
    ],
    ids=["bool", "and", "or", "not", "chained_comparison", "if"],
)
def test_expression_truth_value_raises_plan_error_with_hint(misuse: Any) -> None:
    with pytest.raises(PlanError) as info:
        misuse()
    message = str(info.value)
    assert "no truth value" in message
    assert "&" in message and "|" in message and "~" in message  # the hint: what to use instead
    assert isinstance(info.value, LesterError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [[1, 2], {1, 2}, {"a": 1}])
def test_comparing_with_a_collection_raises_and_points_to_isin(value: Any) -> None:
    with pytest.raises(PlanError, match=r"isin"):
        col("a") == value  # noqa: B015
    with pytest.raises(PlanError, match=r"isin"):
        col("a") != value  # noqa: B015


def test_isin_with_a_string_raises() -> None:
    with pytest.raises(PlanError, match="list of values"):
        col("s").isin("abc")


@pytest.mark.parametrize("bad", ["", 3, None])
def test_col_needs_a_non_empty_name(bad: Any) -> None:
    with pytest.raises(PlanError, match="column name"):
        col(bad)


def test_when_needs_an_expression_condition() -> None:
    with pytest.raises(PlanError, match="condition"):
        when(True, 1, 0)  # type: ignore[arg-type]


def test_expressions_are_immutable_and_compare_by_identity() -> None:
    a = col("a")
    bigger = a + 1
    assert repr(a) == "col('a')"  # building bigger did not change a
    assert {a: 1}[a] == 1  # hashable, so usable as a dict key
    with pytest.raises(AttributeError):
        a.op = "lit"  # type: ignore[misc]
    assert bigger.args[0] is a
