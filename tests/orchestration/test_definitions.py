"""Definitions: the job and schedule, discovery of pipeline modules, source generation, and a
second, differently shaped pipeline (parquet + JSON sources, composite and content-hash keys,
``**frames``, a Ridge model)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import definitions
from definitions.complaints import make_pipeline
from lester_dagster.errors import PlanError
from lester_dagster.orchestration import (
    IO_MANAGER_KEY,
    LesterIOManager,
    LesterPipeline,
    build_definitions,
    discover_definitions,
)
from lester_dagster.orchestration.definitions import pipeline_resources
from tests.orchestration.conftest import EXAMPLE_KEYS, materialise


def test_the_code_location_holds_the_running_example() -> None:
    defs = definitions.defs
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= EXAMPLE_KEYS
    job = defs.resolve_job_def("complaints_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= EXAMPLE_KEYS
    schedule = defs.resolve_schedule_def("complaints_nightly")
    assert schedule.job_name == "complaints_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert isinstance(defs.resources[IO_MANAGER_KEY], LesterIOManager)


def test_the_job_runs_the_asset_checks(pipeline: LesterPipeline, tmp_path: Path) -> None:
    manager = LesterIOManager(base_path=str(tmp_path))
    defs = build_definitions(pipeline, io_manager=manager)
    job = defs.resolve_job_def("complaints_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = result.get_asset_check_evaluations()
    # model_equals_refit (it refits the model) is left out of the job: it runs on demand
    assert len(checks) == 22 and all(c.passed for c in checks)
    assert "model_equals_refit" not in {c.check_name for c in checks}


def test_missing_sources_are_generated_and_say_so(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "fresh", customers=120)
    manager = LesterIOManager(base_path=str(tmp_path / "artifacts"))
    defs = build_definitions(pipeline, io_manager=manager)

    def generated() -> dict[str, bool]:
        result = dg.materialize(
            list(defs.assets or ()),
            selection=["customers", "mails"],
            resources=pipeline_resources(manager),
            instance=dg.DagsterInstance.ephemeral(),
        )
        return {
            e.asset_key.to_user_string(): e.materialization.metadata["lester/generated"].value
            for e in result.get_asset_materialization_events()
        }

    assert not (tmp_path / "fresh" / "customers.csv").exists()
    first = generated()
    assert first["customers"] or first["mails"]
    assert len(pd.read_csv(tmp_path / "fresh" / "customers.csv")) == 120
    assert generated() == {"customers": False, "mails": False}


def _write_package(root: Path, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, text in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(text))


EXAMPLE_MODULE = """
from pathlib import Path
from definitions.complaints import make_pipeline
pipeline = make_pipeline(Path({data!r}), 100)
"""


def _discover(root: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.syspath_prepend(str(root))
    try:
        return discover_definitions(name)
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_discovery_merges_pipeline_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = str(tmp_path / "data")
    _write_package(
        tmp_path,
        "pkg_ok",
        {
            "complaints": EXAMPLE_MODULE.format(data=data),
            "other": f"""
                from pathlib import Path
                from definitions.complaints import make_pipeline
                import dataclasses
                from lester_dagster.orchestration import LesterTranslator
                base = make_pipeline(Path({data!r}), 100)
                pipeline = dataclasses.replace(base, name="complaints_v2")
                translator = LesterTranslator(key_prefix="v2")
            """,
            "extra": """
                import dagster as dg
                @dg.asset
                def standalone() -> int:
                    return 1
                defs = dg.Definitions(assets=[standalone])
            """,
            "_private": "raise RuntimeError('modules starting with _ are not imported')",
        },
    )
    defs = _discover(tmp_path, "pkg_ok", monkeypatch)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    v2 = {f"v2/{k}" for k in EXAMPLE_KEYS - {"complaints"}} | {"v2/complaints_v2"}
    assert keys == EXAMPLE_KEYS | v2 | {"standalone"}
    assert defs.resolve_schedule_def("complaints_v2_nightly").job_name == "complaints_v2_job"
    # one forget_job for both pipelines, an IVM job and a deletion sensor each
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"forget_job", "complaints_apply_deletions", "complaints_v2_apply_deletions"} <= jobs
    sensors = (
        {s.name for s in defs.resolve_sensor_defs()}
        if hasattr(defs, "resolve_sensor_defs")
        else {s.name for s in defs.sensors or ()}
    )
    assert sensors == {"complaints_deletion_sensor", "complaints_v2_deletion_sensor"}


def test_discovery_reports_clashing_asset_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = str(tmp_path / "data")
    clash = f"""
        from pathlib import Path
        from definitions.complaints import make_pipeline
        import dataclasses
        base = make_pipeline(Path({data!r}), 100)
        pipeline = dataclasses.replace(base, name="complaints_copy")
    """
    _write_package(tmp_path, "pkg_clash", {"a": EXAMPLE_MODULE.format(data=data), "b": clash})
    with pytest.raises(PlanError, match=r"asset 'customers' is defined by both .*key_prefix"):
        _discover(tmp_path, "pkg_clash", monkeypatch)


def test_discovery_reports_duplicate_pipeline_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = EXAMPLE_MODULE.format(data=str(tmp_path / "data"))
    _write_package(tmp_path, "pkg_twice", {"a": module, "b": module})
    with pytest.raises(PlanError, match="two pipelines are named 'complaints'"):
        _discover(tmp_path, "pkg_twice", monkeypatch)


def test_discovery_rejects_a_non_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_package(tmp_path, "pkg_bad", {"a": "pipeline = 'not a pipeline'"})
    with pytest.raises(PlanError, match="not a LesterPipeline"):
        _discover(tmp_path, "pkg_bad", monkeypatch)


# -- a second pipeline shape -------------------------------------------------------------------
def people_prepare(**frames: object) -> object:
    from lester_dagster.frame import col

    people, visits = frames["people"], frames["visits"]
    return visits.join(people, on=["region", "pid"]).with_column(  # type: ignore[attr-defined]
        "spend2", col("spend") * 2
    )


def people_features() -> object:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [("age", StandardScaler(), ["age"]), ("region", OneHotEncoder(), ["region"])]
    )


def people_label(frame: pd.DataFrame) -> pd.Series:
    return frame["spend2"].astype(float)


def ridge() -> object:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1.0)


def test_a_parquet_and_json_pipeline_with_composite_and_hash_keys(tmp_path: Path) -> None:
    from lester_dagster.orchestration import SourceSpec, SplitSpec

    rng = np.random.default_rng(0)
    people = pd.DataFrame(
        {
            "region": np.repeat(["eu", "us"], 40),
            "pid": np.tile(np.arange(40), 2),
            "age": rng.integers(18, 80, 80),
        }
    )
    visits = people.sample(200, replace=True, random_state=1)[["region", "pid"]].assign(
        spend=rng.random(200).round(3), day=rng.integers(1, 1000, 200)
    )
    people.to_parquet(tmp_path / "people.parquet")
    visits.to_json(tmp_path / "visits.jsonl", orient="records", lines=True)
    pipeline = LesterPipeline(
        name="shop",
        sources={
            "people": SourceSpec(tmp_path / "people.parquet", "parquet", key=["region", "pid"]),
            "visits": SourceSpec(tmp_path / "visits.jsonl", "json"),  # content-hash key
        },
        prepare=people_prepare,
        split=SplitSpec(by="people", test_fraction=0.25, seed=2),
        features=people_features,
        label=people_label,
        label_inputs=["spend2"],
        model=ridge,
    )
    run = materialise(pipeline, tmp_path / "artifacts")
    assert run.materialised == {
        "people", "visits", "shop", "train", "test", "X_train", "y_train", "model", "X_test",
        "y_test",
    }  # fmt: skip
    assert all(run.checks().values()), run.checks()
    prepared = run.metadata("shop")
    deps = prepared["dagster/column_lineage"].deps_by_column
    assert {(d.asset_key.to_user_string(), d.column_name) for d in deps["spend2"]} == {
        ("visits", "spend")
    }
    assert prepared["lester/sources"]["visits"]["key"] == []
    assert run.metadata("model")["lester/update_strategy"]["model"]["strategy"] == "exact"
    train = run.metadata("train")["dagster/row_count"]
    test = run.metadata("test")["dagster/row_count"]
    assert train + test == prepared["dagster/row_count"] == 200
