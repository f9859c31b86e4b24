"""Stored key indexes and key resolution on loaded artifacts, checked against the frame's own
lineage (``Result.lineage``) on the same data."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lester_dagster.errors import UnknownKeyError, UnknownSourceError, UnstorableError
from lester_dagster.frame import Prov, Result, col, from_pandas
from lester_dagster.store.keys import (
    KeyResolver,
    key_index_of_table,
    key_index_table,
    key_indexes_to_store,
)

CUSTOMERS = pd.DataFrame(
    {"region": ["eu", "eu", "us"], "cid": [1, 2, 1], "name": ["ann", "bob", "cy"]}
)
NOTES = pd.DataFrame({"text": ["x", "y", "z", "y"]})  # no key: keyed by content hash


@pytest.fixture
def result() -> Result:
    customers = from_pandas(CUSTOMERS, name="customers", key=["region", "cid"])
    return customers.filter(col("name") != "bob").execute()


def through_parquet(index: pd.DataFrame) -> pd.DataFrame:
    buffer = io.BytesIO()
    pq.write_table(key_index_table(index), buffer)
    return key_index_of_table(pq.read_table(io.BytesIO(buffer.getvalue())), "test")


def test_key_index_round_trips_with_composite_keys(result: Result) -> None:
    index = result.sources["customers"].keys
    back = through_parquet(index)
    pd.testing.assert_frame_equal(back, index)
    assert back.index.dtype == np.uint64 and back.index.name == "key_id"


def test_only_referenced_keys_are_stored_by_default(result: Result) -> None:
    full = result.sources["customers"].keys
    stored = key_indexes_to_store(result.prov, result.sources)["customers"]
    assert len(full) == 3 and len(stored) == 2  # bob was filtered out
    assert set(stored.index) == set(result.prov.keys["customers"].tolist())
    assert len(key_indexes_to_store(result.prov, result.sources, "all")["customers"]) == 3
    assert key_indexes_to_store(result.prov, None) == {}


def test_referenced_keys_follow_provenance_changed_in_place(result: Result) -> None:
    """The mentioned keys of a provenance column are remembered for the same array (X, then y
    of the same rows), but not once its content changed."""
    full = result.sources["customers"].keys
    ids = full.index.to_numpy(dtype=np.uint64).copy()
    prov = Prov(3, {"customers": ids})
    assert len(key_indexes_to_store(prov, result.sources)["customers"]) == 3
    assert len(key_indexes_to_store(prov, result.sources)["customers"]) == 3
    ids[:] = ids[0]  # every row now mentions one customer
    stored = key_indexes_to_store(prov, result.sources)["customers"]
    assert list(stored.index) == [ids[0]]


def test_an_index_loses_exactly_the_keys_no_row_mentions_any_more() -> None:
    """After a deletion the index passed in still holds keys whose rows left (a deleted
    customer's mails): those, and only those, are dropped; the index keeps its order and rows
    mentioning a key several times count once."""
    rng = np.random.default_rng(7)
    ids = np.unique(rng.integers(1, 2**62, size=5_100, dtype=np.int64)).astype(np.uint64)[:5_000]
    rng.shuffle(ids)
    index = pd.DataFrame(
        {"mail_id": np.arange(5_000)}, index=pd.Index(ids, dtype=np.uint64, name="key_id")
    )
    gone = {3, 4_999, 1_234}
    rows = np.array([i for i in range(5_000) if i not in gone] + [10, 10, 20])  # repeats
    prov = Prov(len(rows), {"mails": ids[rows]})
    stored = key_indexes_to_store(prov, {"mails": index})["mails"]
    expected = index[~np.isin(np.arange(5_000), sorted(gone))]
    pd.testing.assert_frame_equal(stored, expected)
    everyone = Prov(5_000, {"mails": ids[::-1].copy()})
    assert key_indexes_to_store(everyone, {"mails": index})["mails"] is index


def test_bad_key_index_arguments_are_refused(result: Result) -> None:
    with pytest.raises(UnstorableError, match="'referenced' or 'all'"):
        key_indexes_to_store(result.prov, result.sources, "some")  # type: ignore[arg-type]
    bad = {"customers": CUSTOMERS}  # indexed by position, not key id
    with pytest.raises(UnstorableError, match="uint64 key ids"):
        key_indexes_to_store(result.prov, bad)


def test_the_resolver_agrees_with_the_frames_lineage(result: Result) -> None:
    stored = key_indexes_to_store(result.prov, result.sources)  # the referenced keys only
    resolver = KeyResolver({"customers": through_parquet(stored["customers"])})
    keys = [("eu", 1), ("us", 1)]
    expected = result.lineage.key_ids("customers", keys)
    assert resolver("customers", keys).tolist() == expected.tolist()
    assert resolver.keys_of("customers", expected) == keys
    # bob is not in this artifact: dropped, or an error when strict
    assert resolver("customers", [("eu", 2)]).tolist() == []
    with pytest.raises(UnknownKeyError, match="no record with key"):
        resolver("customers", [("eu", 2)], strict=True)
    with pytest.raises(UnknownKeyError, match="2 value"):
        resolver("customers", [1])
    with pytest.raises(UnknownSourceError):
        resolver("mails", [1])


def test_content_hash_keys_resolve_from_hex() -> None:
    notes = from_pandas(NOTES, name="notes").execute()
    resolver = KeyResolver({"notes": through_parquet(notes.sources["notes"].keys)})
    hexes = notes.lineage.backward(0)["notes"]
    assert resolver("notes", hexes).tolist() == notes.lineage.key_ids("notes", hexes).tolist()
    assert resolver.keys_of("notes", resolver("notes", hexes)) == hexes
