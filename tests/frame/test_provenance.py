"""Unit tests of the provenance polynomials (:class:`Prov`) and of key hashing (``hash_keys``).

Expected values are written by hand: small key ids (1, 2, 10, ...) stand for source records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lester_dagster.frame.provenance import NO_RECORD, Prov, hash_keys, sorted_unique


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def rows(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.intp)


def all_monomials(p: Prov) -> list[list[dict[str, int]]]:
    return [p.monomials(r) for r in range(p.n)]


def as_set(monos: list[dict[str, int]]) -> set[frozenset[tuple[str, int]]]:
    return {frozenset(m.items()) for m in monos}


# -- construction ------------------------------------------------------------------------------
def test_of_source_is_one_monomial_per_row() -> None:
    p = Prov.of_source("a", ids(5, 6, 7))
    assert p.n == 3
    assert p.single
    assert p.sources == ("a",)
    assert all_monomials(p) == [[{"a": 5}], [{"a": 6}], [{"a": 7}]]
    assert p.lengths().tolist() == [1, 1, 1]


def test_width_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="'b'"):
        Prov(2, {"a": ids(1, 2), "b": ids(1)})
    with pytest.raises(ValueError):
        Prov(2, {"a": ids(1, 2)}, offsets=rows(0, 1, 3))


def test_keys_are_read_only() -> None:
    p = Prov.of_source("a", ids(1))
    with pytest.raises(TypeError):
        p.keys["b"] = ids(2)  # type: ignore[index]


# -- take ----------------------------------------------------------------------------------------
def test_take_single_reorders_and_repeats() -> None:
    p = Prov(3, {"a": ids(1, 2, 3), "b": ids(10, 0, 30)})
    t = p.take(rows(2, 0, 2))
    assert t.single
    assert all_monomials(t) == [[{"a": 3, "b": 30}], [{"a": 1, "b": 10}], [{"a": 3, "b": 30}]]
    assert all_monomials(p.take(rows())) == []


def test_take_multi_keeps_each_rows_monomials() -> None:
    # row 0: a1 + a2 ; row 1: a3 ; row 2: a4 + a5 + a6
    p = Prov(3, {"a": ids(1, 2, 3, 4, 5, 6)}, offsets=rows(0, 2, 3, 6))
    t = p.take(rows(2, 1, 0, 2))
    assert t.lengths().tolist() == [3, 1, 2, 3]
    assert [[m["a"] for m in ms] for ms in all_monomials(t)] == [
        [4, 5, 6],
        [3],
        [1, 2],
        [4, 5, 6],
    ]


# -- concat --------------------------------------------------------------------------------------
def test_concat_fills_missing_sources_with_zero() -> None:
    left = Prov.of_source("a", ids(1, 2))
    right = Prov(1, {"b": ids(7), "c": ids(8)})
    u = Prov.concat([left, right])
    assert u.n == 3
    assert u.single
    assert u.sources == ("a", "b", "c")
    assert u.keys["a"].tolist() == [1, 2, 0]
    assert u.keys["b"].tolist() == [0, 0, 7]
    assert u.keys["c"].tolist() == [0, 0, 8]
    # absent sources (id 0) are left out of the monomials
    assert all_monomials(u) == [[{"a": 1}], [{"a": 2}], [{"b": 7, "c": 8}]]


def test_concat_of_single_and_multi() -> None:
    single = Prov.of_source("a", ids(1))
    multi = Prov(2, {"b": ids(5, 6, 7)}, offsets=rows(0, 2, 3))
    u = Prov.concat([single, multi])
    assert not u.single
    assert u.lengths().tolist() == [1, 2, 1]
    assert all_monomials(u) == [[{"a": 1}], [{"b": 5}, {"b": 6}], [{"b": 7}]]


# -- product -------------------------------------------------------------------------------------
def test_product_scalar_times_scalar() -> None:
    left = Prov.of_source("a", ids(1, 2, 3))
    right = Prov.of_source("b", ids(10, 20))
    p = Prov.product(left, rows(0, 0, 2), right, rows(1, 0, 0))
    assert p.single
    assert all_monomials(p) == [
        [{"a": 1, "b": 20}],
        [{"a": 1, "b": 10}],
        [{"a": 3, "b": 10}],
    ]


def test_product_left_join_minus_one_keeps_only_left() -> None:
    left = Prov.of_source("a", ids(1, 2))
    right = Prov(2, {"b": ids(10, 20), "c": ids(11, 21)})
    p = Prov.product(left, rows(0, 1), right, rows(-1, 1))
    assert p.keys["b"].tolist() == [0, 20]
    assert p.keys["c"].tolist() == [0, 21]
    assert all_monomials(p) == [[{"a": 1}], [{"a": 2, "b": 20, "c": 21}]]


def test_product_left_join_with_empty_right() -> None:
    left = Prov.of_source("a", ids(1, 2))
    right = Prov.of_source("b", ids())
    p = Prov.product(left, rows(0, 1), right, rows(-1, -1))
    assert p.keys["b"].tolist() == [0, 0]
    assert all_monomials(p) == [[{"a": 1}], [{"a": 2}]]


def test_product_overlapping_sources_is_rejected() -> None:
    a = Prov.of_source("a", ids(1))
    with pytest.raises(ValueError, match="'a'"):
        Prov.product(a, rows(0), a, rows(0))


def test_product_multi_left_times_single_right_is_cartesian() -> None:
    # left row 0: a1 + a2 ; left row 1: a3
    left = Prov(2, {"a": ids(1, 2, 3)}, offsets=rows(0, 2, 3))
    right = Prov.of_source("b", ids(10, 20))
    p = Prov.product(left, rows(0, 1, 0), right, rows(1, 0, 0))
    assert all_monomials(p) == [
        [{"a": 1, "b": 20}, {"a": 2, "b": 20}],
        [{"a": 3, "b": 10}],
        [{"a": 1, "b": 10}, {"a": 2, "b": 10}],
    ]


def test_product_multi_times_multi_is_exactly_the_cartesian_product() -> None:
    # left row 0: a1 + a2 ; left row 1: a3 + a4 + a5
    left = Prov(2, {"a": ids(1, 2, 3, 4, 5)}, offsets=rows(0, 2, 5))
    # right row 0: b10 ; right row 1: b20*c21 + b30*c31 + b40*c41
    right = Prov(2, {"b": ids(10, 20, 30, 40), "c": ids(11, 21, 31, 41)}, offsets=rows(0, 1, 4))
    p = Prov.product(left, rows(1, 0, 1), right, rows(1, 1, -1))
    assert p.lengths().tolist() == [9, 6, 3]
    r0 = p.monomials(0)
    assert len(r0) == 9
    assert as_set(r0) == {
        frozenset({("a", a), ("b", b), ("c", b + 1)}) for a in (3, 4, 5) for b in (20, 30, 40)
    }
    r1 = p.monomials(1)
    assert len(r1) == 6
    assert as_set(r1) == {
        frozenset({("a", a), ("b", b), ("c", b + 1)}) for a in (1, 2) for b in (20, 30, 40)
    }
    # unmatched left-join row: the left polynomial alone
    assert p.monomials(2) == [{"a": 3}, {"a": 4}, {"a": 5}]


def test_product_single_left_times_multi_right() -> None:
    left = Prov.of_source("a", ids(1, 2))
    right = Prov(1, {"b": ids(10, 20)}, offsets=rows(0, 2))
    p = Prov.product(left, rows(0, 1), right, rows(0, 0))
    assert all_monomials(p) == [
        [{"a": 1, "b": 10}, {"a": 1, "b": 20}],
        [{"a": 2, "b": 10}, {"a": 2, "b": 20}],
    ]


# -- group ---------------------------------------------------------------------------------------
def test_group_sums_members_and_drops_minus_one() -> None:
    p = Prov(5, {"a": ids(1, 2, 3, 4, 5), "b": ids(10, 0, 30, 40, 50)})
    g = p.group(rows(1, -1, 0, 1, -1), 2)
    assert g.n == 2
    assert not g.single
    assert all_monomials(g) == [
        [{"a": 3, "b": 30}],
        [{"a": 1, "b": 10}, {"a": 4, "b": 40}],
    ]


def test_group_of_multi_rows_and_empty_group() -> None:
    p = Prov(3, {"a": ids(1, 2, 3, 4)}, offsets=rows(0, 2, 3, 4))  # a1+a2 ; a3 ; a4
    g = p.group(rows(0, 2, 0), 3)
    assert g.lengths().tolist() == [3, 0, 1]
    assert [sorted(m["a"] for m in ms) for ms in all_monomials(g)] == [[1, 2, 4], [], [3]]


# -- queries -------------------------------------------------------------------------------------
def test_rows_mentioning() -> None:
    p = Prov(4, {"a": ids(1, 2, 1, 3), "b": ids(10, 10, 0, 30)})
    assert p.rows_mentioning("a", [1]).tolist() == [0, 2]
    assert p.rows_mentioning("b", ids(10, 30)).tolist() == [0, 1, 3]
    assert p.rows_mentioning("a", [99]).tolist() == []
    assert p.rows_mentioning("zzz", [1]).tolist() == []
    assert p.rows_mentioning("a", []).tolist() == []


def test_rows_mentioning_multi_counts_each_row_once() -> None:
    p = Prov(3, {"a": ids(1, 1, 2, 1)}, offsets=rows(0, 2, 3, 4))
    assert p.rows_mentioning("a", [1]).tolist() == [0, 2]
    assert p.rows_mentioning("a", [2]).tolist() == [1]


def test_ids_of_row() -> None:
    p = Prov(2, {"a": ids(5, 3, 5), "b": ids(7, 0, 8)}, offsets=rows(0, 3, 3))
    got = p.ids_of_row(0)
    assert sorted(got) == ["a", "b"]
    assert got["a"].tolist() == [3, 5]
    assert got["b"].tolist() == [7, 8]
    assert p.ids_of_row(1) == {}
    with pytest.raises(IndexError):
        p.ids_of_row(2)
    with pytest.raises(IndexError):
        p.monomials(-1)


def test_to_frame_one_row_per_monomial() -> None:
    p = Prov(2, {"a": ids(1, 2, 3), "b": ids(0, 20, 30)}, offsets=rows(0, 1, 3))
    expected = pd.DataFrame({"row": [0, 1, 1], "a": [1, 2, 3], "b": [0, 20, 30]})
    frame = p.to_frame()
    assert list(frame.columns) == ["row", "a", "b"]
    assert frame.astype("int64").equals(expected.astype("int64"))
    assert frame["a"].dtype == np.uint64


# -- hash_keys -----------------------------------------------------------------------------------
def test_hash_keys_deterministic_and_distinct() -> None:
    df = pd.DataFrame({"k": [3, 1, 2, 3]})
    first, again = hash_keys(df, ["k"]), hash_keys(df.copy(), ["k"])
    assert first.dtype == np.uint64
    assert first.tolist() == again.tolist()
    assert first[0] == first[3]
    assert len(set(first[:3].tolist())) == 3
    # independent of the row position and of the other rows
    assert hash_keys(pd.DataFrame({"k": [2]}), ["k"])[0] == first[2]


def test_hash_keys_needs_a_column() -> None:
    with pytest.raises(ValueError):
        hash_keys(pd.DataFrame({"k": [1]}), [])


def test_hash_keys_never_zero() -> None:
    df = pd.DataFrame({"k": np.arange(-5_000, 5_000), "s": [f"v{i}" for i in range(10_000)]})
    assert (hash_keys(df, ["k"]) != NO_RECORD).all()
    assert (hash_keys(df, ["s"]) != NO_RECORD).all()
    assert (hash_keys(df, ["k", "s"]) != NO_RECORD).all()


def test_int_column_csv_and_parquet_hash_alike(tmp_path: Path) -> None:
    df = pd.DataFrame({"k": [10, 20, 30], "s": ["x", "y", "z"]})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    csv = pd.read_csv(tmp_path / "d.csv")
    parquet = pd.read_parquet(tmp_path / "d.parquet")
    for cols in (["k"], ["s"], ["k", "s"]):
        expected = hash_keys(df, cols).tolist()
        assert hash_keys(csv, cols).tolist() == expected
        assert hash_keys(parquet, cols).tolist() == expected


def test_int_column_with_missing_value_read_back_from_csv(tmp_path: Path) -> None:
    # pandas reads an int column with a gap as float64; the other values keep their ids
    df = pd.DataFrame({"k": pd.array([10, None, 30], dtype="Int64")})
    df.to_csv(tmp_path / "d.csv", index=False)
    csv = pd.read_csv(tmp_path / "d.csv")
    assert csv["k"].dtype == np.float64
    complete = pd.DataFrame({"k": [10, 30]})
    assert hash_keys(csv, ["k"]).tolist() == hash_keys(df, ["k"]).tolist()
    assert hash_keys(csv, ["k"])[[0, 2]].tolist() == hash_keys(complete, ["k"]).tolist()


def test_str_and_object_dtype_hash_alike() -> None:
    values = ["alice", "bob", None, "carol"]
    as_str = pd.DataFrame({"k": pd.Series(values, dtype="str")})
    as_object = pd.DataFrame({"k": pd.Series(values, dtype=object)})
    as_string = pd.DataFrame({"k": pd.Series(values, dtype="string")})
    assert as_str["k"].dtype != as_object["k"].dtype
    expected = hash_keys(as_object, ["k"]).tolist()
    assert hash_keys(as_str, ["k"]).tolist() == expected
    assert hash_keys(as_string, ["k"]).tolist() == expected


def test_missing_value_hashes_alike_whatever_the_column_holds() -> None:
    columns = [
        pd.Series(["a", None], dtype=object),
        pd.Series(["a", None], dtype="str"),
        pd.Series([1.5, np.nan]),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([pd.Timestamp("2022-01-01"), pd.NaT]),
        pd.Series([7, None], dtype=object),
    ]
    missing = {int(hash_keys(pd.DataFrame({"k": c}), ["k"])[1]) for c in columns}
    assert len(missing) == 1
    present = {int(hash_keys(pd.DataFrame({"k": c}), ["k"])[0]) for c in columns}
    assert missing.isdisjoint(present)


def test_composite_key_depends_on_column_order() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [2, 1]})
    ab, ba = hash_keys(df, ["a", "b"]), hash_keys(df, ["b", "a"])
    assert ab[0] != ba[0]
    # (1, 2) and (2, 1) are different records
    assert ab[0] != ab[1]
    assert ab[0] != hash_keys(df, ["a"])[0]


def test_composite_key_of_mixed_types() -> None:
    df = pd.DataFrame({"country": ["DE", "DE", "FR"], "n": [1, 2, 1]})
    got = hash_keys(df, ["country", "n"])
    assert len(set(got.tolist())) == 3
    again = hash_keys(df.iloc[[2, 0]].reset_index(drop=True), ["country", "n"])
    assert again.tolist() == [got[2], got[0]]


def test_dates_hash_like_their_csv_text() -> None:
    text = pd.DataFrame({"d": ["2022-01-01", "2023-06-30 10:30:00"]})
    parsed = pd.DataFrame({"d": pd.to_datetime(text["d"], format="ISO8601")})
    assert list(hash_keys(text, ["d"])) == list(hash_keys(parsed, ["d"]))


def test_booleans_hash_alike_with_and_without_a_gap() -> None:
    plain = pd.DataFrame({"b": [True, False]})
    gappy = pd.DataFrame({"b": pd.Series([True, False, None], dtype=object)})
    nullable = pd.DataFrame({"b": pd.array([True, False, None], dtype="boolean")})
    assert list(hash_keys(plain, ["b"])) == list(hash_keys(gappy, ["b"])[:2])
    assert list(hash_keys(gappy, ["b"])) == list(hash_keys(nullable, ["b"]))


def test_composite_key_does_not_collide_with_its_last_part() -> None:
    pair = pd.DataFrame({"a": [0, 0], "b": [5, 6]})
    single = pd.DataFrame({"b": [5, 6]})
    assert set(hash_keys(pair, ["a", "b"])).isdisjoint(set(hash_keys(single, ["b"])))


@pytest.mark.parametrize("k", [0, 1, 3, 50])
def test_member_mask_agrees_with_isin(k: int) -> None:
    from lester_dagster.frame.provenance import member_mask

    rng = np.random.default_rng(k)
    values = rng.integers(0, 2**63, size=500, dtype=np.uint64)
    wanted = np.concatenate(
        [rng.choice(values, size=k), rng.integers(0, 2**63, size=k, dtype=np.uint64)]
    ).astype(np.uint64)
    assert member_mask(values, wanted).tolist() == np.isin(values, wanted).tolist()
    assert member_mask(values, wanted).sum() >= min(k, 1)


@pytest.mark.parametrize("size", [0, 1, 2, 7, 1000])
@pytest.mark.parametrize("dtype", [np.uint64, np.intp, np.float64])
def test_sorted_unique_equals_np_unique(size: int, dtype: type) -> None:
    values = np.random.default_rng(size).integers(0, max(size // 3, 1) + 1, size).astype(dtype)
    got = sorted_unique(values)
    assert got.dtype == values.dtype
    assert np.array_equal(got, np.unique(values))
