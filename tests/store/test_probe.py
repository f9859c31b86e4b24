"""Probes: an artifact's provenance and key ids, or its empty schema, read without its data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from lester_dagster.errors import ArtifactError, ArtifactNotFoundError
from lester_dagster.features import Labels
from lester_dagster.frame import Prov, Result
from lester_dagster.store.artifacts import (
    load_frame,
    load_labels,
    load_matrix,
    save_frame,
    save_labels,
    save_matrix,
    save_object,
    save_result,
)
from lester_dagster.store.probe import load_empty_frame, load_provenance

from .test_artifacts import (  # type: ignore[import-not-found]
    FRAMES,
    _encoding,
    _prepared,
    assert_prov_equal,
    grouped,  # noqa: F401 - fixture
    joined,  # noqa: F401 - fixture
    mem,  # noqa: F401 - fixture
)


def _key_ids(indexes: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    return {s: index.index.to_numpy(dtype=np.uint64) for s, index in indexes.items()}


def _assert_ids_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for source in want:
        np.testing.assert_array_equal(got[source], want[source])


@pytest.mark.parametrize("case", sorted(FRAMES))
def test_a_frames_provenance_is_the_full_loads(tmp_path: Path, case: str) -> None:
    data, prov = FRAMES[case]
    save_frame(tmp_path, data, prov)
    full = load_frame(tmp_path)
    probe = load_provenance(tmp_path)
    assert probe.prov is not None
    assert_prov_equal(probe.prov, full.prov)
    assert probe.manifest.digest == full.manifest.digest


@pytest.mark.parametrize("fixture", ["joined", "grouped"])
def test_key_ids_are_those_of_the_stored_key_indexes(
    tmp_path: Path, fixture: str, request: pytest.FixtureRequest
) -> None:
    result: Result = request.getfixturevalue(fixture)
    save_result(tmp_path, result)
    full = load_frame(tmp_path)
    probe = load_provenance(tmp_path)
    assert probe.prov is not None
    assert_prov_equal(probe.prov, full.prov)
    _assert_ids_equal(dict(probe.key_ids), _key_ids(dict(full.key_indexes)))
    assert all(len(v) for v in probe.key_ids.values())


def test_labels_and_matrices_and_objects(tmp_path: Path, joined: Result) -> None:  # noqa: F811
    labels = Labels(np.arange(joined.prov.n) % 2, joined.prov, ("text",), frozenset())
    save_labels(tmp_path / "y", labels, sources=joined.sources)
    probe = load_provenance(tmp_path / "y")
    assert probe.prov is not None
    assert_prov_equal(probe.prov, load_labels(tmp_path / "y").labels.prov)
    _assert_ids_equal(dict(probe.key_ids), _key_ids(dict(load_labels(tmp_path / "y").key_indexes)))

    from lester_dagster.features import fit_encode

    _, matrix = fit_encode(_encoding(True), _prepared())
    save_matrix(tmp_path / "X", matrix, sources=_prepared().sources)
    probe = load_provenance(tmp_path / "X")
    stored = load_matrix(tmp_path / "X")
    assert probe.prov is not None
    assert_prov_equal(probe.prov, stored.matrix.prov)
    _assert_ids_equal(dict(probe.key_ids), _key_ids(dict(stored.key_indexes)))

    save_object(tmp_path / "o", {"a": 1})
    probe = load_provenance(tmp_path / "o")
    assert probe.prov is None and dict(probe.key_ids) == {}


def test_probes_work_on_remote_paths(mem: UPath, joined: Result) -> None:  # noqa: F811
    save_result(mem, joined)
    probe = load_provenance(mem)
    assert probe.prov is not None
    assert_prov_equal(probe.prov, joined.prov)


@pytest.mark.parametrize("case", sorted(FRAMES))
def test_an_empty_frame_has_the_stored_columns_and_dtypes(tmp_path: Path, case: str) -> None:
    data, prov = FRAMES[case]
    save_frame(tmp_path, data, prov)
    full = load_frame(tmp_path)
    frame, empty_prov, indexes, manifest = load_empty_frame(tmp_path)
    assert len(frame) == 0 and empty_prov.n == 0
    assert empty_prov.sources == full.prov.sources
    assert list(frame.columns) == list(full.data.columns)
    assert dict(frame.dtypes) == dict(full.data.dtypes)
    assert manifest.digest == full.manifest.digest
    assert indexes == {}


def test_empty_key_indexes_keep_the_key_columns_types(tmp_path: Path, joined: Result) -> None:  # noqa: F811
    save_result(tmp_path, joined)
    full = load_frame(tmp_path)
    _, _, indexes, _ = load_empty_frame(tmp_path)
    assert sorted(indexes) == sorted(full.key_indexes)
    for source, index in full.key_indexes.items():
        assert len(indexes[source]) == 0
        assert dict(indexes[source].dtypes) == dict(index.dtypes)
        assert indexes[source].index.dtype == np.uint64


def test_missing_and_wrong_artifacts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError):
        load_provenance(tmp_path / "nothing")
    save_object(tmp_path / "o", [1, 2])
    with pytest.raises(ArtifactError, match="not a 'frame'"):
        load_empty_frame(tmp_path / "o")


def test_a_multi_provenance_round_trips(tmp_path: Path) -> None:
    prov = Prov(3, {"a": np.array([1, 2, 3, 4], dtype=np.uint64)}, np.array([0, 2, 3, 4]))
    save_frame(tmp_path, pd.DataFrame({"x": [1, 2, 3]}), prov)
    probe = load_provenance(tmp_path)
    assert probe.prov is not None
    assert_prov_equal(probe.prov, prov)
