"""Artifacts: round trips of frames, labels, X and objects; integrity; crash safety; memory://."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from upath import UPath

from lester_dagster.errors import ArtifactError, ArtifactIntegrityError, UnstorableError
from lester_dagster.features import FeatureMatrix, Labels, encode_labels, fit_encode, track
from lester_dagster.frame import ColumnRef, Frame, KeyResolver, Prov, Result, col, from_pandas
from lester_dagster.store import artifacts
from lester_dagster.store.artifacts import (
    StoredFrame,
    StoredLabels,
    StoredMatrix,
    StoredObject,
    has_artifact,
    load_artifact,
    load_frame,
    load_labels,
    load_matrix,
    load_object,
    save_frame,
    save_labels,
    save_matrix,
    save_object,
    save_result,
)
from lester_dagster.store.atomic import MANIFEST, is_temp_name

REPO = Path(__file__).resolve().parents[2]

CUSTOMERS = pd.DataFrame(
    {
        "cid": [1, 2, 3, 4],
        "email": ["a", "b", "c", "d"],
        "country": ["DE", "FR", None, "DE"],
        "age": [30, 40, 50, 60],
    }
)
MAILS = pd.DataFrame(
    {
        "mid": [10, 11, 12, 13, 14],
        "email": ["a", "a", "b", "c", "x"],
        "text": ["bad bank", "good", "bank bank bad", "fine", "who"],
        "score": [1.0, np.nan, 3.0, 4.0, 5.0],
    }
)


def _customers() -> Frame:
    return from_pandas(CUSTOMERS, name="customers", key="cid")


def _mails() -> Frame:
    return from_pandas(MAILS, name="mails", key="mid")


@pytest.fixture
def joined() -> Result:
    """Single provenance; the left join leaves mail 14 without a customer (key id 0)."""
    return _mails().join(_customers(), on="email", how="left").execute()


@pytest.fixture
def grouped() -> Result:
    """Multi provenance: each customer row sums the monomials of its mails."""
    counts = _mails().group_by("email").agg(mails=("mid", "count"), score=("score", "sum"))
    return counts.join(_customers(), on="email").execute()


@pytest.fixture
def mem() -> Iterator[UPath]:
    root = UPath(f"memory://artifact-tests/{uuid.uuid4().hex}")
    yield root
    if root.fs.exists(root.path):
        root.fs.rm(root.path, recursive=True)


def assert_prov_equal(got: Prov, want: Prov) -> None:
    assert (got.n, got.sources) == (want.n, want.sources)
    for source in want.sources:
        assert got.keys[source].dtype == np.uint64
        np.testing.assert_array_equal(got.keys[source], want.keys[source])
    if want.offsets is None:
        assert got.offsets is None
    else:
        assert got.offsets is not None
        np.testing.assert_array_equal(got.offsets, want.offsets)


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def rich_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "s": pd.Series(["x", None, "z"], dtype="str"),
            "f": [1.5, np.nan, -0.0],
            "i": [1, 2, 3],
            "b": [True, False, True],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"]),
            "d": pd.to_datetime(pd.Series(["2024-01-01 00:00", None, "2024-03-01 12:00"])),
            "o": pd.Series(["p", "q", None], dtype=object),
        }
    )


# -- frames ----------------------------------------------------------------------------------------
FRAMES = {
    "rich, single prov": (rich_frame(), Prov(3, {"s1": ids(7, 8, 9), "s2": ids(1, 0, 1)})),
    "multi prov": (
        pd.DataFrame({"g": ["a", "b"]}),
        Prov(2, {"s1": ids(1, 2, 3), "s2": ids(0, 0, 4)}, np.array([0, 2, 3])),
    ),
    "empty": (rich_frame().iloc[:0], Prov(0, {"s1": ids()})),
    "empty multi": (rich_frame().iloc[:0], Prov(0, {"s1": ids()}, np.array([0]))),
    "no columns": (pd.DataFrame(index=pd.RangeIndex(3)), Prov(3, {"s1": ids(1, 2, 3)})),
    "no sources": (pd.DataFrame({"x": [1.0, 2.0]}), Prov(2, {})),
    "other index": (pd.DataFrame({"x": [1, 2]}, index=[5, 9]), Prov(2, {"s": ids(3, 4)})),
}


@pytest.mark.parametrize("case", FRAMES)
def test_frames_round_trip_with_dtypes_and_provenance(tmp_path: Path, case: str) -> None:
    frame, prov = FRAMES[case]
    manifest = save_frame(tmp_path / "a", frame, prov)
    stored = load_frame(tmp_path / "a")
    pd.testing.assert_frame_equal(stored.data, frame, check_exact=True)
    assert_prov_equal(stored.prov, prov)
    assert stored.manifest == manifest and manifest.rows == len(frame)
    assert ("prov" in manifest.files) == (not prov.single)  # multi provenance: its own file


def test_a_saved_result_keeps_its_lineage(tmp_path: Path, joined: Result) -> None:
    manifest = save_result(tmp_path / "prep", joined, metadata={"step": "prepare"})
    stored = load_frame(tmp_path / "prep")
    pd.testing.assert_frame_equal(stored.data, joined.to_pandas(), check_exact=True)
    assert_prov_equal(stored.prov, joined.prov)
    for row in range(len(joined)):
        back = {s: stored.keys.keys_of(s, i) for s, i in stored.prov.ids_of_row(row).items()}
        assert back == joined.lineage.backward(row)
    assert (
        stored.keys("customers", [1]).tolist() == joined.lineage.key_ids("customers", [1]).tolist()
    )
    assert manifest.sources == ("mails", "customers")
    assert manifest.content["prov"]["rows_per_source"] == {"mails": 5, "customers": 4}
    assert manifest.metadata == {"step": "prepare"}
    for entry in manifest.files.values():  # checksums are of the bytes on disk
        data = (tmp_path / "prep" / entry.path).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry.sha256, entry.bytes)


def test_multi_provenance_from_a_group_by(tmp_path: Path, grouped: Result) -> None:
    assert not grouped.prov.single
    save_result(tmp_path / "g", grouped)
    stored = load_frame(tmp_path / "g")
    assert_prov_equal(stored.prov, grouped.prov)
    mails_of_a = stored.prov.ids_of_row(0)["mails"]
    assert sorted(stored.keys.keys_of("mails", mails_of_a)) == joined_mails("a")


def joined_mails(email: str) -> list[int]:
    return sorted(MAILS.loc[MAILS["email"] == email, "mid"].tolist())


def test_key_index_mode_all_keeps_unreferenced_keys(tmp_path: Path) -> None:
    filtered = _customers().filter(col("age") > 45).execute()
    save_result(tmp_path / "r", filtered)
    save_result(tmp_path / "a", filtered, key_index="all")
    assert len(load_frame(tmp_path / "r").key_indexes["customers"]) == 2
    assert len(load_frame(tmp_path / "a").key_indexes["customers"]) == 4


# -- labels ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y",
    [
        np.array([True, False, True]),
        np.array([1, 0, 2], dtype=np.int64),
        np.array([0.5, np.nan, 1.0]),
        np.array(["neg", None, "pos"], dtype=object),
        np.array(["neg", "pos", "x"]),  # <U3
    ],
    ids=["bool", "int", "float-nan", "object", "unicode"],
)
@pytest.mark.parametrize("multi", [False, True])
def test_labels_round_trip(tmp_path: Path, y: np.ndarray, multi: bool) -> None:
    prov = (
        Prov(3, {"m": ids(1, 2, 3, 4)}, np.array([0, 2, 3, 4]))
        if multi
        else Prov.of_source("m", ids(1, 2, 3))
    )
    labels = Labels(y, prov, ("text",), frozenset({ColumnRef("m", "text"), ColumnRef("c", "x")}))
    save_labels(tmp_path / "y", labels)
    back = load_labels(tmp_path / "y").labels
    assert back.y.dtype == y.dtype
    assert back.y.tolist() == y.tolist() or np.array_equal(back.y, y, equal_nan=True)
    assert_prov_equal(back.prov, prov)
    assert (back.inputs, back.lineage) == (labels.inputs, labels.lineage)


def test_labels_from_a_result_resolve_keys(tmp_path: Path, joined: Result) -> None:
    labels = encode_labels(lambda f: f["score"].fillna(0) > 2, joined, inputs=["score"])
    save_labels(tmp_path / "y", labels, sources=joined.sources)
    stored = load_labels(tmp_path / "y")
    np.testing.assert_array_equal(stored.labels.y, labels.y)
    assert stored.labels.lineage == frozenset({ColumnRef("mails", "score")})
    assert set(stored.key_indexes) == {"mails", "customers"}


# -- X ---------------------------------------------------------------------------------------------
def _encoding(sparse: bool) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("words", CountVectorizer(), "text"),
            ("age", StandardScaler(), ["age"]),
            ("country", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ],
        sparse_threshold=1.0 if sparse else 0.0,
    )


def _prepared() -> Result:
    return _mails().join(_customers(), on="email").execute()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("compress", [False, True])
def test_feature_matrices_round_trip(tmp_path: Path, sparse: bool, compress: bool) -> None:
    prepared = _prepared()
    _, fm = fit_encode(_encoding(sparse), prepared)
    manifest = save_matrix(tmp_path / "X", fm, sources=prepared.sources, compress=compress)
    stored = load_matrix(tmp_path / "X").matrix
    assert type(stored.X) is type(fm.X) and stored.X.dtype == fm.X.dtype
    if sparse:
        assert stored.X.format == "csr" and (stored.X != fm.X).nnz == 0
    else:
        np.testing.assert_array_equal(stored.X, fm.X)
    assert stored.blocks == fm.blocks
    assert_prov_equal(stored.prov, fm.prov)
    for source, key in [("customers", 1), ("mails", 12)]:
        got, want = stored.forward(source, [key]), fm.forward(source, [key])
        assert got.rows.tolist() == want.rows.tolist() and got.blocks == want.blocks
    assert manifest.content["X"]["layout"] == ("sparse" if sparse else "dense")
    assert manifest.content["blocks"][2]["lineage"] == [["customers", "country"]]


def test_a_matrix_with_multi_provenance(tmp_path: Path, grouped: Result) -> None:
    ct = ColumnTransformer([("age", StandardScaler(), ["age"])])
    _, fm = fit_encode(ct, grouped)
    save_matrix(tmp_path / "X", fm)
    stored = load_matrix(tmp_path / "X")
    assert_prov_equal(stored.matrix.prov, grouped.prov)
    with pytest.raises(KeyError, match="unknown source 'mails'"):  # no key index was stored
        stored.matrix.forward("mails", [10])


def test_unstorable_matrices_are_refused(tmp_path: Path) -> None:
    prov = Prov.of_source("s", ids(1, 2))
    bad = FeatureMatrix(np.zeros(3), prov, (), lambda s, k: ids())
    with pytest.raises(UnstorableError, match="2-d numeric"):
        save_matrix(tmp_path / "X", bad)
    short = FeatureMatrix(np.zeros((3, 1)), prov, (), lambda s, k: ids())
    with pytest.raises(UnstorableError, match="X has 3 rows but its provenance describes 2"):
        save_matrix(tmp_path / "X", short)
    assert not has_artifact(tmp_path / "X")


# -- objects ---------------------------------------------------------------------------------------
def _fitted_bundle() -> dict[str, Any]:
    frame = _prepared().to_pandas()
    ct = _encoding(sparse=True).fit(frame)
    trackers = {
        "age": track(ct.named_transformers_["age"], frame[["age"]]),
        "country": track(ct.named_transformers_["country"], frame[["country"]]),
    }
    return {"encoding": ct, "trackers": trackers, "frame": frame}


def test_a_model_state_saved_together_keeps_shared_references(tmp_path: Path) -> None:
    bundle = _fitted_bundle()
    save_object(tmp_path / "state", bundle, rows=len(bundle["frame"]), sources=["mails"])
    back = load_object(tmp_path / "state").value
    ct, trackers, frame = back["encoding"], back["trackers"], back["frame"]
    for name in ("age", "country"):
        assert trackers[name].transformer is ct.named_transformers_[name]
    # and the shared object is live: forgetting through the tracker changes the encoder
    before = ct.named_transformers_["age"].mean_.copy()
    trackers["age"].forget(frame[["age"]].iloc[[0]])
    assert ct.named_transformers_["age"].mean_ != before


def test_objects_saved_apart_lose_shared_references(tmp_path: Path) -> None:
    """The counter-example that makes the test above meaningful."""
    bundle = _fitted_bundle()
    save_object(tmp_path / "ct", bundle["encoding"])
    save_object(tmp_path / "trackers", bundle["trackers"])
    ct = load_object(tmp_path / "ct").value
    trackers = load_object(tmp_path / "trackers").value
    assert trackers["age"].transformer is not ct.named_transformers_["age"]


def test_objects_holding_provenance_pickle(tmp_path: Path, joined: Result) -> None:
    labels = encode_labels(lambda f: f["score"] > 2, joined, inputs=["score"])
    held = {"prov": joined.prov, "y": labels.y}
    manifest = save_object(tmp_path / "o", held)
    back = load_object(tmp_path / "o").value
    assert_prov_equal(back["prov"], joined.prov)
    assert manifest.content["type"] == "builtins.dict" and manifest.rows is None


def test_unpicklable_objects_are_refused_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(UnstorableError, match="module level"):
        save_object(tmp_path / "o", {"label": lambda x: x})
    assert not has_artifact(tmp_path / "o") and os.listdir(tmp_path / "o") == []


# -- manifests, kinds, errors ----------------------------------------------------------------------
def test_load_artifact_dispatches_on_kind(tmp_path: Path, joined: Result) -> None:
    save_result(tmp_path / "f", joined)
    save_labels(tmp_path / "y", encode_labels(lambda f: f["score"] > 2, joined, inputs=["score"]))
    save_matrix(tmp_path / "X", fit_encode(_encoding(True), _prepared())[1])
    save_object(tmp_path / "o", [1, 2])
    kinds = {n: type(load_artifact(tmp_path / n)) for n in "fyXo"}
    assert kinds == {"f": StoredFrame, "y": StoredLabels, "X": StoredMatrix, "o": StoredObject}
    with pytest.raises(
        ArtifactError, match="is a 'frame', not a 'matrix'; load it with load_frame"
    ):
        load_matrix(tmp_path / "f")
    with pytest.raises(FileNotFoundError):
        load_artifact(tmp_path / "missing")


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    frame, prov = FRAMES["rich, single prov"]
    with pytest.raises(UnstorableError, match="JSON-serialisable"):
        save_frame(tmp_path / "a", frame, prov, metadata={"when": object()})
    with pytest.raises(UnstorableError, match="the frame has 2 rows but its provenance"):
        save_frame(tmp_path / "a", frame.iloc[:2], prov)
    with pytest.raises(UnstorableError, match="reserved prefix"):
        save_frame(tmp_path / "a", frame.rename(columns={"s": "__lester_x"}), prov)
    assert not has_artifact(tmp_path / "a")


@pytest.mark.parametrize(
    ("file", "parquet"),
    [("data.00000", False), ("keys-0.00000", False), ("data", True)],  # segments, a Parquet file
)
def test_a_corrupted_file_is_detected_on_load(
    tmp_path: Path, joined: Result, file: str, parquet: bool
) -> None:
    frame = joined.to_pandas()
    if parquet:  # a category column is not stored in row segments
        frame = frame.assign(email=frame["email"].astype("category"))
    manifest = save_frame(tmp_path / "a", frame, joined.prov, sources=joined.sources)
    path = tmp_path / "a" / manifest.files[file].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=f"file '{file}' of the artifact"):
        load_frame(tmp_path / "a")


def test_a_corrupted_matrix_is_detected_on_load(tmp_path: Path) -> None:
    manifest = save_matrix(tmp_path / "X", fit_encode(_encoding(False), _prepared())[1])
    path = tmp_path / "X" / manifest.files["X"].path
    path.write_bytes(path.read_bytes()[:-8])  # truncated
    with pytest.raises(ArtifactIntegrityError, match="file 'X'"):
        load_matrix(tmp_path / "X")


# -- versions and crash safety ---------------------------------------------------------------------
V1 = pd.DataFrame({"v": [1.0, 2.0]})
V2 = pd.DataFrame({"v": [3.0, 4.0, 5.0]})


def _save_v(root: Path | UPath, frame: pd.DataFrame) -> None:
    save_frame(root, frame, Prov.of_source("s", ids(*range(1, len(frame) + 1))))


def _entries(root: Path) -> list[str]:
    return sorted(os.listdir(root))


def test_saving_again_replaces_and_keeps_one_previous_version(tmp_path: Path) -> None:
    root = tmp_path / "a"
    _save_v(root, V1)
    first = _entries(root)
    _save_v(root, V2)
    second = _entries(root)
    assert len(second) == 3 and set(first) < set(second)
    _save_v(root, V1)
    assert len(_entries(root)) == 3 and not set(first) - {MANIFEST} & set(_entries(root))
    pd.testing.assert_frame_equal(load_frame(root).data, V1)


def test_a_crash_at_the_commit_point_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "a"
    _save_v(root, V1)
    before = _entries(root)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr("lester_dagster.store.atomic.os.replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _save_v(root, V2)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(load_frame(root).data, V1)
    assert _entries(root) == before


def test_a_crash_between_two_files_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joined: Result
) -> None:
    root = tmp_path / "a"
    save_result(root, joined)
    before = _entries(root)

    def crash(*args: Any) -> Any:
        raise OSError("disk full while writing a key index")

    monkeypatch.setattr(artifacts, "_write_keys", crash)  # data.parquet is already written
    with pytest.raises(OSError, match="disk full"):
        save_frame(root, V2, Prov.of_source("customers", ids(1, 2, 3)), sources=joined.sources)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(load_frame(root).data, joined.to_pandas())
    assert _entries(root) == before


_KILLED_SAVE = """
import sys, time
import numpy as np, pandas as pd
from lester_dagster.frame import Prov
from lester_dagster.store import artifacts, atomic, segments

def block(*args, **kwargs):
    print("READY", flush=True)
    time.sleep(60)

def half_then_block(segment, handle):
    handle.write(b"x" * 5000)
    handle.flush()
    block()

if sys.argv[2] == "commit":  # killed between writing the new manifest and renaming it
    atomic.os.replace = block
else:  # killed in the middle of writing the data file (a row segment)
    segments.Encoded.write = half_then_block
frame = pd.DataFrame({"v": [3.0, 4.0, 5.0]})
artifacts.save_frame(sys.argv[1], frame, Prov.of_source("s", np.arange(1, 4, dtype=np.uint64)))
"""


@pytest.mark.parametrize("moment", ["commit", "data"])
def test_a_writer_killed_mid_save_leaves_the_previous_version(tmp_path: Path, moment: str) -> None:
    root = tmp_path / "a"
    _save_v(root, V1)
    before = _entries(root)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(root), moment],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "READY":
        child.kill()
        pytest.fail(f"the writer did not get ready: {line!r} {child.communicate()[1]}")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    leftovers = sorted(set(_entries(root)) - set(before))
    assert len(leftovers) == (2 if moment == "commit" else 1)  # new version (+ temp manifest)
    assert any(name.startswith("v") for name in leftovers)
    assert all(is_temp_name(n) for n in leftovers if not n.startswith("v"))
    pd.testing.assert_frame_equal(load_frame(root).data, V1)  # readers still see version 1

    _save_v(root, V2)  # the next save completes and cleans up
    pd.testing.assert_frame_equal(load_frame(root).data, V2)
    assert not set(leftovers) & set(_entries(root)) and len(_entries(root)) == 3


# -- object storage (fsspec memory filesystem) -----------------------------------------------------
def test_every_kind_round_trips_on_memory_storage(mem: UPath, grouped: Result) -> None:
    save_result(mem / "frame", grouped)
    stored = load_frame(mem / "frame")
    pd.testing.assert_frame_equal(stored.data, grouped.to_pandas(), check_exact=True)
    assert_prov_equal(stored.prov, grouped.prov)

    prepared = _prepared()
    _, fm = fit_encode(_encoding(True), prepared)
    save_matrix(mem / "X", fm, sources=prepared.sources)
    assert (load_matrix(mem / "X").matrix.X != fm.X).nnz == 0

    save_object(mem / "model", _fitted_bundle())
    back = load_object(mem / "model").value
    assert back["trackers"]["age"].transformer is back["encoding"].named_transformers_["age"]
    assert str(mem / "model" / MANIFEST) in [str(p) for p in (mem / "model").iterdir()]


def test_memory_storage_versions_and_integrity(mem: UPath) -> None:
    root = mem / "a"
    _save_v(root, V1)
    _save_v(root, V2)
    _save_v(root, V1)
    assert len(list(root.iterdir())) == 3  # manifest, current and previous version
    pd.testing.assert_frame_equal(load_frame(root).data, V1)
    manifest = load_frame(root).manifest
    name = next(n for n in manifest.files if n.startswith("data"))  # a row segment
    target = root / manifest.files[name].path
    target.fs.pipe_file(target.path, target.read_bytes()[:-1] + b"?")
    with pytest.raises(ArtifactIntegrityError, match=f"file '{name}'"):
        load_frame(root)


def test_load_key_indexes_reads_only_the_key_indexes(tmp_path: Path) -> None:
    from lester_dagster.frame import from_pandas
    from lester_dagster.store import load_frame, load_key_indexes, save_result

    data = pd.DataFrame({"id": [3, 1, 2], "text": ["a", "b", "c"]})
    result = from_pandas(data, name="things", key="id").execute()
    save_result(tmp_path / "a", result)
    indexes = load_key_indexes(tmp_path / "a")
    assert set(indexes) == {"things"}
    pd.testing.assert_frame_equal(
        indexes["things"], load_frame(tmp_path / "a").key_indexes["things"]
    )
    # the data file is not read: corrupting it does not matter to the key indexes
    (data_file,) = [p for p in (tmp_path / "a").rglob("data*")]
    data_file.write_bytes(b"broken")
    assert set(load_key_indexes(tmp_path / "a")) == {"things"}


# -- matrix files ----------------------------------------------------------------------------------
def _multi(n: int) -> Prov:
    """Multi provenance of ``n`` rows (every third row sums two monomials): X with it keeps the
    one-file raw layout (row segments need single provenance)."""
    lengths = np.where(np.arange(n) % 3 == 0, 2, 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
    return Prov(n, {"mails": np.arange(int(offsets[-1]), dtype=np.uint64) + 1}, offsets)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_csr_and_csc_are_stored_as_raw_aligned_buffers_and_load_writable(
    tmp_path: Path, fmt: str
) -> None:
    """The one-file raw layout: a CSC X, and a CSR X whose rows have multi provenance."""
    X = sp.random(40, 9, density=0.3, format=fmt, random_state=2, dtype=np.float64)
    prov = _multi(40) if fmt == "csr" else Prov(40, {"mails": np.arange(40, dtype=np.uint64)})
    manifest = save_matrix(tmp_path / "X", FeatureMatrix(X, prov, (), KeyResolver({})))
    spec = manifest.content["X"]
    assert spec["encoding"] == "raw" and manifest.files["X"].path.endswith("X.bin")
    assert all(offset % 64 == 0 for offset, _, _ in spec["arrays"].values())
    assert manifest.files["prov"].path.endswith("prov.parquet")
    stored = load_matrix(tmp_path / "X").matrix
    back = stored.X
    assert back.format == fmt and (back != X).nnz == 0 and back.dtype == X.dtype
    assert_prov_equal(stored.prov, prov)
    back.data[0] = 123.0  # arrays come back writable (a read-only view would raise here)
    assert back.data[0] == 123.0


def test_other_sparse_formats_and_compressed_matrices_use_npz(tmp_path: Path) -> None:
    X = sp.random(20, 5, density=0.4, format="coo", random_state=3)
    prov = Prov(20, {"mails": np.arange(20, dtype=np.uint64)})
    coo = save_matrix(tmp_path / "coo", FeatureMatrix(X, prov, (), KeyResolver({})))
    packed = save_matrix(
        tmp_path / "z", FeatureMatrix(X.tocsr(), prov, (), KeyResolver({})), compress=True
    )
    assert coo.files["X"].path.endswith("X.npz") and "encoding" not in coo.content["X"]
    assert packed.files["X"].path.endswith("X.npz")
    assert (load_matrix(tmp_path / "coo").matrix.X != X).nnz == 0
    assert (X.tocsr() != load_matrix(tmp_path / "z").matrix.X).nnz == 0


def test_a_raw_matrix_whose_spec_does_not_fit_the_file_is_an_artifact_error(
    tmp_path: Path,
) -> None:
    X = sp.random(10, 4, density=0.5, format="csr", random_state=4)
    manifest = save_matrix(tmp_path / "X", FeatureMatrix(X, _multi(10), (), KeyResolver({})))
    assert manifest.content["X"]["encoding"] == "raw"
    doc = json.loads((tmp_path / "X" / MANIFEST).read_text())
    doc["content"]["X"]["arrays"]["data"][2] = 10**6  # more values than the file holds
    (tmp_path / "X" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="is not a readable sparse matrix"):
        load_matrix(tmp_path / "X")
