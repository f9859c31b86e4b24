"""Sources: csv, Parquet, JSON lines and in-memory pandas frames, their keys and their errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import (
    DuplicateKeyError,
    LesterError,
    PlanError,
    SourceError,
    UnknownColumnError,
)
from lester_dagster.frame import Frame, from_pandas, read_csv, read_json, read_parquet

CUSTOMERS = pd.DataFrame(
    {
        "customer_id": [1, 2, 3, 4],
        "country": ["DE", "FR", "DE", "IT"],
        "level": ["gold", "basic", "basic", "gold"],
        "score": [0.5, 1.25, 2.0, 3.5],
    }
)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


READERS: dict[str, Callable[..., Frame]] = {
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".jsonl": read_json,
}


def rows(df: pd.DataFrame) -> list[tuple[object, ...]]:
    return sorted(df.itertuples(index=False, name=None))


# -- schema at build time, data at execute time ------------------------------------------------
@pytest.mark.parametrize("suffix", sorted(READERS))
def test_schema_at_build_time_data_at_execute_time(tmp_path: Path, suffix: str) -> None:
    path = write(CUSTOMERS, tmp_path / f"customers{suffix}")
    frame = READERS[suffix](path, key="customer_id")
    assert frame.columns == ["customer_id", "country", "level", "score"]
    assert frame.sources == ["customers"]
    # the file changes after the plan is built: execute reads the new content
    changed = pd.concat(
        [CUSTOMERS.iloc[1:], pd.DataFrame([[9, "ES", "gold", 4.0]], columns=CUSTOMERS.columns)],
        ignore_index=True,
    )
    write(changed, path)
    out = frame.execute().to_pandas()
    assert list(out.columns) == list(CUSTOMERS.columns)
    assert rows(out) == rows(changed)
    assert out["customer_id"].tolist() == [2, 3, 4, 9]


@pytest.mark.parametrize("suffix", sorted(READERS))
def test_name_defaults_to_file_stem(tmp_path: Path, suffix: str) -> None:
    path = write(CUSTOMERS, tmp_path / f"my_people{suffix}")
    assert READERS[suffix](path).sources == ["my_people"]
    assert READERS[suffix](path, name="people").sources == ["people"]


def test_from_pandas_copies_data_and_ignores_index() -> None:
    df = CUSTOMERS.set_index(pd.Index([10, 11, 12, 13]))
    frame = from_pandas(df, name="customers", key="customer_id")
    assert frame.columns == list(CUSTOMERS.columns)
    out = frame.execute().to_pandas()
    assert out.index.tolist() == [0, 1, 2, 3]
    assert rows(out) == rows(CUSTOMERS)


def test_from_pandas_needs_a_dataframe() -> None:
    with pytest.raises(PlanError, match="DataFrame"):
        from_pandas(CUSTOMERS["country"], name="c")  # type: ignore[arg-type]


def test_read_options_are_passed_to_pandas(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    CUSTOMERS.to_csv(path, index=False, sep=";")
    frame = read_csv(path, key="customer_id", sep=";")
    assert frame.columns == list(CUSTOMERS.columns)
    assert rows(frame.execute().to_pandas()) == rows(CUSTOMERS)


def test_parquet_columns_option(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.parquet")
    frame = read_parquet(path, key="customer_id", columns=["customer_id", "level"])
    assert frame.columns == ["customer_id", "level"]
    out = frame.execute().to_pandas()
    assert out["level"].tolist() == ["gold", "basic", "basic", "gold"]


# -- keys ----------------------------------------------------------------------------------------
def test_key_one_column() -> None:
    result = from_pandas(CUSTOMERS, name="c", key="customer_id").execute()
    assert [result.lineage.backward(i) for i in range(4)] == [{"c": [k]} for k in [1, 2, 3, 4]]
    assert result.lineage.forward("c", [3]) == [2]


def test_key_several_columns() -> None:
    df = pd.DataFrame({"country": ["DE", "DE", "FR"], "n": [1, 2, 1], "v": [7, 8, 9]})
    result = from_pandas(df, name="t", key=["country", "n"]).execute()
    assert result.lineage.backward(1) == {"t": [("DE", 2)]}
    assert result.lineage.forward("t", [("FR", 1), ("DE", 1)]) == [0, 2]
    assert len(set(result.prov.keys["t"].tolist())) == 3


def test_key_given_as_list_or_tuple_or_str_alike() -> None:
    a = from_pandas(CUSTOMERS, name="c", key="customer_id").execute().prov.keys["c"]
    b = from_pandas(CUSTOMERS, name="c", key=["customer_id"]).execute().prov.keys["c"]
    c = from_pandas(CUSTOMERS, name="c", key=("customer_id",)).execute().prov.keys["c"]
    assert a.tolist() == b.tolist() == c.tolist()


def test_no_key_content_hash() -> None:
    df = pd.DataFrame({"a": [1, 2, 1, 1], "b": ["x", "y", "x", "z"]})
    result = from_pandas(df, name="t").execute()
    ids = result.prov.keys["t"].tolist()
    assert ids[0] == ids[2]  # identical records share an id
    assert len({ids[0], ids[1], ids[3]}) == 3
    keys = [result.lineage.backward(i)["t"] for i in range(4)]
    assert all(len(k) == 1 for k in keys)
    assert all(re.fullmatch(r"[0-9a-f]{16}", k[0]) for k in keys)
    assert keys[0] == keys[2]
    assert int(keys[1][0], 16) == ids[1]
    # the hex key finds every record with that content
    assert result.lineage.forward("t", keys[0]) == [0, 2]


def test_content_hash_does_not_depend_on_row_position() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    first = from_pandas(df, name="t").execute().prov.keys["t"]
    other = from_pandas(df.iloc[::-1], name="t").execute().prov.keys["t"]
    assert first.tolist() == other.tolist()[::-1]


def test_content_hash_stable_when_the_record_with_a_gap_is_deleted(tmp_path: Path) -> None:
    # with the gap the csv column is float64, without it int64: the other ids must not change
    df = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"), "b": ["x", "y", "z"]})
    path = write(df, tmp_path / "t.csv")
    before = read_csv(path).execute().prov.keys["t"].tolist()
    write(df.iloc[[0, 2]], path)
    after = read_csv(path).execute().prov.keys["t"].tolist()
    assert after == [before[0], before[2]]


# -- key errors ----------------------------------------------------------------------------------
def test_duplicate_keys_name_examples() -> None:
    df = pd.DataFrame({"id": [1, 2, 2, 3, 3, 3], "v": range(6)})
    with pytest.raises(DuplicateKeyError, match=r"not unique") as info:
        from_pandas(df, name="t", key="id").execute()
    message = str(info.value)
    assert "'t'" in message
    assert "{'id': 2}" in message and "{'id': 3}" in message
    assert "{'id': 1}" not in message
    assert isinstance(info.value, ValueError)


def test_duplicate_composite_keys() -> None:
    df = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "y", "x"]})
    with pytest.raises(DuplicateKeyError, match=r"'a': 1, 'b': 'x'"):
        from_pandas(df, name="t", key=["a", "b"]).execute()
    # each column alone repeats, together they are unique
    from_pandas(df.iloc[:2], name="t", key=["a", "b"]).execute()


def test_missing_key_values() -> None:
    df = pd.DataFrame({"id": [1.0, np.nan, 3.0], "v": [1, 2, 3]})
    with pytest.raises(DuplicateKeyError, match=r"'id'.*1 missing"):
        from_pandas(df, name="t", key="id").execute()
    strs = pd.DataFrame({"id": ["a", None], "v": [1, 2]})
    with pytest.raises(DuplicateKeyError, match="missing"):
        from_pandas(strs, name="t", key="id").execute()


def test_unknown_key_column() -> None:
    with pytest.raises(UnknownColumnError, match="'cust_id'") as info:
        from_pandas(CUSTOMERS, name="c", key="cust_id")
    assert "customer_id" in str(info.value)  # shows the available columns
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownColumnError, match="'nope'"):
        from_pandas(CUSTOMERS, name="c", key=["customer_id", "nope"])


def test_unknown_key_column_in_file(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.parquet")
    with pytest.raises(UnknownColumnError, match="'id'"):
        read_parquet(path, key="id")


# -- file errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", sorted(READERS))
def test_missing_file(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(SourceError, match="no_such") as info:
        READERS[suffix](tmp_path / f"no_such{suffix}")
    assert isinstance(info.value, OSError)
    assert isinstance(info.value, LesterError)


def test_file_removed_after_build(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.csv")
    frame = read_csv(path, key="customer_id")
    path.unlink()
    with pytest.raises(SourceError, match=r"c\.csv"):
        frame.execute()
    with pytest.raises(OSError):
        frame.execute()


def test_file_losing_a_column_after_build(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.csv")
    frame = read_csv(path, key="customer_id")
    write(CUSTOMERS.drop(columns=["level"]), path)
    with pytest.raises(SourceError, match="'level'"):
        frame.execute()


# -- the same data through different formats ----------------------------------------------------
@pytest.mark.parametrize("key", ["customer_id", ["country", "customer_id"], None])
def test_csv_and_parquet_give_the_same_key_ids(tmp_path: Path, key: str | list[str] | None) -> None:
    csv_path = write(CUSTOMERS, tmp_path / "c.csv")
    # the Parquet file holds the same records, in another order
    parquet_path = write(CUSTOMERS.iloc[[2, 0, 3, 1]], tmp_path / "c.parquet")
    from_csv = read_csv(csv_path, key=key).execute()
    from_parquet = read_parquet(parquet_path, key=key).execute()
    from_memory = from_pandas(CUSTOMERS, name="c", key=key).execute()
    expected = sorted(from_memory.prov.keys["c"].tolist())
    assert sorted(from_csv.prov.keys["c"].tolist()) == expected
    assert sorted(from_parquet.prov.keys["c"].tolist()) == expected
    assert len(set(expected)) == 4
    # record by record: the same customer gets the same id
    by_id = dict(zip(from_csv.to_pandas()["customer_id"], from_csv.prov.keys["c"].tolist()))
    for cid, kid in zip(from_parquet.to_pandas()["customer_id"], from_parquet.prov.keys["c"]):
        assert by_id[cid] == kid


def test_json_lines_give_the_same_key_ids(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.jsonl")
    from_json = read_json(path, key="customer_id").execute()
    from_memory = from_pandas(CUSTOMERS, name="c", key="customer_id").execute()
    assert from_json.prov.keys["c"].tolist() == from_memory.prov.keys["c"].tolist()


# -- names ---------------------------------------------------------------------------------------
def test_two_sources_with_the_same_name_are_rejected(tmp_path: Path) -> None:
    a = write(CUSTOMERS, tmp_path / "a.csv")
    b = write(CUSTOMERS.rename(columns={"score": "points"}), tmp_path / "b.csv")
    left = read_csv(a, name="people", key="customer_id")
    right = read_csv(b, name="people", key="customer_id").rename({"country": "land"})
    with pytest.raises(PlanError, match="'people'"):
        left.union(read_csv(b, name="people").rename({"points": "score"}))
    with pytest.raises(PlanError, match="'people'"):
        left.select("customer_id", "country").join(
            right.select("customer_id", "land"), on="customer_id"
        )


def test_two_pandas_sources_with_the_same_name_are_rejected() -> None:
    a = from_pandas(CUSTOMERS, name="c", key="customer_id")
    b = from_pandas(CUSTOMERS, name="c", key="customer_id")
    with pytest.raises(PlanError, match="'c'"):
        a.union(b)


def test_the_same_file_read_twice_under_one_name_is_one_source(tmp_path: Path) -> None:
    path = write(CUSTOMERS, tmp_path / "c.csv")
    first = read_csv(path, key="customer_id")
    second = read_csv(path, key="customer_id")
    both = first.union(second)
    assert both.sources == ["c"]
    result = both.execute()
    assert len(result) == 8
    assert result.lineage.forward("c", [2]) == [1, 5]


@pytest.mark.parametrize("name", ["", "__x", 3])
def test_bad_source_names(name: object) -> None:
    with pytest.raises(PlanError):
        from_pandas(CUSTOMERS, name=name)  # type: ignore[arg-type]
