"""The IO manager: round trips of every artifact type through Dagster's IO contexts, default
paths, object storage via UPath, and atomicity under a crash between writing and committing."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lester_dagster.errors import ArtifactNotFoundError
from lester_dagster.examples.complaints import LABEL_INPUTS, feature_encoding, label, model, prepare
from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.frame import KeyResolver, Result, col, from_pandas
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import (
    FrameArtifact,
    LabelsArtifact,
    LesterIOManager,
    LesterPipeline,
    default_base_path,
    lester_home,
)
from lester_dagster.orchestration import steps as pipeline_steps
from lester_dagster.store import atomic

KEY = dg.AssetKey(["ml", "thing"])


def _store(manager: LesterIOManager, value: Any, key: dg.AssetKey = KEY) -> dict[str, Any]:
    context = dg.build_output_context(asset_key=key, run_id="r1")
    manager.handle_output(context, value)
    return {k: v.value for k, v in context.get_logged_metadata().items()}


def _load(manager: LesterIOManager, key: dg.AssetKey = KEY) -> Any:
    return manager.load_input(dg.build_input_context(asset_key=key))


@pytest.fixture(scope="module")
def train(sources: tuple[Path, Path]) -> Result:
    result, _ = (r.execute() for r in prepare(*sources).split(by="customers", seed=0))
    return result


@pytest.fixture(scope="module")
def state(train: Result) -> TrainingState:
    return TrainingState.fit(train, feature_encoding(), label, model(), label_inputs=LABEL_INPUTS)


def _dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def test_frame_round_trip_keeps_rows_provenance_lineage_and_keys(
    tmp_path: Path, train: Result
) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    artifact = FrameArtifact.from_result(train)
    meta = _store(manager, artifact)
    assert meta["lester/artifact_path"] == str(tmp_path / "ml" / "thing")
    assert len(meta["lester/manifest_digest"]) == 64
    loaded = _load(manager)
    assert isinstance(loaded, FrameArtifact)
    assert loaded.data.equals(artifact.data)
    assert loaded.lineage == dict(train.schema.lineage)
    for source in ("customers", "mails"):
        assert np.array_equal(loaded.prov.keys[source], train.prov.keys[source])
    customer = artifact.data["customer_id"].iloc[3]
    restored = loaded.to_result()
    assert restored.lineage.forward("customers", [customer]) == train.lineage.forward(
        "customers", [customer]
    )


def test_matrix_labels_and_model_state_round_trip(
    tmp_path: Path, state: TrainingState, pipeline: LesterPipeline, train: Result
) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    _store(manager, state.features, dg.AssetKey("X"))
    X = _load(manager, dg.AssetKey("X"))
    assert isinstance(X, FeatureMatrix)
    assert np.array_equal(_dense(X.X), _dense(state.X))
    assert X.blocks == state.features.blocks

    labels = pipeline_steps.training_labels(pipeline, state, FrameArtifact.from_result(train))
    _store(manager, labels, dg.AssetKey("y"))
    y = _load(manager, dg.AssetKey("y"))
    assert isinstance(y, LabelsArtifact)
    assert np.array_equal(y.y, state.y) and y.y.dtype == state.y.dtype
    assert y.labels.inputs == LABEL_INPUTS
    assert {str(r) for r in y.labels.lineage} == {"mails.text", "customers.level"}

    _store(manager, state, dg.AssetKey("model"))
    loaded = _load(manager, dg.AssetKey("model"))
    assert isinstance(loaded, TrainingState)
    assert np.array_equal(loaded.model.coef_, state.model.coef_)
    assert manager.manifest(dg.AssetKey("model")).rows == len(state.y)


def test_training_state_pickles_without_the_result(state: TrainingState, train: Result) -> None:
    assert isinstance(state.features.resolve, KeyResolver)
    copy = pickle.loads(pickle.dumps(state))
    customer = train.to_pandas()["customer_id"].iloc[0]
    assert copy.rows_of("customers", [customer]).tolist() == train.lineage.forward(
        "customers", [customer]
    )
    assert np.array_equal(copy.model.coef_, state.model.coef_)


def test_an_unknown_asset_says_to_materialise_it(tmp_path: Path) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    with pytest.raises(ArtifactNotFoundError, match="materialise the asset first"):
        _load(manager, dg.AssetKey("missing"))


def _frame(value: int) -> FrameArtifact:
    return FrameArtifact.from_result(
        from_pandas(pd.DataFrame({"k": [1, 2, 3], "v": [value] * 3}), name="s", key="k")
        .filter(col("k") > 0)
        .execute()
    )


@pytest.mark.parametrize("crash", ["commit", "manifest_rename"])
def test_a_crash_before_the_commit_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    _store(manager, _frame(1))
    before = manager.manifest(KEY)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("simulated crash")

    if crash == "commit":  # the new version's files are written, the manifest is not
        monkeypatch.setattr(atomic.Version, "commit", boom)
    else:  # the manifest's temporary file is written but never renamed into place
        monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        _store(manager, _frame(2))
    monkeypatch.undo()
    assert manager.manifest(KEY).version == before.version
    assert _load(manager).data["v"].tolist() == [1, 1, 1]
    artifact_dir = tmp_path / "ml" / "thing"
    leftovers = sorted(p.name for p in artifact_dir.iterdir())
    assert leftovers == ["manifest.json", before.version]  # no half-written version or temp file
    _store(manager, _frame(3))
    assert _load(manager).data["v"].tolist() == [3, 3, 3]


def test_object_storage_through_upath() -> None:
    manager = LesterIOManager(base_path="memory://lester-test/artifacts")
    _store(manager, _frame(7))
    assert _load(manager).data["v"].tolist() == [7, 7, 7]
    assert str(manager.path_for(KEY)).startswith("memory://")


def test_default_base_path_is_under_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert default_base_path() == tmp_path / "lester" / "artifacts"
    assert Path(LesterIOManager().path_for(KEY).path) == tmp_path / "lester/artifacts/ml/thing"
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("LESTER_HOME", str(tmp_path / "home"))
    assert lester_home() == tmp_path / "home"
    monkeypatch.delenv("LESTER_HOME")
    assert lester_home() == Path.home() / ".lester-dagster"


def test_partitioned_outputs_get_their_own_directory(tmp_path: Path) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    assert manager.path_for(KEY, "3") == manager.path_for(KEY) / "3"
