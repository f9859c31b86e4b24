"""A matrix written once for two artifacts: X_train's X hard-linked into the model state's
version. A CSR X with single provenance is stored in row segments (store.segments), linked by
content; other matrices (CSC, dense) as one file (store.links), linked only while they are the
same, unchanged object."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lester_dagster.features import FeatureMatrix, Labels
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.store import collect_garbage, links, read_manifest, segments
from lester_dagster.store.artifacts import (
    load_labels,
    load_matrix,
    load_object,
    save_labels,
    save_matrix,
    save_object,
)


def _matrix(rows: int = 30, fmt: str = "csr") -> FeatureMatrix:
    X = sp.random(rows, 12, density=0.3, format=fmt, random_state=0)
    prov = Prov(rows, {"mails": np.arange(rows, dtype=np.uint64) + 1})
    return FeatureMatrix(X, prov, (), KeyResolver({}))


def _file(root: Path, name: str) -> Path:
    manifest = load_object(root).manifest if name != "X" else load_matrix(root).manifest
    return root / manifest.files[name].path


def _segment_files(root: Path, prefix: str) -> dict[str, Path]:
    """The segment files of the committed version of ``root`` whose manifest names start with
    ``prefix`` (``X.00000``, ``X-pinned.00000``, ...), by name without the prefix."""
    return {
        name[len(prefix) :]: root / entry.path
        for name, entry in read_manifest(root).files.items()
        if name.startswith(prefix) and segments.ADDRESSED.search(entry.path)
    }


def _save_model(root: Path, matrix: FeatureMatrix, state: dict[str, object]) -> None:
    """The model state holding ``matrix.X``, stored in row segments (as the IO manager does)."""
    save_object(root, state, shared={"X": matrix.X}, row_prov=matrix.prov)


def test_the_model_links_the_x_file_that_x_train_just_wrote(tmp_path: Path) -> None:
    matrix = _matrix()
    state = {"X": matrix.X, "coef": np.arange(12.0), "again": matrix.X}
    save_matrix(tmp_path / "X_train", matrix)
    manifest = save_object(tmp_path / "model", state, shared={"X": matrix.X}, row_prov=matrix.prov)
    x_files = _segment_files(tmp_path / "X_train", "X")
    linked = _segment_files(tmp_path / "model", "shared-X")
    assert x_files and set(linked) == set(x_files)  # ".00000", "-pinned.00000", ...
    for name, path in linked.items():
        assert os.stat(path).st_ino == os.stat(x_files[name]).st_ino, name
        assert os.stat(path).st_nlink == 2, name
    x_manifest = load_matrix(tmp_path / "X_train").manifest
    for name in linked:
        assert manifest.files[f"shared-X{name}"].sha256 == x_manifest.files[f"X{name}"].sha256
    back = load_object(tmp_path / "model").value
    assert (back["X"] != matrix.X).nnz == 0 and back["again"] is back["X"]
    # the pickle holds a reference, not the data
    assert manifest.files["buffers"].bytes < matrix.X.data.nbytes


@pytest.mark.parametrize("fmt", ["csc", "csr"])
def test_a_changed_object_is_written_not_linked(tmp_path: Path, fmt: str) -> None:
    """CSC: the identity link is refused once the object changed; CSR (row segments): the
    segment holding the changed value has other content, so its file is written anew."""
    matrix = _matrix(fmt=fmt)
    save_matrix(tmp_path / "X_train", matrix)
    matrix.X.data[0] += 1.0  # changed in place after X_train was written
    if fmt == "csr":
        _save_model(tmp_path / "model", matrix, {"X": matrix.X})
        written = _segment_files(tmp_path / "model", "shared-X")
        assert written and all(os.stat(p).st_nlink == 1 for p in written.values())
    else:
        save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X})
        assert os.stat(_file(tmp_path / "model", "shared-X")).st_nlink == 1
    assert load_object(tmp_path / "model").value["X"].data[0] == matrix.X.data[0]
    assert load_matrix(tmp_path / "X_train").matrix.X.data[0] != matrix.X.data[0]


def test_another_object_with_equal_values_is_written_not_linked(tmp_path: Path) -> None:
    """The identity rule of one-file matrices (a CSC X); row segments link by content."""
    matrix = _matrix(fmt="csc")
    save_matrix(tmp_path / "X_train", matrix)
    copy = matrix.X.copy()
    save_object(tmp_path / "model", {"X": copy}, shared={"X": copy})
    assert os.stat(_file(tmp_path / "model", "shared-X")).st_nlink == 1


def test_segments_of_another_object_with_equal_values_are_linked(tmp_path: Path) -> None:
    """Segment files are named by their content: an equal copy of X links them too."""
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    copy = FeatureMatrix(matrix.X.copy(), matrix.prov, (), KeyResolver({}))
    _save_model(tmp_path / "model", copy, {"X": copy.X})
    linked = _segment_files(tmp_path / "model", "shared-X")
    assert linked and all(os.stat(p).st_nlink == 2 for p in linked.values())


@pytest.mark.parametrize("fmt", ["csc", "csr"])
def test_a_collected_source_file_falls_back_to_writing(tmp_path: Path, fmt: str) -> None:
    matrix = _matrix(fmt=fmt)
    save_matrix(tmp_path / "X_train", matrix)
    save_matrix(tmp_path / "X_train", _matrix(10, fmt))  # a new version ...
    collect_garbage(tmp_path / "X_train")  # ... and the old one (holding matrix) is gone
    if fmt == "csr":
        _save_model(tmp_path / "model", matrix, {"X": matrix.X})
        written = list(_segment_files(tmp_path / "model", "shared-X").values())
    else:
        save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X})
        written = [_file(tmp_path / "model", "shared-X")]
    back = load_object(tmp_path / "model").value
    assert (back["X"] != matrix.X).nnz == 0
    assert written and all(os.stat(p).st_nlink == 1 for p in written)


def test_forgotten_data_goes_when_both_versions_go(tmp_path: Path) -> None:
    """The link keeps the old X alive only as long as the model's old version lives."""
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    _save_model(tmp_path / "model", matrix, {"X": matrix.X})
    old = [
        *_segment_files(tmp_path / "X_train", "").values(),
        *_segment_files(tmp_path / "model", "").values(),
    ]
    assert any(p.name.startswith("X-") for p in old)
    assert any(p.name.startswith("shared-X-") for p in old)
    inodes = {os.stat(p).st_ino for p in old}
    smaller = _matrix(20)
    save_matrix(tmp_path / "X_train", smaller)
    _save_model(tmp_path / "model", smaller, {"X": smaller.X})
    # until collected, the old versions still hold the old rows
    assert all(p.exists() for p in old)
    collect_garbage(tmp_path / "X_train")
    collect_garbage(tmp_path / "model")
    left = {p.stat().st_ino for p in tmp_path.rglob("*") if p.is_file()}
    assert not inodes & left and not any(p.exists() for p in old)
    assert (load_object(tmp_path / "model").value["X"] != smaller.X).nnz == 0


def test_dense_matrices_link_too_and_other_values_never_do(tmp_path: Path) -> None:
    dense = np.arange(24.0).reshape(6, 4)
    prov = Prov(6, {"mails": np.arange(6, dtype=np.uint64) + 1})
    save_matrix(tmp_path / "X_train", FeatureMatrix(dense, prov, (), KeyResolver({})))
    save_object(tmp_path / "model", {"X": dense}, shared={"X": dense})
    assert os.stat(_file(tmp_path / "model", "shared-X")).st_nlink == 2
    assert links.fingerprint([1, 2]) is None and links.fingerprint(sp.coo_matrix(dense)) is None


def test_y_links_the_provenance_and_key_indexes_that_x_of_the_same_rows_wrote(
    tmp_path: Path,
) -> None:
    matrix = _matrix()
    keys = pd.DataFrame(
        {"mail_id": np.arange(30, dtype=np.int64) * 7},
        index=pd.Index(matrix.prov.keys["mails"], dtype=np.uint64, name="key_id"),
    )
    save_matrix(tmp_path / "X", matrix, sources={"mails": keys})
    labels = Labels(np.arange(30) % 2, matrix.prov, ("level",), frozenset())
    save_labels(tmp_path / "y", labels, sources={"mails": keys})
    for prefix in ("prov", "keys-0"):  # row segments of the key ids, of the key index
        mine = _segment_files(tmp_path / "y", prefix)
        theirs = _segment_files(tmp_path / "X", prefix)
        assert mine and set(mine) == set(theirs), prefix
        for name, path in mine.items():
            assert os.stat(path).st_ino == os.stat(theirs[name]).st_ino, f"{prefix}{name}"
    back = load_labels(tmp_path / "y")
    np.testing.assert_array_equal(back.labels.y, labels.y)
    np.testing.assert_array_equal(back.labels.prov.keys["mails"], matrix.prov.keys["mails"])
    pd.testing.assert_frame_equal(back.key_indexes["mails"], keys)
    # other provenance (other rows) is written, not linked
    fewer = Labels(labels.y[:10], matrix.prov.take(np.arange(10)), ("level",), frozenset())
    save_labels(tmp_path / "y10", fewer)
    written = _segment_files(tmp_path / "y10", "prov")
    assert written and all(os.stat(p).st_nlink == 1 for p in written.values())


def test_key_indexes_with_text_keys_are_written_not_linked() -> None:
    index = pd.DataFrame({"email": ["a@x", "b@x"]}, index=pd.Index([1, 2], dtype=np.uint64))
    assert links.fingerprint(index) is None
    numeric = pd.DataFrame({"id": [3, 4]}, index=pd.Index([1, 2], dtype=np.uint64))
    assert links.fingerprint(numeric) != links.fingerprint(numeric.iloc[::-1])
