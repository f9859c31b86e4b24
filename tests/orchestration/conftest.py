"""Shared fixtures: the running example on small generated data, materialised once per module
with ``dagster.materialize`` in an ephemeral instance and a temporary artifact root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from definitions.complaints import make_pipeline
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import (
    LesterIOManager,
    LesterPipeline,
    build_definitions,
)
from lester_dagster.orchestration.definitions import pipeline_resources
from lester_dagster.store import segments

CUSTOMERS = 300
EXAMPLE_KEYS = {
    "customers", "mails", "complaints", "train", "test", "X_train", "y_train", "X_test",
    "y_test", "model",
}  # fmt: skip


@dataclass
class Materialised:
    """One materialisation of a pipeline: the run's result, the artifact root, the pipeline."""

    result: dg.ExecuteInProcessResult
    base: Path
    pipeline: LesterPipeline
    manager: LesterIOManager

    def metadata(self, key: str) -> dict[str, Any]:
        """The raw metadata values of asset ``key``'s (last) materialisation."""
        events = [
            e
            for e in self.result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(key)
        ]
        assert events, f"asset {key} was not materialised"
        materialization = events[-1].materialization
        return {k: v.value for k, v in materialization.metadata.items()}

    @property
    def materialised(self) -> set[str]:
        return {
            e.asset_key.to_user_string() for e in self.result.get_asset_materialization_events()
        }

    def checks(self) -> dict[tuple[str, str], bool]:
        return {
            (c.asset_key.to_user_string(), c.check_name): c.passed
            for c in self.result.get_asset_check_evaluations()
        }

    def check_description(self, asset: str, name: str) -> str:
        for c in self.result.get_asset_check_evaluations():
            if c.asset_key == dg.AssetKey(asset) and c.check_name == name:
                return str(c.description)
        raise KeyError((asset, name))


def materialise(
    pipeline: LesterPipeline, base: Path, *, raise_on_error: bool = True
) -> Materialised:
    # as a new process would: no segment files of other tests' stores to link
    segments.CATALOGUE.clear()
    manager = LesterIOManager(base_path=str(base))
    defs = build_definitions(pipeline, io_manager=manager)
    assets: list[Any] = [*(defs.assets or ()), *(defs.asset_checks or ())]
    result = dg.materialize(
        assets,
        resources=pipeline_resources(manager),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )
    return Materialised(result, base, pipeline, manager)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """customers.csv and mails.csv of the running example (300 customers, seed 5)."""
    return write_complaints(tmp_path_factory.mktemp("data"), CUSTOMERS, seed=5)


@pytest.fixture(scope="module")
def pipeline(sources: tuple[Path, Path]) -> LesterPipeline:
    return make_pipeline(sources[0].parent, CUSTOMERS)


@pytest.fixture(scope="module")
def run(pipeline: LesterPipeline, tmp_path_factory: pytest.TempPathFactory) -> Materialised:
    return materialise(pipeline, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def materialise_with() -> Callable[..., Materialised]:
    return materialise
