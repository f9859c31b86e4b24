"""Frames and provenance as Arrow tables: dtype restoration, reserved names, Prov layouts."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.frame import Prov
from lester_dagster.store.tables import (
    PROV_PREFIX,
    PROV_ROW,
    describe_columns,
    frame_of_table,
    prov_of_columns,
    prov_of_table,
    prov_summary,
    prov_table,
    read_parquet,
    split_prov_columns,
    table_of_frame,
    write_parquet,
)


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def through_parquet(table: pa.Table) -> pa.Table:
    buffer = io.BytesIO()
    write_parquet(table, buffer)
    return read_parquet(buffer.getvalue(), "test")


def round_trip(frame: pd.DataFrame) -> pd.DataFrame:
    table = through_parquet(table_of_frame(frame))
    return frame_of_table(table, len(frame), describe_columns(frame))


def test_object_columns_and_unused_categories_come_back() -> None:
    frame = pd.DataFrame(
        {
            "o": pd.Series(["a", None, "c"], dtype=object),
            "c": pd.Categorical(["x", "x", None], categories=["x", "y", "z"], ordered=True),
        }
    )
    back = round_trip(frame)
    assert back["o"].dtype == object and back["o"].tolist() == ["a", None, "c"]
    assert back["c"].dtype == frame["c"].dtype  # categories y and z are unused, still there
    pd.testing.assert_frame_equal(back, frame)


def test_a_frame_without_columns_keeps_its_length() -> None:
    frame = pd.DataFrame(index=pd.RangeIndex(4))
    assert len(round_trip(frame)) == 4


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"__lester_prov__x": [1]}), "reserved prefix"),
        (pd.DataFrame({1: [1]}), "must be strings"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "unique"),
        (pd.DataFrame({"m": pd.Series(["text", 1], dtype=object)}), "one type"),
    ],
)
def test_unstorable_frames_are_refused_with_a_fix(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(UnstorableError, match=message):
        table_of_frame(frame)


def test_single_prov_columns_split_off_the_data() -> None:
    table = pa.table(
        {"a": [1, 2], f"{PROV_PREFIX}s": pa.array(ids(5, 0), pa.uint64())}
    ).append_column(f"{PROV_PREFIX}t", pa.array(ids(7, 8), pa.uint64()))
    data, keys = split_prov_columns(table)
    assert data.column_names == ["a"]
    prov = prov_of_columns(2, keys, ("t", "s"))
    assert prov.sources == ("t", "s") and prov.single
    assert prov.keys["s"].tolist() == [5, 0] and prov.keys["s"].dtype == np.uint64


def test_multi_prov_round_trips_including_rows_without_monomials() -> None:
    offsets = np.array([0, 2, 2, 5], dtype=np.intp)  # row 1 has no monomial
    prov = Prov(3, {"a": ids(1, 2, 3, 4, 5), "b": ids(9, 0, 9, 0, 0)}, offsets)
    table = through_parquet(prov_table(prov))
    assert table.column_names == [PROV_ROW, f"{PROV_PREFIX}a", f"{PROV_PREFIX}b"]
    back = prov_of_table(table, 3, ("a", "b"), multi=True)
    assert back.offsets is not None and back.offsets.tolist() == offsets.tolist()
    assert [back.monomials(r) for r in range(3)] == [prov.monomials(r) for r in range(3)]


def test_single_prov_table_has_no_row_column() -> None:
    prov = Prov(2, {"a": ids(1, 2)})
    table = prov_table(prov)
    assert PROV_ROW not in table.column_names
    assert prov_of_table(table, 2, ("a",), multi=False).offsets is None


def test_damaged_prov_tables_are_reported() -> None:
    prov = Prov(2, {"a": ids(1, 2)})
    with pytest.raises(ArtifactError, match="lacks the key-id columns of sources \\['b'\\]"):
        prov_of_table(prov_table(prov), 2, ("a", "b"), multi=False)
    with pytest.raises(ArtifactError, match="without its"):
        prov_of_table(prov_table(prov), 2, ("a",), multi=True)
    unsorted = pa.table({PROV_ROW: [1, 0], f"{PROV_PREFIX}a": pa.array(ids(1, 2), pa.uint64())})
    with pytest.raises(ArtifactError, match="not sorted"):
        prov_of_table(unsorted, 2, ("a",), multi=True)


def test_prov_summary_counts_rows_per_source() -> None:
    single = Prov(3, {"a": ids(1, 2, 3), "b": ids(0, 7, 0)})
    assert prov_summary(single) == {
        "layout": "single",
        "monomials": 3,
        "rows_per_source": {"a": 3, "b": 1},
    }
    multi = Prov(2, {"a": ids(1, 2, 3), "b": ids(4, 5, 0)}, np.array([0, 2, 3]))
    assert prov_summary(multi)["rows_per_source"] == {"a": 2, "b": 1}  # row 0 counts once


def test_unreadable_parquet_names_the_file() -> None:
    with pytest.raises(ArtifactError, match=r"v1/data\.parquet is not a readable Parquet"):
        read_parquet(b"not parquet", "v1/data.parquet")
