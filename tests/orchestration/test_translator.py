"""The translator: default specs, a subclass changing keys and groups, and code versions that
change exactly for the steps whose code changed."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import dagster as dg
from sklearn.linear_model import LogisticRegression

from lester_dagster.examples.complaints import prepare_frames
from lester_dagster.frame import Frame, col
from lester_dagster.orchestration import (
    LesterIOManager,
    LesterPipeline,
    LesterTranslator,
    SplitSpec,
    Step,
    build_definitions,
)
from lester_dagster.orchestration.definitions import pipeline_resources
from tests.orchestration.conftest import EXAMPLE_KEYS


def _graph(defs: dg.Definitions) -> Any:
    return defs.resolve_asset_graph()


def _versions(pipeline: LesterPipeline) -> dict[str, str]:
    translator = LesterTranslator()
    return {s.name: translator.get_code_version(pipeline, s) for s in pipeline.steps}


def test_default_specs_of_the_running_example(pipeline: LesterPipeline) -> None:
    graph = _graph(build_definitions(pipeline))
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == EXAMPLE_KEYS
    for key in keys:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "complaints"
        assert node.code_version and node.description
        assert node.tags["lester/step"]
    assert graph.get(dg.AssetKey("customers")).kinds == {"pandas"}
    assert graph.get(dg.AssetKey("model")).kinds == {"scikit-learn"}
    assert graph.get(dg.AssetKey("X_train")).kinds == {"scikit-learn", "numpy"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("complaints")).parent_keys} == {
        "customers", "mails"
    }  # fmt: skip
    assert "'customer_id'" in graph.get(dg.AssetKey("customers")).description


class Prefixed(LesterTranslator):
    def get_group_name(self, pipeline: LesterPipeline, step: Step) -> str:
        return "ml_" + pipeline.name

    def get_tags(self, pipeline: LesterPipeline, step: Step) -> dict[str, str]:
        return {**super().get_tags(pipeline, step), "team": "risk"}


def test_a_subclass_changes_keys_groups_and_tags_and_still_runs(
    pipeline: LesterPipeline, tmp_path: Path
) -> None:
    defs = build_definitions(pipeline, Prefixed(key_prefix="ml"))
    graph = _graph(defs)
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"ml/{k}" for k in EXAMPLE_KEYS}
    model = graph.get(dg.AssetKey(["ml", "model"]))
    assert model.group_name == "ml_complaints" and model.tags["team"] == "risk"
    # every asset has no_deleted_data; the model also model_equals_refit
    assert {c.asset_key.to_user_string() for c in graph.asset_check_keys} == {
        f"ml/{k}" for k in EXAMPLE_KEYS
    }
    manager = LesterIOManager(base_path=str(tmp_path))
    defs = build_definitions(pipeline, Prefixed(key_prefix="ml"), io_manager=manager)
    result = dg.materialize(
        [*(defs.assets or ()), *(defs.asset_checks or ())],
        resources=pipeline_resources(manager),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert all(c.passed for c in result.get_asset_check_evaluations())
    lineage = next(
        e.materialization.metadata["dagster/column_lineage"].value
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["ml", "complaints"])
    )
    assert {d.asset_key for d in lineage.deps_by_column["country"]} == {
        dg.AssetKey(["ml", "customers"])
    }
    assert (tmp_path / "ml" / "model" / "manifest.json").exists()


def test_code_versions_are_stable(pipeline: LesterPipeline) -> None:
    assert _versions(pipeline) == _versions(pipeline)
    assert len(set(_versions(pipeline).values())) == len(pipeline.steps)


def _prepare_only_de(customers: Frame, mails: Frame) -> Frame:
    return prepare_frames(customers.filter(col("country") == "DE"), mails)


def test_a_changed_prepare_changes_only_the_prepared_version(pipeline: LesterPipeline) -> None:
    before = _versions(pipeline)
    after = _versions(LesterPipeline(**{**pipeline.__dict__, "prepare": _prepare_only_de}))
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"complaints"}


def test_model_parameters_change_the_training_versions(pipeline: LesterPipeline) -> None:
    before = _versions(pipeline)
    factory = functools.partial(LogisticRegression, C=0.5, max_iter=1000)
    after = _versions(dataclasses.replace(pipeline, model=factory))
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"X_train", "model", "X_test"}


def test_split_changes_change_train_and_test(pipeline: LesterPipeline) -> None:
    before = _versions(pipeline)
    split = SplitSpec(by="customers", test_fraction=0.3, seed=0)
    after = _versions(dataclasses.replace(pipeline, split=split))
    assert {k for k in before if before[k] != after[k]} == {"train", "test"}
