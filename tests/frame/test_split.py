"""Key-hash train/test splits: disjoint, complete, deterministic and stable under deletion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import lester_dagster.frame as lf
from lester_dagster.errors import PlanError, UnknownSourceError, UnsupportedOperationError
from lester_dagster.frame import Frame, col, from_pandas

N = 2_000


def make_customers(n: int = N, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1) * 7,
            "email": [f"c{i}@x.org" for i in range(n)],
            "country": rng.choice(["DE", "FR", "IT"], size=n),
        }
    )


def make_mails(customers: pd.DataFrame, per_customer: int = 3) -> pd.DataFrame:
    emails = np.repeat(customers["email"].to_numpy(), per_customer)
    return pd.DataFrame(
        {"mail_id": np.arange(len(emails)) + 100_000, "email": emails, "n": range(len(emails))}
    )


def ids_of(frame: Frame, column: str = "customer_id") -> set[int]:
    return set(frame.execute().to_pandas()[column].tolist())


def sides(frame: Frame, column: str = "customer_id", **kw: Any) -> tuple[set[int], set[int]]:
    train, test = frame.split(**kw)
    a, b = lf.execute(train, test)
    return set(a.to_pandas()[column].tolist()), set(b.to_pandas()[column].tolist())


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return make_customers()


def test_disjoint_and_complete(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    train, test = sides(frame, by="customers", test_fraction=0.2, seed=0)
    assert train.isdisjoint(test)
    assert train | test == set(customers["customer_id"])
    assert train and test


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.05])
def test_share_near_fraction(customers: pd.DataFrame, fraction: float) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    _, test = sides(frame, by="customers", test_fraction=fraction, seed=3)
    share = len(test) / N
    # binomial sd at n=2000 is at most 0.011: 0.05 is more than 4 sd
    assert fraction - 0.05 < share < fraction + 0.05


def test_deterministic(customers: pd.DataFrame) -> None:
    first = sides(
        from_pandas(customers, name="customers", key="customer_id"), by="customers", seed=5
    )
    again = sides(
        from_pandas(customers.copy(), name="customers", key="customer_id"), by="customers", seed=5
    )
    assert first == again


def test_side_depends_only_on_the_key(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    shuffled = customers.sample(frac=1.0, random_state=0).assign(country="XX")
    other = from_pandas(shuffled, name="customers", key="customer_id")
    assert sides(frame, by="customers", seed=2) == sides(other, by="customers", seed=2)


def test_seed_changes_the_split(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    _, test0 = sides(frame, by="customers", seed=0)
    _, test1 = sides(frame, by="customers", seed=1)
    assert test0 != test1
    # different seeds give (nearly) independent splits: the overlap is about 0.2 * 0.2
    assert len(test0 & test1) < 0.5 * min(len(test0), len(test1))


def test_default_fraction_is_a_fifth(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    train, test = sides(frame, by="customers")
    assert 0.15 < len(test) / N < 0.25
    assert (train, test) == sides(frame, by="customers", test_fraction=0.2, seed=0)


@pytest.mark.parametrize("seed", [0, 11])
def test_deleting_records_never_moves_other_records(customers: pd.DataFrame, seed: int) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    train, test = sides(frame, by="customers", test_fraction=0.3, seed=seed)
    rng = np.random.default_rng(seed)
    for fraction in (0.01, 0.3, 0.9):
        keep = rng.random(N) >= fraction
        remaining = customers[keep]
        smaller = from_pandas(remaining, name="customers", key="customer_id")
        train2, test2 = sides(smaller, by="customers", test_fraction=0.3, seed=seed)
        assert train2 | test2 == set(remaining["customer_id"])
        assert train2 == train & set(remaining["customer_id"])
        assert test2 == test & set(remaining["customer_id"])


def test_content_hash_split_is_stable_under_deletion(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers")  # no key: a content hash
    train, test = sides(frame, by="customers", seed=4)
    remaining = customers.iloc[::3]
    train2, test2 = sides(from_pandas(remaining, name="customers"), by="customers", seed=4)
    assert train2 == train & set(remaining["customer_id"])
    assert test2 == test & set(remaining["customer_id"])


def test_split_after_join_keeps_a_customer_together(customers: pd.DataFrame) -> None:
    c = from_pandas(customers, name="customers", key="customer_id")
    m = from_pandas(make_mails(customers), name="mails", key="mail_id")
    joined = m.join(c, on="email")
    train, test = joined.split(by="customers", test_fraction=0.2, seed=9)
    tr, te = (r.to_pandas() for r in lf.execute(train, test))
    assert len(tr) + len(te) == 3 * N
    assert set(tr["customer_id"]).isdisjoint(set(te["customer_id"]))
    # every mail of a test customer is in test
    assert (te.groupby("customer_id").size() == 3).all()
    assert (tr.groupby("customer_id").size() == 3).all()
    # the same customers as when splitting the customers alone
    alone_train, alone_test = sides(c, by="customers", test_fraction=0.2, seed=9)
    assert set(te["customer_id"]) == alone_test
    assert set(tr["customer_id"]) == alone_train


def test_split_after_join_by_the_other_source(customers: pd.DataFrame) -> None:
    c = from_pandas(customers, name="customers", key="customer_id")
    mails = make_mails(customers)
    m = from_pandas(mails, name="mails", key="mail_id")
    joined = c.join(m, on="email")
    tr, te = sides(joined, column="mail_id", by="mails", test_fraction=0.2, seed=9)
    assert tr.isdisjoint(te)
    assert tr | te == set(mails["mail_id"])
    alone = sides(m, column="mail_id", by="mails", test_fraction=0.2, seed=9)
    assert (tr, te) == alone
    # customers are not kept together when splitting by mails
    te_rows = joined.split(by="mails", test_fraction=0.2, seed=9)[1].execute().to_pandas()
    assert te_rows.groupby("customer_id").size().min() < 3


def test_split_then_filter_and_filter_then_split_agree(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    de = col("country") == "DE"
    _, test_a = frame.filter(de).split(by="customers", seed=6)
    _, test_b = frame.split(by="customers", seed=6)
    assert ids_of(test_a) == ids_of(test_b.filter(de))


# -- errors --------------------------------------------------------------------------------------
def test_unknown_source(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    with pytest.raises(UnknownSourceError, match="'mails'") as info:
        frame.split(by="mails")
    assert "customers" in str(info.value)
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_open_interval(customers: pd.DataFrame, fraction: float) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    with pytest.raises(PlanError, match="test_fraction"):
        frame.split(by="customers", test_fraction=fraction)


def test_split_after_group_by_or_distinct(customers: pd.DataFrame) -> None:
    frame = from_pandas(customers, name="customers", key="customer_id")
    grouped = frame.group_by("country").agg(n=("customer_id", "count"))
    with pytest.raises(UnsupportedOperationError, match="customers"):
        grouped.split(by="customers")
    with pytest.raises(UnsupportedOperationError):
        frame.drop_duplicates("country").split(by="customers")
    with pytest.raises(NotImplementedError):
        grouped.split(by="customers")


def test_rows_without_the_source_after_left_join() -> None:
    m = from_pandas(
        pd.DataFrame({"mail_id": [1, 2, 3], "email": ["a", "b", "zzz"]}),
        name="mails",
        key="mail_id",
    )
    c = from_pandas(
        pd.DataFrame({"customer_id": [10, 20], "email": ["a", "b"]}), name="customers", key="email"
    )
    train, test = m.join(c, on="email", how="left").split(by="customers")
    with pytest.raises(PlanError, match=r"1 row\(s\).*'customers'"):
        train.execute()
    with pytest.raises(PlanError):
        test.execute()
    # splitting by the left source is fine: every row has a mail
    train, test = m.join(c, on="email", how="left").split(by="mails")
    a, b = lf.execute(train, test)
    assert sorted([*a.to_pandas()["mail_id"], *b.to_pandas()["mail_id"]]) == [1, 2, 3]


def test_rows_without_the_source_after_union() -> None:
    a = from_pandas(pd.DataFrame({"k": [1, 2]}), name="a", key="k")
    b = from_pandas(pd.DataFrame({"k": [3]}), name="b", key="k")
    train, _ = a.union(b).split(by="a")
    with pytest.raises(PlanError, match="'a'"):
        train.execute()


# -- shared work ---------------------------------------------------------------------------------
def test_execute_train_and_test_runs_the_parent_once(customers: pd.DataFrame) -> None:
    calls: list[int] = []

    def shout(country: pd.Series) -> pd.Series:
        calls.append(len(country))
        return country.str.lower()

    frame = from_pandas(customers, name="customers", key="customer_id").with_column(
        "lower", shout, inputs=["country"], vectorized=True
    )
    train, test = frame.split(by="customers", seed=1)
    assert calls == []  # nothing runs while the plan is built
    tr, te = lf.execute(train, test)
    assert calls == [N]
    assert len(tr) + len(te) == N
    assert set(te.to_pandas()["lower"]) <= {"de", "fr", "it"}
    # executed one by one, the parent runs once per frame
    train.execute()
    test.execute()
    assert calls == [N, N, N]
