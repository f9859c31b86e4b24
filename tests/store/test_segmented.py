"""What artifacts store in row segments (store.segmented): frames of numbers and pyarrow-backed
text read back exactly (or are refused, and pickled or written as Parquet instead), their empty
schema, the key indexes of X, y and frames cut by key id, and a model state's shared frames and
per-row buffers - a deletion rewrites only the segments that held the removed rows, the others
are hard links of the previous version's files, and once that version is collected no file
holds the removed rows."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError
from lester_dagster.features import FeatureMatrix, Labels
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.store import (
    collect_garbage,
    load_key_indexes,
    read_manifest,
    segmented,
    segments,
)
from lester_dagster.store.artifacts import (
    load_frame,
    load_labels,
    load_matrix,
    load_object,
    save_frame,
    save_labels,
    save_matrix,
    save_object,
)
from lester_dagster.store.manifest import Manifest
from lester_dagster.store.probe import load_empty_frame, load_provenance

Ids = npt.NDArray[np.uint64]

N_KEYS = 5000
"""Keys of the key index a deletion removes three of."""

N_ROWS = 9000
"""Training rows of the model state: a per-row float64 array is 72,000 bytes, above
:data:`segmented.ROW_BUFFER_BYTES` (64 KiB), so it goes to row segments."""

REMOVED = 1234
"""The training row (and key) a deletion removes; it holds distinctive values everywhere."""
ODD = 123456.789  # X: a sparse column of the removed row
ODD_AMOUNT = 4242.4242  # the frame's numeric column
ODD_TEXT = "forget-me: Zürich 🙂"  # the frame's text column (no other row holds it)
ODD_MARGIN = 98765.4321  # the per-row float array
ODD_COUNT = 777_777_777_777  # the per-row int array
MAIL_BASE = 7_000_000_000_000
"""Key values (``mail_id``) are ``MAIL_BASE + i * 1_000_003``: each one distinctive as bytes."""


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many segments for a few thousand rows (instead of one with the default target)."""
    monkeypatch.setattr(segments, "SEGMENT_ROWS", 64)


# -- helpers -------------------------------------------------------------------------------------
class _Memory:
    """A :class:`segmented.Segmenter` that keeps the segment files' bytes in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def segments(
        self, prefix: str, rows: segments.Rows, ends: npt.NDArray[np.intp]
    ) -> dict[str, Any]:
        encoded = segments.encode(rows, ends)
        names = []
        for i, segment in enumerate(encoded):
            out = io.BytesIO()
            segment.write(out)
            name = f"{prefix}.{i:05d}"
            self.files[name] = out.getvalue()
            names.append(name)
        return segments.spec(rows, encoded, names)


def _stored(
    frame: pd.DataFrame, ends: Sequence[int] | npt.NDArray[np.intp] | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``frame`` in segments ending at ``ends`` (default: one segment): the description, through
    JSON as the manifest keeps it, and the files' bytes."""
    stored = segmented.frame_rows(frame)
    assert stored is not None
    rows, described = stored
    cuts = np.asarray([len(frame)] if ends is None else ends, dtype=np.intp)
    memory = _Memory()
    spec = segmented.frame_segments(memory, "frame", rows, described, cuts)
    return json.loads(json.dumps(spec)), memory.files


def _round_trip(
    frame: pd.DataFrame, ends: Sequence[int] | npt.NDArray[np.intp] | None = None
) -> pd.DataFrame:
    spec, files = _stored(frame, ends)
    return segmented.read_frame(spec, files, "test")


def _ids(n: int, seed: int = 0) -> Ids:
    """n distinct, shuffled key ids (some above 2**63)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E37_79B9_7F4A_7C15 // max(n, 1))
    return rng.permutation(ids)


def _texts(n: int) -> list[str | None]:
    return [None if i % 11 == 5 else f"mail {i:05d} from Zürich" for i in range(n)]


def _key_index(ids: Ids, columns: str = "numeric") -> pd.DataFrame:
    """A key index of ``ids`` (indexed by uint64 key id, named key_id): a distinctive int64
    ``mail_id`` per key ("numeric"), an ``email`` of pandas' default ``str`` ("text"), both, or
    an object column of text ("object")."""
    n = len(ids)
    data: dict[str, Any] = {}
    if columns in ("numeric", "both"):
        data["mail_id"] = MAIL_BASE + np.arange(n, dtype=np.int64) * 1_000_003
    if columns in ("text", "both"):
        data["email"] = pd.array([f"user{i:05d}@exämple.org" for i in range(n)], dtype="str")
    if columns == "object":
        data["email"] = [f"user{i:05d}@example.org" for i in range(n)]
    keys = pd.DataFrame(data, index=pd.Index(ids, dtype=np.uint64, name="key_id"))
    if columns == "object":
        keys["email"] = keys["email"].astype(object)
        assert keys["email"].dtype == object
    return keys


def _mixed(n: int = 40) -> pd.DataFrame:
    """A frame of every kind of column that is stored in segments, with missing values, empty
    strings, non-ASCII text and extreme numbers; rows 10 to 16 hold only missing or empty text."""
    rng = np.random.default_rng(3)
    i64 = rng.integers(-(10**12), 10**12, size=n)
    i64[:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]
    f64 = rng.normal(size=n)
    f64[[1, 4, 12]] = np.nan
    f64[[2, 3]] = [-0.0, np.inf]
    text: list[Any] = [f"row {i}" for i in range(n)]
    text[0:6] = ["", None, "Zürich", "🙂 emoji", "日本語テキスト", "a" * 300]
    text[10:17] = [None, "", None, None, "", "", None]
    tagged: list[Any] = [f"t{i}" if i % 3 else "" for i in range(n)]
    tagged[1], tagged[7] = pd.NA, "naïve"
    tagged[10:17] = [pd.NA, "", pd.NA, "", pd.NA, pd.NA, ""]
    return pd.DataFrame(
        {
            "i64": i64.astype(np.int64),
            "i8": (np.arange(n) % 256 - 128).astype(np.int8),
            "u64": np.arange(n, dtype=np.uint64) * np.uint64(2**58),
            "f64": f64,
            "f32": rng.normal(size=n).astype(np.float32),
            "flag": np.arange(n) % 3 == 0,
            "text": pd.Series(text, dtype="str"),
            "tagged": pd.Series(tagged, dtype="string[pyarrow]"),
        }
    )


def _segment_files(root: Path, prefix: str | None = None) -> dict[str, Path]:
    """The segment files of the committed version of ``root`` whose manifest names are
    ``<prefix>.<i>`` (every segment file when ``prefix`` is None), by name."""
    return {
        name: root / entry.path
        for name, entry in read_manifest(root).files.items()
        if (prefix is None or name.rsplit(".", 1)[0] == prefix)
        and segments.ADDRESSED.search(entry.path)
    }


def _inodes(files: Mapping[str, Path]) -> set[int]:
    return {os.stat(p).st_ino for p in files.values()}


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _found(root: Path, needle: bytes) -> list[Path]:
    """The files under ``root`` that hold ``needle`` (at any byte position)."""
    return [p for p in _files_under(root) if needle in p.read_bytes()]


def _assert_same_csr(got: Any, want: Any) -> None:
    assert got.format == "csr" and got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


# -- frames: round trip --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ends",
    [
        None,  # one segment
        [3, 4, 10, 17, 25, 40],  # arbitrary cuts; rows 10..16 hold only missing / empty text
        list(range(1, 41)),  # one row per segment
        "content",  # content-defined cuts, as a key index is cut
    ],
    ids=["one", "arbitrary", "single-rows", "content"],
)
def test_a_frame_of_numbers_and_text_reads_back_exactly(ends: Any) -> None:
    frame = _mixed()
    if ends == "content":
        ends = segments.cut(_ids(40), 4)
        assert len(ends) > 3
    back = _round_trip(frame, ends)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert list(back.dtypes) == list(frame.dtypes)
    assert back["text"].dtype.na_value is np.nan  # type: ignore[union-attr]
    assert back["tagged"].dtype.na_value is pd.NA  # type: ignore[union-attr]
    assert back["text"].isna().tolist() == frame["text"].isna().tolist()
    assert back["tagged"].tolist()[10:17] == frame["tagged"].tolist()[10:17]
    assert back.loc[3, "text"] == "🙂 emoji" and back.loc[4, "text"] == "日本語テキスト"
    assert isinstance(back.index, pd.RangeIndex) and back.index.equals(frame.index)


def test_the_segment_of_only_missing_and_empty_text_holds_no_text_bytes() -> None:
    frame = _mixed()
    spec, files = _stored(frame, [10, 17, 40])
    layout = spec["segments"][1]["layout"]
    for key in ("c6", "c7"):  # text, tagged
        assert layout[f"{key}.values"][2] == [0]
        np.testing.assert_array_equal(
            np.frombuffer(
                files[spec["segments"][1]["file"]],
                dtype=np.dtype(layout[f"{key}.valid"][1]),
                count=7,
                offset=layout[f"{key}.valid"][0],
            ),
            frame.iloc[10:17, int(key[1:])].notna().to_numpy(),
        )
    pd.testing.assert_frame_equal(segmented.read_frame(spec, files, "t"), frame, check_exact=True)


@pytest.mark.parametrize("start", [3, 39])
def test_a_sliced_frame_reads_back_with_its_row_labels(start: int) -> None:
    """A slice starts its text in the middle of pyarrow's buffers and its index at ``start``."""
    frame = _mixed().iloc[start:]
    arrow = pa.array(frame["text"].array)
    chunk = arrow.chunk(0) if isinstance(arrow, pa.ChunkedArray) else arrow
    assert chunk.offset == start
    back = _round_trip(frame, [1, len(frame)] if len(frame) > 1 else None)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.index.tolist() == list(range(start, 40))
    assert back.index.dtype == np.int64


def test_a_taken_frame_reads_back_with_its_row_labels() -> None:
    frame = _mixed().iloc[[30, 2, 11, 2, 0]]  # reordered, repeated rows: an int64 index
    back = _round_trip(frame, [2, 5])
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_index_type=True)


def test_a_key_index_reads_back_with_its_uint64_key_ids() -> None:
    ids = _ids(300)
    assert int(ids.max()) > 2**63
    keys = _key_index(ids, "both")
    keys.loc[keys.index[7], "email"] = None
    back = _round_trip(keys, segmented.key_ends(ids))
    pd.testing.assert_frame_equal(back, keys, check_exact=True, check_index_type=True)
    assert back.index.name == "key_id" and back.index.dtype == np.uint64
    np.testing.assert_array_equal(back.index.to_numpy(), ids)


@pytest.mark.parametrize("index", ["range", "key_id"])
def test_a_frame_without_rows_reads_back(index: str) -> None:
    frame = _mixed().iloc[:0]
    if index == "key_id":
        frame = frame.set_axis(pd.Index(np.zeros(0, np.uint64), name="key_id"), axis=0)
    for ends in (np.zeros(0, dtype=np.intp), [0]):  # no segment, or one without rows
        back = _round_trip(frame, ends)
        pd.testing.assert_frame_equal(back, frame, check_exact=True, check_index_type=True)
        assert list(back.dtypes) == list(frame.dtypes)


def test_text_held_in_32_bit_offsets_and_several_chunks_reads_back() -> None:
    small = pa.chunked_array([pa.array(["a", None, "Zürich"], pa.string())])
    chunked = pd.concat([pd.Series(["x", None]), pd.Series(["", "🙂"])], ignore_index=True)
    frame = pd.DataFrame(
        {"small": pd.Series(pd.arrays.ArrowStringArray(small)), "chunked": chunked[:3]}
    )
    back = _round_trip(frame, [1, 3])
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


def test_read_numeric_columns_are_writable_copies() -> None:
    frame = _mixed()
    spec, files = _stored(frame, [10, 40])
    back = segmented.read_frame(spec, files, "t")
    for name in ("i64", "i8", "u64", "f64", "f32", "flag"):
        assert np.asarray(back[name].array).flags.writeable, name
    np.asarray(back["i64"].array)[0] = 5
    pd.testing.assert_frame_equal(segmented.read_frame(spec, files, "t"), frame, check_exact=True)


# -- frames that are not stored in segments ------------------------------------------------------
REFUSED: dict[str, pd.DataFrame] = {
    "object column": pd.DataFrame({"a": pd.Series(["x", "y"], dtype=object)}),
    "category column": pd.DataFrame({"a": pd.Categorical(["x", "y"])}),
    "python string column": pd.DataFrame(
        {"a": pd.Series(["x", None], dtype=pd.StringDtype("python"))}
    ),
    "python str column": pd.DataFrame(
        {"a": pd.Series(["x", None], dtype=pd.StringDtype("python", na_value=np.nan))}
    ),
    "arrow dtype text": pd.DataFrame(
        {"a": pd.Series(["x", None], dtype=pd.ArrowDtype(pa.string()))}
    ),
    "nullable ints": pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}),
    "datetime64[ns] column": pd.DataFrame({"a": pd.date_range("2024-01-01", periods=2)}),
    "timedelta column": pd.DataFrame({"a": pd.to_timedelta([1, 2], unit="s")}),
    "complex column": pd.DataFrame({"a": np.array([1j, 2.0])}),
    "string index": pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], dtype="str")),
    "datetime index": pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2024-01-01", periods=2)),
    "multi index": pd.DataFrame(
        {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, 2), (3, 4)], names=["p", "q"])
    ),
    "int column names": pd.DataFrame({0: [1, 2], 1: [3.0, 4.0]}),
    "tuple column names": pd.DataFrame({("a", "b"): [1, 2]}),
    "one refused column among good ones": pd.DataFrame(
        {"n": [1, 2], "s": ["x", "y"], "o": pd.Series([{"k": 1}, None], dtype=object)}
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_frames_of_other_columns_or_indexes_are_not_segmented(case: str) -> None:
    assert segmented.frame_rows(REFUSED[case]) is None


# -- empty frames (probes) -----------------------------------------------------------------------
@pytest.mark.parametrize("case", ["mixed", "sliced", "key index", "no rows"])
def test_the_empty_frame_has_the_stored_dtypes_and_index(case: str) -> None:
    frame = {
        "mixed": _mixed(),
        "sliced": _mixed().iloc[5:],
        "key index": _key_index(_ids(50), "both"),
        "no rows": _key_index(_ids(0), "both"),
    }[case]
    spec, _ = _stored(frame)
    empty = segmented.empty_frame(spec)
    assert len(empty) == 0
    assert list(empty.columns) == list(frame.columns)
    assert list(empty.dtypes) == list(frame.dtypes)
    assert empty.index.dtype == frame.index.dtype and empty.index.name == frame.index.name
    pd.testing.assert_frame_equal(empty, frame.iloc[:0])


# -- faithful round trips --------------------------------------------------------------------
def test_duplicate_column_names_read_back() -> None:
    frame = pd.DataFrame([[1, 2.5], [3, 4.5]], columns=["a", "a"])
    stored = segmented.frame_rows(frame)
    back = None if stored is None else _round_trip(frame)
    assert back is None or back.shape == frame.shape  # refused, or read back whole
    if back is not None:
        pd.testing.assert_frame_equal(back, frame, check_exact=True)


def test_the_name_of_a_default_range_index_reads_back() -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(2, name="row"))
    spec, files = _stored(frame)
    assert segmented.read_frame(spec, files, "t").index.name == "row"
    assert segmented.empty_frame(spec).index.name == "row"


def test_the_name_of_the_columns_axis_reads_back() -> None:
    frame = pd.DataFrame({"a": [1, 2]}).rename_axis(columns="feature")
    pd.testing.assert_frame_equal(_round_trip(frame), frame, check_exact=True)


# -- key indexes of X, y and frames --------------------------------------------------------------
def _rows_of(ids: Ids) -> tuple[Prov, Any]:
    """Single provenance of one row per key (the keys in another order) and an X of them."""
    order = np.random.default_rng(5).permutation(len(ids))
    prov = Prov(len(ids), {"mails": ids[order]})
    X = sp.random(len(ids), 6, density=0.4, format="csr", random_state=4)
    return prov, X


def _save(kind: str, root: Path, prov: Prov, X: Any, keys: pd.DataFrame) -> Manifest:
    sources = {"mails": keys}
    if kind == "matrix":
        return save_matrix(root, FeatureMatrix(X, prov, (), KeyResolver({})), sources=sources)
    if kind == "labels":
        y = (np.arange(prov.n) % 3).astype(np.int8)
        return save_labels(root, Labels(y, prov, ("level",), frozenset()), sources=sources)
    data = pd.DataFrame({"amount": np.arange(prov.n, dtype=np.float64) / 8})
    return save_frame(root, data, prov, sources=sources)


def _loaded_key_indexes(kind: str, root: Path) -> Mapping[str, pd.DataFrame]:
    if kind == "matrix":
        return load_matrix(root).key_indexes
    if kind == "labels":
        return load_labels(root).key_indexes
    return load_frame(root).key_indexes


@pytest.mark.parametrize("columns", ["numeric", "text", "both"])
@pytest.mark.parametrize("kind", ["matrix", "labels", "frame"])
def test_key_indexes_are_row_segments_and_read_back_exactly(
    tmp_path: Path, kind: str, columns: str, small_segments: None
) -> None:
    ids = _ids(700)
    keys = _key_index(ids, columns)
    prov, X = _rows_of(ids)
    manifest = _save(kind, tmp_path, prov, X, keys)
    described = manifest.content["key_indexes"]["mails"]
    assert isinstance(described, dict) and described["layout"] == "frame"
    files = _segment_files(tmp_path, "keys-0")
    assert len(files) == len(described["segments"]) > 3
    assert all(p.name.startswith("keys-0-") and p.suffix == ".bin" for p in files.values())
    assert "keys-0" not in manifest.files
    for loaded in (_loaded_key_indexes(kind, tmp_path), load_key_indexes(tmp_path)):
        assert set(loaded) == {"mails"}
        pd.testing.assert_frame_equal(
            loaded["mails"], keys, check_exact=True, check_index_type=True
        )
    key_ids = load_provenance(tmp_path).key_ids["mails"]
    assert key_ids.dtype == np.uint64
    np.testing.assert_array_equal(key_ids, ids)
    if kind == "frame":
        _, _, empty, _ = load_empty_frame(tmp_path)
        pd.testing.assert_frame_equal(empty["mails"], keys.iloc[:0], check_index_type=True)
        assert list(empty["mails"].dtypes) == list(keys.dtypes)


@pytest.mark.parametrize("kind", ["matrix", "labels", "frame"])
def test_a_key_index_of_object_columns_is_written_as_parquet(tmp_path: Path, kind: str) -> None:
    ids = _ids(50)
    keys = _key_index(ids, "object")
    prov, X = _rows_of(ids)
    manifest = _save(kind, tmp_path, prov, X, keys)
    assert manifest.content["key_indexes"]["mails"] == "keys-0"
    assert manifest.files["keys-0"].path.endswith("/keys-0.parquet")
    assert not _segment_files(tmp_path, "keys-0")
    for loaded in (
        _loaded_key_indexes(kind, tmp_path)["mails"],
        load_key_indexes(tmp_path)["mails"],
    ):
        assert loaded["email"].tolist() == keys["email"].tolist()
        assert loaded.index.dtype == np.uint64 and loaded.index.name == "key_id"
        np.testing.assert_array_equal(loaded.index.to_numpy(), ids)
    np.testing.assert_array_equal(load_provenance(tmp_path).key_ids["mails"], ids)
    if kind == "frame":
        _, _, empty, _ = load_empty_frame(tmp_path)
        assert len(empty["mails"]) == 0 and list(empty["mails"].columns) == ["email"]
        assert empty["mails"].index.dtype == np.uint64


@pytest.mark.usefixtures("small_segments")
@pytest.mark.parametrize("kind", ["matrix", "frame"])
def test_deleting_keys_rewrites_only_their_key_index_segments(tmp_path: Path, kind: str) -> None:
    ids = _ids(N_KEYS)
    keys = _key_index(ids, "both")
    prov, X = _rows_of(ids)
    _save(kind, tmp_path, prov, X, keys)
    old = _segment_files(tmp_path, "keys-0")
    before = read_manifest(tmp_path).content["key_indexes"]["mails"]["segments"]
    assert len(old) > 40
    gone_at = [100, 2500, 4900]  # positions in the key index
    gone = ids[gone_at]
    keep_rows = np.flatnonzero(~np.isin(prov.keys["mails"], gone))
    smaller = keys.drop(index=pd.Index(gone, dtype=np.uint64))
    _save(kind, tmp_path, prov.take(keep_rows), X[keep_rows], smaller)

    files = _segment_files(tmp_path, "keys-0")
    now = read_manifest(tmp_path).content["key_indexes"]["mails"]["segments"]
    old_inodes = _inodes(old)
    new = {name for name, p in files.items() if os.stat(p).st_ino not in old_inodes}
    for name, path in files.items():  # new: written; the others: the old version's files
        assert os.stat(path).st_nlink == (1 if name in new else 2), name
    assert 1 <= len(new) <= 2 * len(gone), sorted(new)
    # the segments that held a removed key are all gone; every other one is linked unless the
    # removal changed where it starts or ends (it merged with the segment of a removed key)
    starts = np.cumsum([0] + [s["rows"] for s in before])
    holders = {int(np.searchsorted(starts, g, side="right")) - 1 for g in gone_at}
    old_prints = [s["fingerprint"] for s in before]
    now_prints = {s["fingerprint"] for s in now}
    assert not {old_prints[h] for h in holders} & now_prints
    kept = len(set(old_prints) & now_prints)
    assert kept == len(files) - len(new) >= len(old) - 2 * len(gone)
    pd.testing.assert_frame_equal(load_key_indexes(tmp_path)["mails"], smaller, check_exact=True)
    np.testing.assert_array_equal(
        load_provenance(tmp_path).key_ids["mails"], smaller.index.to_numpy()
    )

    mail_ids = [np.int64(v).tobytes() for v in keys["mail_id"].to_numpy()[gone_at]]
    emails = [keys["email"].iloc[g].encode() for g in gone_at]
    key_ids = [np.uint64(v).tobytes() for v in gone]
    for needle in (*mail_ids, *emails, *key_ids):  # the previous version still holds them ...
        assert _found(tmp_path, needle), needle
    collect_garbage(tmp_path)
    for needle in (*mail_ids, *emails, *key_ids):  # ... and once it is collected, no file does
        assert not _found(tmp_path, needle), needle
    pd.testing.assert_frame_equal(load_key_indexes(tmp_path)["mails"], smaller, check_exact=True)


# -- a model state's shared frames and per-row buffers -------------------------------------------
@dataclass
class _State:
    """What a model's forgetting state holds: X, the training rows' frame, per-row arrays, a
    small matrix, a key index; ``again`` refers to X and the frame a second time."""

    X: Any
    frame: pd.DataFrame
    margins: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    hessian: npt.NDArray[np.float64]
    keys: pd.DataFrame
    again: dict[str, Any] = field(default_factory=dict)


def _training(n: int = N_ROWS) -> tuple[_State, Prov]:
    """A state of ``n`` training rows (one per key, keys in the rows' order) with distinctive
    values in row :data:`REMOVED`."""
    rng = np.random.default_rng(11)
    ids = _ids(n, seed=2)
    scaled = rng.normal(size=(n, 1))
    sparse = sp.random(n, 30, density=0.05, format="csr", random_state=12)
    X = sp.hstack([sp.csr_matrix(scaled), sparse], format="lil")
    X[REMOVED, 17] = ODD
    X = X.tocsr()
    text = pd.Series(_texts(n), dtype="str")
    text[REMOVED] = ODD_TEXT
    amount = rng.normal(size=n)
    amount[REMOVED] = ODD_AMOUNT
    frame = pd.DataFrame(
        {"amount": amount, "level": (np.arange(n) % 5).astype(np.int64), "text": text}
    )
    margins = rng.normal(size=n)
    margins[REMOVED] = ODD_MARGIN
    counts = np.arange(n, dtype=np.int64) * 3
    counts[REMOVED] = ODD_COUNT
    d = X.shape[1]
    hessian = rng.normal(size=(d, d)) + np.arange(d * d).reshape(d, d)
    keys = _key_index(ids, "both")
    state = _State(X, frame, margins, counts, hessian, keys)
    state.again.update({"frame": frame, "X": X})
    return state, Prov(n, {"mails": ids})


def _without(state: _State, prov: Prov, row: int) -> tuple[_State, Prov]:
    keep = np.delete(np.arange(prov.n), row)
    frame = state.frame.iloc[keep].reset_index(drop=True)
    X = state.X[keep]
    smaller = _State(
        X,
        frame,
        state.margins[keep],
        state.counts[keep],
        state.hessian * 0.5,
        state.keys.iloc[keep],
    )
    smaller.again.update({"frame": frame, "X": X})
    return smaller, prov.take(keep)


def _save_state(root: Path, state: _State, prov: Prov) -> Manifest:
    """X_train (with its key index), then the model state (as the IO manager stores them)."""
    matrix = FeatureMatrix(state.X, prov, (), KeyResolver({}))
    save_matrix(root / "X_train", matrix, sources={"mails": state.keys})
    shared = {"X": state.X, "frame": state.frame, "keys0": state.keys}
    return save_object(root / "model", state, shared=shared, row_prov=prov)


def _assert_same_state(got: _State, want: _State) -> None:
    assert isinstance(got, _State)
    _assert_same_csr(got.X, want.X)
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    pd.testing.assert_frame_equal(got.keys, want.keys, check_exact=True)
    for name in ("margins", "counts", "hessian"):
        mine, theirs = getattr(got, name), getattr(want, name)
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, name
        np.testing.assert_array_equal(mine, theirs)
    assert got.again["frame"] is got.frame and got.again["X"] is got.X


@pytest.mark.usefixtures("small_segments")
def test_a_model_state_stores_its_frames_and_per_row_arrays_in_segments(tmp_path: Path) -> None:
    state, prov = _training()
    manifest = _save_state(tmp_path, state, prov)
    content = manifest.content
    assert content["shared"]["X"]["encoding"] == "segments"
    for name in ("frame", "keys0"):
        assert content["shared"][name]["layout"] == "frame", name
        assert content["shared"][name]["rows"] == N_ROWS, name
        assert _segment_files(tmp_path / "model", f"shared-{name}"), name
    # both per-row arrays (8 bytes a row each), and nothing else, are row buffers
    by_rows = content["row_buffers"]
    assert by_rows is not None and by_rows["rows"] == N_ROWS
    assert sorted(spec[1] for spec in by_rows["arrays"].values()) == [[8], [8]]
    assert _segment_files(tmp_path / "model", "rows")
    # buffers.bin holds the small matrix, not the per-row arrays, X or the frames
    buffers = (tmp_path / "model" / manifest.files["buffers"].path).read_bytes()
    assert state.hessian.tobytes() in buffers
    assert len(buffers) < state.margins.nbytes
    assert state.margins[:100].tobytes() not in buffers
    # X_train's key index and the state's are cut alike: the state links X_train's files
    linked = _segment_files(tmp_path / "model", "shared-keys0")
    assert _inodes(linked) == _inodes(_segment_files(tmp_path / "X_train", "keys-0"))
    assert _inodes(_segment_files(tmp_path / "model", "shared-X")) == _inodes(
        _segment_files(tmp_path / "X_train", "X")
    )
    _assert_same_state(load_object(tmp_path / "model").value, state)


@pytest.mark.usefixtures("small_segments")
def test_loaded_per_row_arrays_and_frame_columns_are_writable(tmp_path: Path) -> None:
    state, prov = _training()
    _save_state(tmp_path, state, prov)
    back = load_object(tmp_path / "model").value
    assert back.margins.flags.writeable and back.counts.flags.writeable
    assert back.hessian.flags.writeable and back.X.data.flags.writeable
    for frame, names in ((back.frame, ("amount", "level")), (back.keys, ("mail_id",))):
        for name in names:
            assert np.asarray(frame[name].array).flags.writeable, name
    back.margins[:] = 0.0  # a copy: the stored files do not change
    np.asarray(back.frame["amount"].array)[:] = 0.0
    _assert_same_state(load_object(tmp_path / "model").value, state)


@pytest.mark.usefixtures("small_segments")
def test_removing_a_training_row_rewrites_few_segments_and_collecting_leaves_none_of_it(
    tmp_path: Path,
) -> None:
    state, prov = _training()
    _save_state(tmp_path, state, prov)
    model = tmp_path / "model"
    old = _segment_files(model)
    old_inodes = _inodes(old)
    assert len(old) > 100
    smaller, fewer = _without(state, prov, REMOVED)
    _save_state(tmp_path, smaller, fewer)

    files = _segment_files(model)
    new = {name for name, p in files.items() if os.stat(p).st_ino not in old_inodes}
    linked = {name for name, p in files.items() if os.stat(p).st_nlink >= 2}
    assert len(linked) >= len(files) - len(new) >= 0.9 * len(files), sorted(new)
    for prefix in ("shared-X", "shared-frame", "shared-keys0", "rows"):
        mine = {name for name in new if name.rsplit(".", 1)[0] == prefix}
        assert 1 <= len(mine) <= 2, (prefix, sorted(mine))
    # X's changed segments are X_train's new files (linked, not written twice)
    assert _inodes(_segment_files(model, "shared-X")) == _inodes(
        _segment_files(tmp_path / "X_train", "X")
    )
    _assert_same_state(load_object(model).value, smaller)

    needles = {
        "X": np.float64(ODD).tobytes(),
        "amount": np.float64(ODD_AMOUNT).tobytes(),
        "text": ODD_TEXT.encode(),
        "margins": np.float64(ODD_MARGIN).tobytes(),
        "counts": np.int64(ODD_COUNT).tobytes(),
        "mail_id": np.int64(state.keys["mail_id"].iloc[REMOVED]).tobytes(),
        "key id": prov.keys["mails"][REMOVED].tobytes(),
    }
    for what, needle in needles.items():  # the previous version still holds the row ...
        assert _found(model, needle), what
    collect_garbage(model)
    for what, needle in needles.items():  # ... and once it is collected, no file does
        assert not _found(model, needle), what
    _assert_same_state(load_object(model).value, smaller)


@pytest.mark.usefixtures("small_segments")
def test_a_state_key_index_in_another_order_than_the_rows_is_cut_by_key_id(
    tmp_path: Path,
) -> None:
    """A state's key index of as many keys as it has rows, but in the source's order (not the
    training rows', as X_train's stored key index is): cut where its key ids say, as X_train's
    key index is (the state links its files), and a deletion rewrites its segments around the
    removed key only."""
    state, prov = _training()
    state.keys = state.keys.iloc[::-1]  # the source's order: another one than the rows'
    _save_state(tmp_path, state, prov)
    model = tmp_path / "model"
    mine = _inodes(_segment_files(model, "shared-keys0"))
    theirs = _inodes(_segment_files(tmp_path / "X_train", "keys-0"))
    smaller, fewer = _without(state, prov, REMOVED)
    removed = prov.keys["mails"][REMOVED]
    smaller.keys = state.keys.drop(index=pd.Index([removed], dtype=np.uint64))
    _save_state(tmp_path, smaller, fewer)
    files = _segment_files(model, "shared-keys0")
    new = {name for name, p in files.items() if os.stat(p).st_ino not in mine}
    _assert_same_state(load_object(model).value, smaller)
    assert 1 <= len(new) <= 2, f"{len(new)} of {len(files)} key segments rewritten"
    assert mine == theirs


# -- compressed text ----------------------------------------------------------------------------
def test_long_text_is_stored_lz4_compressed_and_reads_back_exactly() -> None:
    rng = np.random.default_rng(3)
    words = np.array(["bank", "account", "complaint", "refund", "Zürich", "🙂", "late", "fee"])
    text = [" ".join(rng.choice(words, size=40)) for _ in range(600)]
    text[17] = None  # type: ignore[call-overload]
    frame = pd.DataFrame({"id": np.arange(600), "text": pd.Series(text, dtype="str")})
    spec, files = _stored(frame, [250, 600])
    raw_bytes = sum(len(t.encode()) for t in text if t is not None)
    stored_bytes = sum(len(b) for b in files.values())
    assert stored_bytes * 2 < raw_bytes  # compressed (and the ids, offsets and validity kept)
    codecs = [s["layout"]["c1.values"][3:] for s in spec["segments"]]
    assert all(c[0] == "lz4" for c in codecs) and sum(c[1] for c in codecs) == raw_bytes
    pd.testing.assert_frame_equal(segmented.read_frame(spec, files, "test"), frame)


def test_damaged_compressed_text_is_an_artifact_error() -> None:
    text = [f"complaint number {i} about the bank account and the refund" for i in range(400)]
    frame = pd.DataFrame({"text": pd.Series(text, dtype="str")})
    spec, files = _stored(frame, [400])
    (name,) = files
    offset, _, (size,), *_ = spec["segments"][0]["layout"]["c0.values"]
    damaged = bytearray(files[name])
    damaged[offset : offset + size] = b"\xff" * size  # not an lz4 block any more
    with pytest.raises(ArtifactError, match="cannot be decompressed"):
        segmented.read_frame(spec, {name: bytes(damaged)}, "test")
