"""Row segments (store.segments): content-defined cuts that a deletion disturbs only around the
deleted rows, the segment files' round trip and fingerprints, and what X, y, their provenance
and the model's copy of X share between versions and artifacts (hard links) - and that no file
keeps a removed row once the old versions are collected."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lester_dagster.errors import ArtifactError, ArtifactIntegrityError
from lester_dagster.features import FeatureMatrix, Labels
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.store import (
    collect_garbage,
    load_provenance,
    read_manifest,
    segments,
    verify,
)
from lester_dagster.store.artifacts import (
    load_labels,
    load_matrix,
    load_object,
    save_labels,
    save_matrix,
    save_object,
)
from lester_dagster.store.manifest import Manifest

Ids = npt.NDArray[np.uint64]

TARGET = 8
"""A small target length for the cut properties: many segments in a few hundred rows."""

N = 5000
REMOVED = 1234
"""The row a deletion removes from the realistic X; it holds two distinctive values."""
ODD = 123456.789  # in one of its sparse columns
ODD_SCALED = 654321.25  # in its dense ("scaled") column


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """About 20 segments for N rows (instead of one with the default target)."""
    monkeypatch.setattr(segments, "SEGMENT_ROWS", 256)


# -- helpers -------------------------------------------------------------------------------------
def _spans(ends: Sequence[int]) -> list[tuple[int, int]]:
    starts = [0, *ends][: len(ends)]
    return list(zip(starts, ends, strict=True))


def _pieces(ids: Ids, ends: npt.NDArray[np.intp]) -> list[tuple[int, ...]]:
    """The ids of every segment's rows."""
    return [tuple(ids[s:e].tolist()) for s, e in _spans(ends.tolist())]


def _natural_ends(ids: Ids, target: int) -> npt.NDArray[np.intp]:
    """The content-defined cuts alone (no run is ever cut for its length)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segments, "MAX_RUN", 1 << 40)
        return segments.cut(ids, target)


def _encode(
    rows: segments.Rows, ends: npt.NDArray[np.intp]
) -> tuple[list[segments.Encoded], dict[str, bytes], dict[str, object]]:
    """The segments of ``rows``, their files' bytes (by name) and their spec, as stored (the
    spec through JSON, as the manifest keeps it)."""
    encoded = segments.encode(rows, ends)
    names = [f"part.{i:05d}" for i in range(len(encoded))]
    files = {}
    for name, segment in zip(names, encoded, strict=True):
        out = io.BytesIO()
        segment.write(out)
        files[name] = out.getvalue()
    described = json.loads(json.dumps(segments.spec(rows, encoded, names)))
    return encoded, files, described


def _ids(n: int, seed: int = 0) -> Ids:
    """n distinct, shuffled key ids."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(1_000_003))


def _realistic(n: int = N) -> FeatureMatrix:
    """X as a pipeline makes it: a scaled numeric column (an entry in every row, column 0) and
    sparse one-hot/text columns; single provenance from one source with distinct key ids."""
    rng = np.random.default_rng(7)
    scaled = rng.normal(size=(n, 1))
    sparse = sp.random(n, 40, density=0.05, format="csr", random_state=8)
    X = sp.hstack([sp.csr_matrix(scaled), sparse], format="lil")
    if n > REMOVED:
        X[REMOVED, 0] = ODD_SCALED
        X[REMOVED, 17] = ODD
    return FeatureMatrix(X.tocsr(), Prov(n, {"mails": _ids(n)}), (), KeyResolver({}))


def _without(matrix: FeatureMatrix, row: int) -> FeatureMatrix:
    keep = np.delete(np.arange(matrix.X.shape[0]), row)
    return FeatureMatrix(matrix.X[keep], matrix.prov.take(keep), (), KeyResolver({}))


def _save_model(root: Path, state: object, matrix: FeatureMatrix) -> Manifest:
    """A model state holding ``matrix.X`` (as the IO manager stores it)."""
    return save_object(root, state, shared={"X": matrix.X}, row_prov=matrix.prov)


def _segment_files(root: Path, prefix: str) -> dict[str, Path]:
    """The segment files of the committed version of ``root`` whose manifest names are
    ``<prefix>.<i>``, by name."""
    return {
        name: root / entry.path
        for name, entry in read_manifest(root).files.items()
        if name.rsplit(".", 1)[0] == prefix and segments.ADDRESSED.search(entry.path)
    }


def _inodes(files: dict[str, Path]) -> set[int]:
    return {os.stat(p).st_ino for p in files.values()}


def _holds(raw: bytes, values: npt.ArrayLike) -> bool:
    """True when ``raw`` holds any of these float64 values (at any byte position)."""
    wanted = np.asarray(values, dtype=np.float64).view(np.uint64)
    for shift in range(8):
        count = (len(raw) - shift) // 8
        if count > 0:
            words = np.frombuffer(raw, dtype=np.uint64, count=count, offset=shift)
            if bool(np.isin(words, wanted).any()):
                return True
    return False


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _assert_same_csr(got: sp.csr_matrix, want: sp.csr_matrix) -> None:
    assert got.format == "csr" and got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


def _assert_same_prov(got: Prov, want: Prov) -> None:
    assert (got.n, got.sources, got.offsets) == (want.n, want.sources, None)
    for source in want.sources:
        assert got.keys[source].dtype == np.uint64
        np.testing.assert_array_equal(got.keys[source], want.keys[source])


# -- cut -----------------------------------------------------------------------------------------
def test_cut_ends_ascend_to_the_last_row_about_every_target_rows() -> None:
    ids = _ids(5000)
    ends = segments.cut(ids, 64)
    assert ends.dtype == np.intp and ends[0] > 0 and ends[-1] == 5000
    assert bool((np.diff(ends) > 0).all())
    assert 5000 / 64 / 2 < len(ends) < 5000 / 64 * 2  # content-defined, about n / target
    assert (np.diff(ends, prepend=0) <= segments.MAX_RUN * 64).all()
    assert segments.cut(ids[:1], 64).tolist() == [1]
    empty = segments.cut(ids[:0], 64)
    assert empty.shape == (0,) and empty.dtype == np.intp


def test_cut_depends_on_the_ids_not_on_their_positions() -> None:
    ids = _ids(3000)
    before = _ids(5, seed=1) + np.uint64(1)  # five other rows first
    longer = np.concatenate([before, ids])
    # from the first content cut on, the same rows make the same segments
    first = int(_natural_ends(ids, TARGET)[0])
    spans = _spans(segments.cut(ids, TARGET).tolist())
    pieces = [tuple(ids[s:e].tolist()) for s, e in spans if s >= first]
    assert len(pieces) > 100
    assert set(pieces) <= set(_pieces(longer, segments.cut(longer, TARGET)))


@pytest.mark.parametrize("target", [0, -3])
def test_cut_refuses_a_target_below_one(target: int) -> None:
    for n in (0, 5):
        with pytest.raises(ValueError, match="positive"):
            segments.cut(np.arange(n, dtype=np.uint64), target)


def test_a_run_without_a_content_cut_is_cut_every_max_run_targets() -> None:
    longest = segments.MAX_RUN * TARGET
    # one id for every row: every row is a content cut, or none is; take an id that is none
    value = next(
        v for v in range(1000) if len(segments.cut(np.full(2, v, dtype=np.uint64), TARGET)) == 1
    )
    ends = segments.cut(np.full(1000, value, dtype=np.uint64), TARGET)
    assert ends.tolist() == [*range(longest, 1000, longest), 1000]


@pytest.mark.parametrize("max_run", [1, segments.MAX_RUN])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=300, unique=True),
    data=st.data(),
)
def test_deleting_rows_keeps_every_segment_away_from_them(
    max_run: int, values: list[int], data: st.DataObject
) -> None:
    """A segment survives a deletion unless it holds a deleted row, follows a deleted row in
    the same run of rows between two content cuts (the cuts by length count from the run's
    start), or lies in the run after a deleted content-cut row (the two runs merge). Where no
    run is cut by length, that is: the segments that held the deleted rows change, and the one
    after each deleted cut row (it merges with what is left of the segment before it)."""
    ids = np.array(values, dtype=np.uint64)
    n = len(ids)
    deleted = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(3, n)))
    kept = np.delete(ids, sorted(deleted))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segments, "MAX_RUN", max_run)
        ends, after = segments.cut(ids, TARGET), segments.cut(kept, TARGET)
    for cuts, rows in ((ends, n), (after, len(kept))):
        assert cuts.tolist() == sorted(set(cuts.tolist()))  # strictly ascending
        assert cuts.tolist()[-1:] == ([rows] if rows else [])
        assert (np.diff(cuts, prepend=0) <= max_run * TARGET).all()
    natural = _natural_ends(ids, TARGET).tolist()
    assert set(natural) <= set(ends.tolist())
    before, now = _pieces(ids, ends), set(_pieces(kept, after))
    touched = 0
    for (start, end), piece in zip(_spans(ends.tolist()), before, strict=True):
        run = int(np.searchsorted(natural, start, side="right"))
        run_start = natural[run - 1] if run else 0
        if any(run_start <= d < end for d in deleted) or (run_start - 1) in deleted:
            touched += 1
            continue
        assert piece in now, (start, end)
    # the rewritten segments are no more than the ones the deletion touched
    assert len(now - set(before)) <= touched


def test_row_ids_name_the_record_combination_wherever_its_row_is() -> None:
    mails, customers = _ids(400), _ids(400, seed=2) + np.uint64(1)  # other ids
    whole = segments.row_ids({"mails": mails, "customers": customers}, 400)
    some = np.array([399, 3, 17, 250])
    part = segments.row_ids({"customers": customers[some], "mails": mails[some]}, 4)
    np.testing.assert_array_equal(part, whole[some])  # neither position nor source order counts
    assert len(np.unique(whole)) == 400
    swapped = segments.row_ids({"mails": customers, "customers": mails}, 400)
    assert not (swapped == whole).any()


# -- encode, spec, read --------------------------------------------------------------------------
def _rows(n: int, seed: int = 0) -> segments.Rows:
    rng = np.random.default_rng(seed)
    X = sp.random(n, 7, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    X = X.tolil()
    X[::4] = 0  # some empty rows
    X = X.tocsr()
    X.eliminate_zeros()
    arrays = {
        "f": rng.normal(size=n),
        "m": rng.integers(-50, 50, size=(n, 3)).astype(np.int32),
        "b": rng.random(n) < 0.5,
    }
    csr = segments.CsrParts(X.data, X.indices, X.indptr.astype(X.indices.dtype))
    return segments.Rows(n, arrays, csr)


@pytest.mark.parametrize("n", [0, 1, 300])
def test_encoded_segments_read_back_exactly(n: int) -> None:
    rows = _rows(n)
    ends = segments.cut(_ids(n), TARGET)
    assert len(ends) > 10 if n == 300 else len(ends) == n
    encoded, files, described = _encode(rows, ends)
    assert [e.rows for e in encoded] == np.diff(ends, prepend=0).tolist()
    for segment, raw in zip(encoded, files.values(), strict=True):
        assert len(raw) == segment.nbytes
        assert segments.file_fingerprint(raw) == segment.fingerprint  # the name checks the file
    arrays, csr = segments.read(described, files, "test")
    assert set(arrays) == {"f", "m", "b"}
    for name, want in rows.arrays.items():
        assert arrays[name].dtype == want.dtype and arrays[name].shape == want.shape
        np.testing.assert_array_equal(arrays[name], want)
        assert arrays[name].flags.writeable
    assert csr is not None and rows.csr is not None
    for got, want in zip(
        (csr.data, csr.indices, csr.indptr),
        (rows.csr.data, rows.csr.indices, rows.csr.indptr),
        strict=True,
    ):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_arrays_without_a_matrix_read_back_exactly() -> None:
    rows = segments.Rows(100, {"y": np.arange(100) % 3 == 0, "w": np.ones((100, 0))})
    _, files, described = _encode(rows, segments.cut(_ids(100), TARGET))
    arrays, csr = segments.read(described, files, "test")
    assert csr is None
    np.testing.assert_array_equal(arrays["y"], rows.arrays["y"])
    assert arrays["w"].shape == (100, 0)


def test_fingerprints_name_the_content() -> None:
    rows = _rows(300)
    ends = segments.cut(_ids(300), TARGET)
    first = [e.fingerprint for e in segments.encode(rows, ends)]
    assert len(set(first)) == len(first)
    copy = _rows(300)  # equal content, other objects
    assert [e.fingerprint for e in segments.encode(copy, ends)] == first
    row = 123
    copy.arrays["f"][row] += 1.0
    changed = [e.fingerprint for e in segments.encode(copy, ends)]
    holder = int(np.searchsorted(ends, row, side="right"))
    assert [i for i, (a, b) in enumerate(zip(first, changed, strict=True)) if a != b] == [holder]


def test_rows_must_agree_on_their_number() -> None:
    with pytest.raises(ValueError, match="rows"):
        segments.Rows(3, {"a": np.zeros(4)})
    with pytest.raises(ValueError, match="rows"):
        segments.Rows(3, {}, segments.CsrParts(np.zeros(0), np.zeros(0, int), np.zeros(3, int)))


def test_segments_that_do_not_add_up_to_the_spec_are_an_artifact_error() -> None:
    rows = _rows(50)
    _, files, described = _encode(rows, segments.cut(_ids(50), TARGET))
    assert isinstance(described, dict)
    for damage in ("rows", "drop", "file"):
        broken = json.loads(json.dumps(described))
        if damage == "rows":
            broken["rows"] += 1
        elif damage == "drop":
            broken["segments"].pop()
        else:
            broken["segments"][0]["file"] = "elsewhere"
        with pytest.raises(ArtifactError, match="rematerialise"):
            segments.read(broken, files, "test")


# -- X -------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("small_segments")
@pytest.mark.parametrize("case", ["one source", "two sources", "one id for all", "no rows"])
def test_a_segmented_x_round_trips_exactly(tmp_path: Path, case: str) -> None:
    matrix = _realistic(0 if case == "no rows" else N)
    n = matrix.prov.n
    if case == "two sources":
        keys = {"mails": _ids(n), "customers": _ids(n, seed=3)}
        matrix = FeatureMatrix(matrix.X, Prov(n, keys), (), KeyResolver({}))
    elif case == "one id for all":  # e.g. every row joined to nothing: key id 0
        zeros = {"mails": np.zeros(n, np.uint64)}
        matrix = FeatureMatrix(matrix.X, Prov(n, zeros), (), KeyResolver({}))
    manifest = save_matrix(tmp_path / "X", matrix)
    x_files = _segment_files(tmp_path / "X", "X")
    assert "X" not in manifest.files and "prov" not in manifest.files
    if case == "one id for all":  # no row says where to cut: cut by count, not every row
        assert math.ceil(n / (segments.MAX_RUN * 256)) <= len(x_files) <= math.ceil(n / 256)
    elif n:
        assert n / 256 / 2 < len(x_files) < n / 256 * 2
    if n:
        assert _segment_files(tmp_path / "X", "X-pinned")  # the scaled column
        assert len(_segment_files(tmp_path / "X", "prov")) == len(x_files)
    back = load_matrix(tmp_path / "X").matrix
    _assert_same_csr(back.X, matrix.X)
    _assert_same_prov(back.prov, matrix.prov)
    if n:
        back.X.data[0] = -1.0  # writable, and a copy: the stored files do not change
        assert load_matrix(tmp_path / "X").matrix.X.data[0] == matrix.X.data[0]
    verify(tmp_path / "X")  # every file against its sha256
    probed = load_provenance(tmp_path / "X").prov
    assert probed is not None
    _assert_same_prov(probed, matrix.prov)


@pytest.mark.usefixtures("small_segments")
def test_removing_a_row_rewrites_only_its_segment_and_collecting_leaves_none_of_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "X"
    matrix = _realistic()
    save_matrix(root, matrix)
    before = {p: _inodes(_segment_files(root, p)) for p in ("X", "X-pinned", "prov")}
    smaller = _without(matrix, REMOVED)
    save_matrix(root, smaller)
    for prefix in ("X", "X-pinned", "prov"):
        files = _segment_files(root, prefix)
        new = {name for name, p in files.items() if os.stat(p).st_ino not in before[prefix]}
        assert 1 <= len(new) <= 2, (prefix, sorted(new))
        for name, path in files.items():  # new: written; the others: the old version's files
            assert os.stat(path).st_nlink == (1 if name in new else 2), (prefix, name)
    back = load_matrix(root).matrix
    _assert_same_csr(back.X, smaller.X)
    _assert_same_prov(back.prov, smaller.prov)
    removed_id = matrix.prov.keys["mails"][REMOVED].tobytes()
    odd, odd_scaled = np.float64(ODD).tobytes(), np.float64(ODD_SCALED).tobytes()
    # the previous version still holds the row (so the search below can find it) ...
    for needle in (odd, odd_scaled, removed_id):
        assert any(needle in p.read_bytes() for p in _files_under(root))
    collect_garbage(root)
    # ... and once it is collected, no file does
    for path in _files_under(root):
        raw = path.read_bytes()
        assert odd not in raw and odd_scaled not in raw and removed_id not in raw, path


@pytest.mark.usefixtures("small_segments")
def test_a_moved_dense_column_rewrites_only_the_pinned_segments(tmp_path: Path) -> None:
    """A scaler downdate moves every value of its column: the matrix's segments (which hold
    zeros in its place) are all linked, only the column's own segments are new."""
    root = tmp_path / "X"
    matrix = _realistic()
    save_matrix(root, matrix)
    before = {p: _inodes(_segment_files(root, p)) for p in ("X", "X-pinned", "prov")}
    moved = matrix.X.copy()
    column = moved.indices == 0
    old_values = matrix.X.data[column]
    moved.data[column] = old_values * 1.5 + 0.25  # the downdated scaler's transform
    shifted = FeatureMatrix(moved, matrix.prov, (), KeyResolver({}))
    save_matrix(root, shifted)
    assert _inodes(_segment_files(root, "X")) == before["X"]
    assert _inodes(_segment_files(root, "prov")) == before["prov"]
    pinned = _inodes(_segment_files(root, "X-pinned"))
    assert pinned and not pinned & before["X-pinned"]
    _assert_same_csr(load_matrix(root).matrix.X, moved)
    assert any(_holds(p.read_bytes(), old_values) for p in _files_under(root))
    collect_garbage(root)
    assert not any(_holds(p.read_bytes(), old_values) for p in _files_under(root))
    _assert_same_csr(load_matrix(root).matrix.X, moved)


# -- the model state's copy of X ---------------------------------------------------------------
@pytest.mark.usefixtures("small_segments")
def test_the_model_state_links_every_segment_of_x_train(tmp_path: Path) -> None:
    matrix = _realistic()
    save_matrix(tmp_path / "X_train", matrix)
    manifest = _save_model(tmp_path / "model", {"X": matrix.X, "again": matrix.X}, matrix)
    for prefix in ("X", "X-pinned"):
        x_files = _segment_files(tmp_path / "X_train", prefix)
        shared = _segment_files(tmp_path / "model", f"shared-{prefix}")
        assert x_files and len(shared) == len(x_files)
        for name, path in shared.items():
            twin = x_files[name.replace("shared-", "", 1)]
            assert os.stat(path).st_ino == os.stat(twin).st_ino, name
    assert manifest.files["buffers"].bytes < matrix.X.data.nbytes // 100  # no copy inside
    back = load_object(tmp_path / "model").value
    _assert_same_csr(back["X"], matrix.X)
    assert back["again"] is back["X"]
    back["X"].data[:] = 0.0  # writable, and a copy: X_train's files do not change
    _assert_same_csr(load_matrix(tmp_path / "X_train").matrix.X, matrix.X)


@pytest.mark.usefixtures("small_segments")
def test_a_removed_row_leaves_no_file_of_x_train_or_the_model(tmp_path: Path) -> None:
    matrix = _realistic()
    save_matrix(tmp_path / "X_train", matrix)
    _save_model(tmp_path / "model", {"X": matrix.X}, matrix)
    smaller = _without(matrix, REMOVED)
    save_matrix(tmp_path / "X_train", smaller)
    _save_model(tmp_path / "model", {"X": smaller.X}, smaller)
    # the new model version links the new X_train version's segments, old and new ones
    shared = _segment_files(tmp_path / "model", "shared-X")
    assert _inodes(shared) == _inodes(_segment_files(tmp_path / "X_train", "X"))
    collect_garbage(tmp_path / "X_train")
    collect_garbage(tmp_path / "model")
    for path in _files_under(tmp_path):
        raw = path.read_bytes()
        assert np.float64(ODD).tobytes() not in raw, path
        assert np.float64(ODD_SCALED).tobytes() not in raw, path
    _assert_same_csr(load_object(tmp_path / "model").value["X"], smaller.X)


# -- labels --------------------------------------------------------------------------------------
@pytest.mark.usefixtures("small_segments")
@pytest.mark.parametrize("dtype", ["bool", "int64", "int8", "float32"])
def test_labels_are_segments_and_link_the_provenance_of_x(tmp_path: Path, dtype: str) -> None:
    matrix = _realistic()
    save_matrix(tmp_path / "X", matrix)
    y = (np.arange(N) % 7 - 3).astype(dtype)
    labels = Labels(y, matrix.prov, ("level",), frozenset())
    manifest = save_labels(tmp_path / "y", labels)
    assert "data" not in manifest.files and "prov" not in manifest.files
    y_files = _segment_files(tmp_path / "y", "y")
    assert len(y_files) == len(_segment_files(tmp_path / "X", "X")) > 5
    mine, theirs = _segment_files(tmp_path / "y", "prov"), _segment_files(tmp_path / "X", "prov")
    assert mine and _inodes(mine) == _inodes(theirs)
    back = load_labels(tmp_path / "y").labels
    assert back.y.dtype == y.dtype
    np.testing.assert_array_equal(back.y, y)
    _assert_same_prov(back.prov, matrix.prov)
    assert back.inputs == ("level",)
    probed = load_provenance(tmp_path / "y").prov
    assert probed is not None
    _assert_same_prov(probed, matrix.prov)


def test_empty_labels_round_trip(tmp_path: Path) -> None:
    prov = Prov(0, {"mails": np.zeros(0, np.uint64)})
    save_labels(tmp_path / "y", Labels(np.zeros(0, bool), prov, (), frozenset()))
    back = load_labels(tmp_path / "y").labels
    assert back.y.dtype == np.bool_ and back.y.shape == (0,) and back.prov.n == 0


# -- integrity -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("small_segments")
def test_a_damaged_segment_file_is_detected_unless_verify_is_off(tmp_path: Path) -> None:
    matrix = _realistic()
    manifest = save_matrix(tmp_path / "X", matrix)
    name = "X.00003"
    path = tmp_path / "X" / manifest.files[name].path
    described = manifest.content["X"]["segments"][3]
    assert described["file"] == name
    raw = bytearray(path.read_bytes())
    at, dtype, shape = described["layout"]["csr.indices"]
    indices = np.frombuffer(bytes(raw), dtype=np.dtype(dtype), count=shape[0], offset=at)
    last = int(np.flatnonzero(indices != 0)[-1])  # a value of a sparse (not pinned) column
    at, dtype, _ = described["layout"]["csr.data"]
    raw[at + np.dtype(dtype).itemsize * (last + 1) - 1] ^= 0x40  # its highest byte
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactIntegrityError, match=f"file '{name}'"):
        load_matrix(tmp_path / "X")
    with pytest.raises(ArtifactIntegrityError, match=f"file '{name}'"):
        verify(tmp_path / "X")
    damaged = load_matrix(tmp_path / "X", verify=False).matrix.X  # not checked: loads as is
    assert damaged.shape == matrix.X.shape
    assert (damaged != matrix.X).nnz == 1


@pytest.mark.parametrize("new_process", [False, True])
def test_rematerialising_repairs_a_damaged_segment_file(tmp_path: Path, new_process: bool) -> None:
    """A damaged file is never linked into a new version: the catalogue's entry (written by
    this process) no longer matches the file's inode and mtime, and a file of the previous
    version that nobody checked is read and compared with its fingerprint first."""
    matrix = _realistic(300)
    manifest = save_matrix(tmp_path / "X", matrix)
    path = tmp_path / "X" / manifest.files["X.00000"].path
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # damaged in place: same size
    written = path.stat()
    path.write_bytes(bytes(raw))
    # a later change moves the mtime (file timestamps may tick only every few ms: set it)
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns + 10**9))
    with pytest.raises(ArtifactIntegrityError):
        load_matrix(tmp_path / "X")
    if new_process:
        segments.CATALOGUE.clear()
    save_matrix(tmp_path / "X", matrix)  # what the error message advises
    _assert_same_csr(load_matrix(tmp_path / "X").matrix.X, matrix.X)


@pytest.mark.usefixtures("small_segments")
def test_a_catalogue_file_that_is_gone_falls_back_to_the_previous_versions_file(
    tmp_path: Path,
) -> None:
    """The catalogue remembers the latest file of each content (here the model's, which is
    then deleted); the artifact's previous version still holds the same content: linked."""
    import shutil

    matrix = _realistic(2000)
    first = save_matrix(tmp_path / "X", matrix)
    save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X}, row_prov=matrix.prov)
    shutil.rmtree(tmp_path / "model")  # the catalogue's files for this content are gone
    again = save_matrix(tmp_path / "X", matrix)
    assert again.content["segments_written"] == 0
    assert again.content["segments_linked"] == first.content["segments_written"]
    for name, entry in again.files.items():
        if name.startswith("X."):
            old = tmp_path / "X" / first.files[name].path
            assert os.stat(tmp_path / "X" / entry.path).st_ino == os.stat(old).st_ino
