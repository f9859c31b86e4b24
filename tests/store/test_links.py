"""A matrix written once for two artifacts (store.links): X_train's X file hard-linked into the
model state's version, only while it is the same, unchanged object."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lester_dagster.features import FeatureMatrix, Labels
from lester_dagster.frame import KeyResolver, Prov
from lester_dagster.store import collect_garbage, links
from lester_dagster.store.artifacts import (
    load_labels,
    load_matrix,
    load_object,
    save_labels,
    save_matrix,
    save_object,
)


@pytest.fixture(autouse=True)
def _fresh_links() -> Iterator[None]:
    links.forget_all()
    yield
    links.forget_all()


def _matrix(rows: int = 30) -> FeatureMatrix:
    X = sp.random(rows, 12, density=0.3, format="csr", random_state=0)
    prov = Prov(rows, {"mails": np.arange(rows, dtype=np.uint64) + 1})
    return FeatureMatrix(X, prov, (), KeyResolver({}))


def _file(root: Path, name: str) -> Path:
    manifest = load_object(root).manifest if name != "X" else load_matrix(root).manifest
    return root / manifest.files[name].path


def test_the_model_links_the_x_file_that_x_train_just_wrote(tmp_path: Path) -> None:
    matrix = _matrix()
    state = {"X": matrix.X, "coef": np.arange(12.0), "again": matrix.X}
    save_matrix(tmp_path / "X_train", matrix)
    manifest = save_object(tmp_path / "model", state, shared={"X": matrix.X})
    x_file, linked = _file(tmp_path / "X_train", "X"), _file(tmp_path / "model", "shared-X")
    assert os.stat(x_file).st_ino == os.stat(linked).st_ino and os.stat(linked).st_nlink == 2
    assert (
        manifest.files["shared-X"].sha256
        == load_matrix(tmp_path / "X_train").manifest.files["X"].sha256
    )
    back = load_object(tmp_path / "model").value
    assert (back["X"] != matrix.X).nnz == 0 and back["again"] is back["X"]
    # the pickle holds a reference, not the data
    assert manifest.files["buffers"].bytes < matrix.X.data.nbytes


def test_a_changed_object_is_written_not_linked(tmp_path: Path) -> None:
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    matrix.X.data[0] += 1.0  # changed in place after X_train was written
    save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X})
    linked = _file(tmp_path / "model", "shared-X")
    assert os.stat(linked).st_nlink == 1
    assert load_object(tmp_path / "model").value["X"].data[0] == matrix.X.data[0]
    assert load_matrix(tmp_path / "X_train").matrix.X.data[0] != matrix.X.data[0]


def test_another_object_with_equal_values_is_written_not_linked(tmp_path: Path) -> None:
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    copy = matrix.X.copy()
    save_object(tmp_path / "model", {"X": copy}, shared={"X": copy})
    assert os.stat(_file(tmp_path / "model", "shared-X")).st_nlink == 1


def test_a_collected_source_file_falls_back_to_writing(tmp_path: Path) -> None:
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    save_matrix(tmp_path / "X_train", _matrix(10))  # a new version ...
    collect_garbage(tmp_path / "X_train")  # ... and the old one (holding matrix) is gone
    save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X})
    back = load_object(tmp_path / "model").value
    assert (back["X"] != matrix.X).nnz == 0
    assert os.stat(_file(tmp_path / "model", "shared-X")).st_nlink == 1


def test_forgotten_data_goes_when_both_versions_go(tmp_path: Path) -> None:
    """The link keeps the old X alive only as long as the model's old version lives."""
    matrix = _matrix()
    save_matrix(tmp_path / "X_train", matrix)
    save_object(tmp_path / "model", {"X": matrix.X}, shared={"X": matrix.X})
    old = _file(tmp_path / "X_train", "X")
    inode = os.stat(old).st_ino
    smaller = _matrix(20)
    save_matrix(tmp_path / "X_train", smaller)
    save_object(tmp_path / "model", {"X": smaller.X}, shared={"X": smaller.X})
    collect_garbage(tmp_path / "X_train")
    collect_garbage(tmp_path / "model")
    left = {p.stat().st_ino for p in tmp_path.rglob("*") if p.is_file()}
    assert inode not in left and not old.exists()


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
    manifest = save_labels(tmp_path / "y", labels, sources={"mails": keys})
    x_files = load_matrix(tmp_path / "X").manifest.files
    for name in ("prov", "keys-0"):
        mine, theirs = (
            tmp_path / "y" / manifest.files[name].path,
            tmp_path / "X" / x_files[name].path,
        )
        assert os.stat(mine).st_ino == os.stat(theirs).st_ino, name
    back = load_labels(tmp_path / "y")
    np.testing.assert_array_equal(back.labels.y, labels.y)
    np.testing.assert_array_equal(back.labels.prov.keys["mails"], matrix.prov.keys["mails"])
    pd.testing.assert_frame_equal(back.key_indexes["mails"], keys)
    # other provenance (other rows) is written, not linked
    fewer = Labels(labels.y[:10], matrix.prov.take(np.arange(10)), ("level",), frozenset())
    again = save_labels(tmp_path / "y10", fewer)
    assert os.stat(tmp_path / "y10" / again.files["prov"].path).st_nlink == 1


def test_key_indexes_with_text_keys_are_written_not_linked() -> None:
    index = pd.DataFrame({"email": ["a@x", "b@x"]}, index=pd.Index([1, 2], dtype=np.uint64))
    assert links.fingerprint(index) is None
    numeric = pd.DataFrame({"id": [3, 4]}, index=pd.Index([1, 2], dtype=np.uint64))
    assert links.fingerprint(numeric) != links.fingerprint(numeric.iloc[::-1])
