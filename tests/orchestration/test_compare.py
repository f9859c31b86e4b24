"""compare_stores: equal stores compare ok; every kind of difference is caught."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.orchestration import build_assets
from lester_dagster.orchestration.compare import compare_stores
from lester_dagster.orchestration.io_manager import LesterIOManager

from .test_forgetting import materialise_all

CUSTOMERS = 150


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    customers, _ = write_complaints(tmp / "data", CUSTOMERS, seed=4)
    pipeline = make_pipeline(customers.parent, CUSTOMERS)
    materialise_all(pipeline, tmp / "a")
    materialise_all(pipeline, tmp / "b")
    return pipeline, tmp / "a", tmp / "b"


def _copy(src: Path, dst: Path) -> LesterIOManager:
    shutil.copytree(src, dst)
    return LesterIOManager(base_path=str(dst))


def test_two_materialisations_compare_equal(stores: Any) -> None:
    pipeline, a, b = stores
    result = compare_stores(
        build_assets(pipeline), LesterIOManager(base_path=str(a)), LesterIOManager(base_path=str(b))
    )
    assert result.ok, result.lines()
    assert result.model_distance == 0.0


def test_a_dropped_row_and_a_changed_value_are_caught(stores: Any, tmp_path: Path) -> None:
    pipeline, a, b = stores
    built = build_assets(pipeline)
    io = _copy(a, tmp_path / "a")
    train = io.load(built.key("train"))
    io.store(built.key("train"), train.take(np.arange(1, len(train))))
    result = compare_stores(built, io, LesterIOManager(base_path=str(b)))
    assert not result.ok and result.frames["train"] is False and result.frames["test"] is True


def test_a_changed_x_entry_and_model_are_caught(stores: Any, tmp_path: Path) -> None:
    pipeline, a, b = stores
    built = build_assets(pipeline)
    io = _copy(a, tmp_path / "a")
    x = io.load(built.key("X_test"))
    X = x.X.toarray() if hasattr(x.X, "toarray") else np.array(x.X)
    X[0, 0] += 1e-6
    io.store(built.key("X_test"), FeatureMatrix(X, x.prov, x.blocks, x.resolve))
    state = io.load(built.key("model"))
    state.model.coef_[0, 0] += 1.0
    io.store(built.key("model"), state)
    result = compare_stores(built, io, LesterIOManager(base_path=str(b)))
    assert not result.ok
    assert result.x_max_diff["X_test"] == pytest.approx(1e-6)
    assert result.x_max_diff["X_train"] == 0.0
    assert result.model_distance == pytest.approx(1.0)


def test_a_missing_asset_is_a_problem(stores: Any, tmp_path: Path) -> None:
    pipeline, a, b = stores
    built = build_assets(pipeline)
    io = _copy(a, tmp_path / "a")
    shutil.rmtree(io.path_for(dg.AssetKey("y_test")))
    result = compare_stores(built, io, LesterIOManager(base_path=str(b)))
    assert not result.ok and any("y_test" in p for p in result.problems)
