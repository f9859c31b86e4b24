"""Errors raised while a plan is built: they name what was wrong and what exists, inherit both
LesterError and the matching built-in, and print as plain messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from lester_dagster.errors import (
    JoinTypeError,
    LesterError,
    PlanError,
    UDFError,
    UnknownColumnError,
    UnsupportedOperationError,
)
from lester_dagster.frame import AGGREGATIONS, RESERVED_PREFIX, Frame, col, from_pandas, lit

CUSTOMERS = pd.DataFrame({"cid": [1, 2], "name": ["Ann", "Bob"], "score": [1.5, 2.5]})
C = from_pandas(CUSTOMERS, name="customers", key="cid")
# cid is a string here: joining it with customers' int cid must fail
S = from_pandas(
    pd.DataFrame({"sid": [7, 8], "cid": ["1", "2"], "score": [0.5, 0.25]}), name="sales", key="sid"
)
F = from_pandas(pd.DataFrame({"fid": [1], "cid": [1.0], "score": [3.0]}), name="floats", key="fid")

UNKNOWN_COLUMN = {
    "select": lambda: C.select("cid", "nope"),
    "drop": lambda: C.drop("nope"),
    "rename": lambda: C.rename({"nope": "x"}),
    "filter": lambda: C.filter(col("nope") > 1),
    "filter_row_predicate": lambda: C.filter(lambda v: v > 1, columns=["nope"]),
    "with_column": lambda: C.with_column("x", col("score") + col("nope")),
    "with_column_udf_inputs": lambda: C.with_column("x", len, inputs=["nope"]),
    "join_left_key": lambda: C.join(F, left_on="nope", right_on="cid"),
    "join_right_key": lambda: C.join(F, left_on="cid", right_on="nope"),
    "join_on": lambda: C.join(F, on="nope"),
    "group_by": lambda: C.group_by("nope"),
    "agg_column": lambda: C.group_by("cid").agg(x=("nope", "sum")),
    "sort": lambda: C.sort(["cid", "nope"]),
    "drop_duplicates": lambda: C.drop_duplicates("nope"),
    "dropna": lambda: C.dropna("nope"),
    "fillna": lambda: C.fillna({"nope": 0}),
    "source_key": lambda: from_pandas(CUSTOMERS, name="c2", key="nope"),
    "column_lineage": lambda: C.column_lineage("nope"),
}


@pytest.mark.parametrize("build", UNKNOWN_COLUMN.values(), ids=list(UNKNOWN_COLUMN))
def test_unknown_column_names_it_and_lists_the_existing_ones(build: Callable[[], Any]) -> None:
    with pytest.raises(UnknownColumnError) as info:
        build()  # raised while building: nothing is executed here
    err = info.value
    assert isinstance(err, LesterError) and isinstance(err, KeyError)
    assert err.column == "nope"
    message = str(err)
    assert message.startswith("unknown column 'nope'")  # plain text, not KeyError's repr
    assert "the frame has:" in message
    existing = ["'fid'", "'cid'", "'score'"] if "right" in message else ["'cid'", "'score'"]
    assert all(name in message for name in existing)


def test_unknown_column_error_says_where() -> None:
    with pytest.raises(UnknownColumnError, match=r"in join \(left side\)"):
        C.join(F, left_on="nope", right_on="cid")
    with pytest.raises(UnknownColumnError, match=r"in join \(right side\); the frame has: 'fid'"):
        C.join(F, left_on="cid", right_on="nope")
    with pytest.raises(UnknownColumnError, match=r"in with_column\('x'\)"):
        C.with_column("x", col("nope"))


def test_unknown_column_after_a_rename_lists_the_new_names() -> None:
    with pytest.raises(UnknownColumnError) as info:
        C.rename({"name": "who"}).select("name")
    assert info.value.available == ("cid", "who", "score")
    assert "'who'" in str(info.value)


# -- joins -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("left", "right", "kwargs", "left_col", "right_col"),
    [
        (C, S, {"on": "cid"}, "cid", "cid"),
        (S, C, {"on": "cid"}, "cid", "cid"),
        (
            C,
            S.rename({"cid": "customer"}),
            {"left_on": "cid", "right_on": "customer"},
            "cid",
            "customer",
        ),
    ],
    ids=["int_vs_str", "str_vs_int", "different_names"],
)
def test_join_key_type_mismatch_is_rejected_at_plan_build_time(
    left: Frame, right: Frame, kwargs: dict[str, str], left_col: str, right_col: str
) -> None:
    with pytest.raises(JoinTypeError) as info:
        left.join(right, **kwargs)  # no execute(): the plan itself is rejected
    err = info.value
    assert isinstance(err, TypeError) and isinstance(err, LesterError)
    left_type, right_type = ("int", "string") if left is C else ("string", "int")
    message = str(err)
    assert f"left column {left_col!r} is {left_type}" in message
    assert f"right column {right_col!r} is {right_type}" in message
    assert "astype" in message  # says how to fix it


def test_join_int_with_float_key_is_allowed() -> None:
    assert len(C.join(F, on="cid").execute()) == 1


def test_join_key_type_mismatch_hidden_by_with_column_is_caught_at_execution() -> None:
    frame = C.join(S.with_column("cid", col("cid").str.strip()), on="cid")  # dtype unknown here
    with pytest.raises(JoinTypeError, match="'cid'"):
        frame.execute()


@pytest.mark.parametrize(
    "build",
    [
        lambda: C.join(C, on="cid"),
        lambda: C.filter(col("cid") > 1).join(C.select("cid", "name"), on="cid"),
        lambda: C.join(F, on="cid").join(C.rename({"name": "n2"}), on="cid"),
    ],
    ids=["same_frame", "derived_frames", "deep_in_the_plan"],
)
def test_self_join_is_unsupported_and_says_what_to_do(build: Callable[[], Any]) -> None:
    with pytest.raises(UnsupportedOperationError) as info:
        build()
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, LesterError)
    assert "'customers'" in str(info.value) and "self-join" in str(info.value)
    assert "two names" in str(info.value)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: C.join(F), "on="),
        (lambda: C.join(F, on="cid", left_on="cid", right_on="cid"), "either on="),
        (lambda: C.join(F, left_on="cid"), "right_on="),
        (lambda: C.join(F, left_on=["cid", "score"], right_on=["cid"]), "as many left keys"),
        (lambda: C.join(F, on="cid", how="outer"), "'inner' or 'left'"),
        (lambda: C.join(CUSTOMERS, on="cid"), "needs a Frame"),
        (lambda: C.join(F, on="cid", suffixes=("", "")), "duplicate column names"),
        (lambda: F.join(from_pandas(CUSTOMERS, name="floats"), on="cid"), "both named 'floats'"),
    ],
    ids=[
        "no_keys",
        "on_and_left_on",
        "only_left_on",
        "key_counts",
        "how",
        "not_a_frame",
        "suffixes_collide",
        "two_sources_one_name",
    ],
)
def test_bad_join_arguments_raise_plan_error(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(PlanError, match=match) as info:
        build()
    assert isinstance(info.value, ValueError)


# -- union, aggregation, functions, names ------------------------------------------------------
def test_union_with_different_columns_lists_both() -> None:
    with pytest.raises(PlanError) as info:
        C.union(F)
    message = str(info.value)
    assert "same columns" in message
    assert "['fid', 'cid', 'score']" in message and "['cid', 'name', 'score']" in message


def test_union_needs_two_frames() -> None:
    with pytest.raises(PlanError, match="at least two"):
        C.union()


def test_union_with_same_column_names_in_another_order_is_fine() -> None:
    assert C.union(C.select("score", "name", "cid")).columns == ["cid", "name", "score"]


@pytest.mark.parametrize("func", ["median", "avg", "COUNT", "nunique"])
def test_bad_aggregation_name_lists_the_valid_ones(func: str) -> None:
    with pytest.raises(PlanError) as info:
        C.group_by("name").agg(x=("score", func))
    message = str(info.value)
    assert repr(func) in message and "'x'" in message
    assert all(repr(valid) in message for valid in AGGREGATIONS)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: C.group_by("name").agg(), "at least one aggregation"),
        (lambda: C.group_by("name").agg(x="score"), r"\(column, function\) pair"),
        (lambda: C.group_by("name").agg(name=("score", "sum")), "duplicate column names"),
        (lambda: C.group_by().agg(x=("score", "sum")), "at least one column"),
    ],
    ids=["no_aggs", "not_a_pair", "clashes_with_key", "no_keys"],
)
def test_bad_group_by_raises_plan_error(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(PlanError, match=match):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: C.with_column("x", lambda v: v),
        lambda: C.with_column("x", lambda v: v, vectorized=True),
        lambda: C.filter(lambda v: v > 1),
        lambda: C.with_column("x", lambda v: v, inputs=[]),
    ],
    ids=["with_column", "vectorized", "filter", "empty_inputs"],
)
def test_function_without_declared_inputs_is_rejected(build: Callable[[], Any]) -> None:
    with pytest.raises(PlanError, match=r"input column"):
        build()


def test_function_inputs_message_names_the_keyword() -> None:
    with pytest.raises(PlanError, match=r"inputs=\[\.\.\.\]"):
        C.with_column("x", len)
    with pytest.raises(PlanError, match=r"columns=\[\.\.\.\]"):
        C.filter(bool)


def test_expression_with_declared_inputs_is_rejected() -> None:
    with pytest.raises(PlanError, match="expression knows its columns"):
        C.with_column("x", col("score") + 1, inputs=["score"])


def test_value_that_is_neither_expression_nor_function_is_rejected() -> None:
    with pytest.raises(PlanError, match="takes an expression"):
        C.with_column("x", 3)  # type: ignore[arg-type]


RESERVED = RESERVED_PREFIX + "x"


@pytest.mark.parametrize(
    "build",
    [
        lambda: from_pandas(pd.DataFrame({"id": [1], RESERVED: [2]}), name="r", key="id"),
        lambda: C.with_column(RESERVED, lit(1)),
        lambda: C.rename({"name": RESERVED}),
        lambda: C.group_by("name").agg(**{RESERVED: ("score", "sum")}),
    ],
    ids=["source_column", "with_column", "rename", "agg_name"],
)
def test_reserved_column_prefix_is_rejected(build: Callable[[], Any]) -> None:
    with pytest.raises(PlanError) as info:
        build()
    assert repr(RESERVED) in str(info.value) and repr(RESERVED_PREFIX) in str(info.value)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: C.select("cid", "cid"), "twice"),
        (lambda: C.rename({"name": "cid"}), "same name"),
        (lambda: C.rename({}), "mapping"),
        (lambda: C.sort(["cid", "name"], ascending=[True]), "ascending flags"),
        (lambda: C.drop_duplicates([]), "names no column"),
        (lambda: C.select(["cid", 3]), "column names"),
        (lambda: from_pandas([1, 2], name="x"), "DataFrame"),  # type: ignore[arg-type]
        (lambda: from_pandas(CUSTOMERS, name=""), "needs a name"),
    ],
    ids=[
        "select_twice",
        "rename_collision",
        "rename_empty",
        "sort_flags",
        "empty_subset",
        "select_non_string",
        "from_pandas_not_a_frame",
        "source_without_name",
    ],
)
def test_other_malformed_plans_raise_plan_error(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(PlanError, match=match):
        build()


# -- errors from user functions at execution ---------------------------------------------------
def test_failing_row_function_raises_udf_error_naming_it() -> None:
    def explode(v: Any) -> Any:
        raise ValueError("boom")

    with pytest.raises(UDFError) as info:
        C.with_column("x", explode, inputs=["name"]).execute()
    assert isinstance(info.value, RuntimeError)
    assert "explode" in str(info.value) and "boom" in str(info.value)
    assert "['name']" in str(info.value)


def test_vectorized_function_returning_wrong_length_raises_udf_error() -> None:
    with pytest.raises(UDFError, match="returned 1 values for 2 rows"):
        C.with_column("x", lambda s: s.head(1), inputs=["name"], vectorized=True).execute()


def test_non_boolean_filter_is_rejected_when_run() -> None:
    with pytest.raises(PlanError, match="True/False"):
        C.filter(col("score") + 1).execute()


@pytest.mark.parametrize(
    "err",
    [
        UnknownColumnError("nope", ["a", "b"]),
        JoinTypeError("plain message"),
        UnsupportedOperationError("plain message"),
        PlanError("plain message"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_str_of_an_error_is_the_plain_message(err: LesterError) -> None:
    text = str(err)
    assert not text.startswith(("'", '"'))
    assert text in ("plain message", "unknown column 'nope'; the frame has: 'a', 'b'")


def test_expression_failing_on_the_data_raises_expression_error_naming_it() -> None:
    from lester_dagster.errors import ExpressionError

    frame = C.with_column("n", col("name").astype("int64"))
    with pytest.raises(ExpressionError, match=r"col\('name'\)\.astype\('int64'\)") as info:
        frame.execute()
    assert isinstance(info.value, ValueError)
    assert "astype" in str(info.value)
