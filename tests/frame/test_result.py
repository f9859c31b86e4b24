"""Results: data without provenance columns, and lineage queries (backward, forward, columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lester_dagster.frame as lf
from lester_dagster.errors import UnknownColumnError, UnknownKeyError, UnknownSourceError
from lester_dagster.frame import ColumnRef, Frame, Result, col, from_pandas

CUSTOMERS = pd.DataFrame(
    {"customer_id": [1, 2, 3], "email": ["a", "b", "c"], "country": ["DE", "FR", "DE"]}
)
MAILS = pd.DataFrame(
    {
        "mail_id": [10, 11, 12, 13],
        "email": ["a", "a", "b", "zz"],
        "text": ["Hi", "Bad", "Ok", "Spam"],
    }
)


def customers() -> Frame:
    return from_pandas(CUSTOMERS, name="customers", key="customer_id")


def mails() -> Frame:
    return from_pandas(MAILS, name="mails", key="mail_id")


def position(result: Result, column: str, value: object) -> int:
    """Position of the (only) output row whose ``column`` equals ``value``."""
    hits = np.flatnonzero(result.to_pandas()[column].to_numpy() == value)
    assert len(hits) == 1
    return int(hits[0])


@pytest.fixture
def joined() -> Result:
    return mails().join(customers(), on="email").execute()


# -- backward ------------------------------------------------------------------------------------
def test_backward(joined: Result) -> None:
    assert len(joined) == 3
    assert joined.lineage.backward(position(joined, "mail_id", 11)) == {
        "mails": [11],
        "customers": [1],
    }
    assert joined.lineage.backward(position(joined, "mail_id", 12)) == {
        "mails": [12],
        "customers": [2],
    }


def test_backward_keys_are_python_values(joined: Result) -> None:
    keys = joined.lineage.backward(0)
    assert all(type(k) is int for ks in keys.values() for k in ks)


def test_backward_out_of_range(joined: Result) -> None:
    for row in (3, -1, 100):
        with pytest.raises(IndexError, match="3 rows"):
            joined.lineage.backward(row)
        with pytest.raises(IndexError):
            joined.lineage.polynomial(row)


def test_backward_left_join_without_match() -> None:
    result = mails().join(customers(), on="email", how="left").execute()
    assert len(result) == 4
    assert result.lineage.backward(position(result, "mail_id", 13)) == {"mails": [13]}


def test_backward_after_group_by_lists_every_member() -> None:
    grouped = mails().join(customers(), on="email").group_by("country").agg(n=("mail_id", "count"))
    result = grouped.execute()
    de = position(result, "country", "DE")
    assert result.lineage.backward(de) == {"mails": [10, 11], "customers": [1]}
    assert result.to_pandas()["n"].tolist()[de] == 2


def test_backward_string_and_composite_keys() -> None:
    c = from_pandas(CUSTOMERS, name="customers", key="email")
    assert c.execute().lineage.backward(2) == {"customers": ["c"]}
    composite = from_pandas(CUSTOMERS, name="customers", key=["country", "customer_id"])
    assert composite.execute().lineage.backward(1) == {"customers": [("FR", 2)]}


# -- forward -------------------------------------------------------------------------------------
def test_forward(joined: Result) -> None:
    rows_of_a = sorted([position(joined, "mail_id", 10), position(joined, "mail_id", 11)])
    assert joined.lineage.forward("customers", [1]) == rows_of_a
    assert joined.lineage.forward("customers", [1, 2]) == [0, 1, 2]
    assert joined.lineage.forward("mails", [12]) == [position(joined, "mail_id", 12)]
    assert joined.lineage.forward("customers", []) == []


def test_forward_known_key_reaching_no_row(joined: Result) -> None:
    # customer 3 and mail 13 exist in their sources but reach no joined row
    assert joined.lineage.forward("customers", [3]) == []
    assert joined.lineage.forward("mails", [13]) == []


def test_forward_int_keys_as_python_or_numpy_int(joined: Result) -> None:
    expected = joined.lineage.forward("customers", [2])
    assert len(expected) == 1
    assert joined.lineage.forward("customers", [np.int64(2)]) == expected
    assert joined.lineage.forward("customers", (k for k in [2])) == expected


def test_forward_composite_keys_as_tuples() -> None:
    frame = from_pandas(CUSTOMERS, name="customers", key=["country", "customer_id"])
    result = frame.filter(col("customer_id") > 1).execute()
    assert result.to_pandas()["customer_id"].tolist() == [2, 3]
    assert result.lineage.forward("customers", [("DE", 3)]) == [1]
    assert result.lineage.forward("customers", [("DE", 3), ("FR", 2)]) == [0, 1]
    assert result.lineage.forward("customers", [("DE", 1)]) == []  # filtered out
    with pytest.raises(UnknownKeyError, match=r"\('FR', 3\)"):
        result.lineage.forward("customers", [("FR", 3)])
    with pytest.raises(UnknownKeyError, match="2 value"):
        result.lineage.forward("customers", ["DE"])


def test_forward_unknown_key_names_it_and_shows_examples(joined: Result) -> None:
    with pytest.raises(UnknownKeyError) as info:
        joined.lineage.forward("customers", [1, 99])
    message = str(info.value)
    assert "99" in message
    assert "'customers'" in message
    # example keys of the source
    assert any(str(k) in message.split("look like")[1] for k in (1, 2, 3))
    assert isinstance(info.value, KeyError)


def test_forward_not_strict_drops_unknown_keys(joined: Result) -> None:
    assert joined.lineage.forward("customers", [2, 99], strict=False) == joined.lineage.forward(
        "customers", [2]
    )
    assert joined.lineage.forward("customers", [99], strict=False) == []


def test_forward_wrong_key_type() -> None:
    result = from_pandas(CUSTOMERS, name="customers", key="customer_id").execute()
    with pytest.raises(UnknownKeyError):
        result.lineage.forward("customers", ["not a number"])


def test_forward_int_key_given_as_text_or_whole_float() -> None:
    # keys typed on a command line arrive as text
    result = from_pandas(CUSTOMERS, name="customers", key="customer_id").execute()
    assert result.lineage.forward("customers", ["2"]) == [1]
    assert result.lineage.forward("customers", [2.0]) == [1]


def test_forward_never_truncates_a_key() -> None:
    # 2.5 is not customer 2
    result = from_pandas(CUSTOMERS, name="customers", key="customer_id").execute()
    with pytest.raises(UnknownKeyError, match=r"2\.5"):
        result.lineage.forward("customers", [2.5])
    composite = from_pandas(CUSTOMERS, name="customers", key=["country", "customer_id"])
    with pytest.raises(UnknownKeyError, match=r"2\.5"):
        composite.execute().lineage.forward("customers", [("FR", 2.5)])


def test_forward_unknown_source(joined: Result) -> None:
    with pytest.raises(UnknownSourceError, match="'orders'"):
        joined.lineage.forward("orders", [1])


def test_forward_content_hash_keys() -> None:
    result = from_pandas(MAILS, name="mails").filter(col("email") == "a").execute()
    key = result.lineage.backward(1)["mails"][0]
    assert result.lineage.forward("mails", [key]) == [1]
    assert result.lineage.forward("mails", [key.upper()]) == [1]  # hex is case-insensitive
    with pytest.raises(UnknownKeyError, match="hex"):
        result.lineage.forward("mails", ["not-hex"])
    with pytest.raises(UnknownKeyError):
        result.lineage.forward("mails", ["0123456789abcdef"])


def test_backward_and_forward_are_inverse(joined: Result) -> None:
    for row in range(len(joined)):
        for source, keys in joined.lineage.backward(row).items():
            assert row in joined.lineage.forward(source, keys)


# -- column lineage ------------------------------------------------------------------------------
def test_columns() -> None:
    frame = (
        mails()
        .join(customers(), on="email")
        .with_column("shout", col("text").str.upper() + col("country"))
    )
    result = frame.execute()
    assert result.lineage.columns("text") == {ColumnRef("mails", "text")}
    assert result.lineage.columns("country") == {ColumnRef("customers", "country")}
    assert result.lineage.columns("email") == {
        ColumnRef("mails", "email"),
        ColumnRef("customers", "email"),
    }
    assert result.lineage.columns("shout") == {
        ColumnRef("mails", "text"),
        ColumnRef("customers", "country"),
    }


def test_columns_unknown(joined: Result) -> None:
    with pytest.raises(UnknownColumnError, match="'txt'") as info:
        joined.lineage.columns("txt")
    assert "text" in str(info.value)


# -- polynomial ----------------------------------------------------------------------------------
def test_polynomial(joined: Result) -> None:
    row = position(joined, "mail_id", 12)
    assert joined.lineage.polynomial(row) == "mails[12]*customers[2]"


def test_polynomial_of_a_group_and_of_string_keys() -> None:
    c = from_pandas(CUSTOMERS, name="customers", key="email")
    grouped = mails().join(c, on="email").group_by("country").agg(n=("mail_id", "count"))
    result = grouped.execute()
    terms = result.lineage.polynomial(position(result, "country", "DE")).split(" + ")
    assert sorted(terms) == ["mails[10]*customers['a']", "mails[11]*customers['a']"]
    assert result.lineage.polynomial(position(result, "country", "FR")) == (
        "mails[12]*customers['b']"
    )


# -- data ----------------------------------------------------------------------------------------
def test_to_pandas_has_only_user_columns(joined: Result) -> None:
    out = joined.to_pandas()
    assert list(out.columns) == ["mail_id", "email", "text", "customer_id", "country"]
    assert joined.columns == list(out.columns)
    assert sorted(out["mail_id"].tolist()) == [10, 11, 12]
    assert out.index.tolist() == [0, 1, 2]


def test_to_pandas_is_a_copy(joined: Result) -> None:
    out = joined.to_pandas()
    out["text"] = "changed"
    out.loc[0, "mail_id"] = -1
    again = joined.to_pandas()
    assert "changed" not in again["text"].tolist()
    assert -1 not in again["mail_id"].tolist()


def test_len_and_repr(joined: Result) -> None:
    assert len(joined) == 3
    text = repr(joined)
    assert "3 rows" in text and "5 columns" in text
    assert "mails" in text and "customers" in text
    empty = mails().filter(col("mail_id") < 0).execute()
    assert len(empty) == 0
    assert "0 rows" in repr(empty)


def test_result_sources_are_those_of_its_plan() -> None:
    c = customers()
    only_customers, both = lf.execute(c, mails().join(c, on="email"))
    assert list(only_customers.sources) == ["customers"]
    assert sorted(both.sources) == ["customers", "mails"]
    with pytest.raises(UnknownSourceError):
        only_customers.lineage.forward("mails", [10])
