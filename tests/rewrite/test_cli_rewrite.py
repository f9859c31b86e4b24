"""``lester-dagster rewrite`` over real HTTP to the scripted server, and the written modules in a
code location: discovered as assets next to the running example, materialised with provenance.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lester_dagster.cli import main
from lester_dagster.rewrite.module import read_header
from tests.rewrite.conftest import EXAMPLES, MESSY
from tests.rewrite.fake_openai import FakeOpenAI, Step, load_script, running_server

PACKAGE = "rewritten_defs"  # the code location package of these tests (not the repo's)
REPO = Path(__file__).resolve().parents[2]


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _args(fake: FakeOpenAI, name: str, data: Path, root: Path, *extra: str) -> list[str]:
    script = EXAMPLES[name][0]
    return [
        "rewrite", str(MESSY / script), "--name", name, "--data", str(data),
        "--model", "fake-model", "--base-url", fake.base_url, "--out", str(root / PACKAGE),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def written(
    messy_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, tuple[int, str, str]]]]:
    """The CLI run once per example script into one code location folder."""
    root = tmp_path_factory.mktemp("cli-rewrite")
    results = {}
    with pytest.MonkeyPatch.context() as patch, running_server() as fake:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("OPENAI_BASE_URL", raising=False)
        for name, (_, dataset, fixture) in EXAMPLES.items():
            fake.play(load_script(fixture))
            report = root / f"{name}-report.json"
            args = _args(fake, name, messy_data / dataset, root, "--report", str(report))
            results[name] = _cli(args)
    yield root, results


def test_the_cli_writes_checked_modules_for_the_three_examples(
    written: tuple[Path, dict[str, tuple[int, str, str]]],
) -> None:
    root, results = written
    for name, (code, out, err) in results.items():
        assert code == 0, err
        module = root / PACKAGE / f"{name}.py"
        assert f"wrote {module}" in out
        assert "[rewrite] describing the sample data" in err and "[rewrite] wrote" in err
        parsed = read_header(module.read_text(encoding="utf-8"))
        assert parsed is not None and "differential ok" in parsed[0]["checks"]
        report = json.loads((root / f"{name}-report.json").read_text(encoding="utf-8"))
        assert report["outcome"] == "written" and report["name"] == name
        assert {row["stage"] for row in report["stage_table"] if row["runs"]} == {
            "data", "llm", "parse", "static", "execution", "original", "differential", "write"
        }  # fmt: skip
    # churn aggregates orders per customer: its rows split by their one customer, and a
    # deletion refits the model; no limitation left to report
    churn_report = json.loads((root / "churn-report.json").read_text(encoding="utf-8"))
    assert churn_report["limitations"] == []
    assert "warning:" not in results["churn"][2]


@pytest.fixture
def code_location(
    written: tuple[Path, dict[str, tuple[int, str, str]]], monkeypatch: pytest.MonkeyPatch
) -> Path:
    root = written[0]
    package = root / PACKAGE
    (package / "__init__.py").write_text("", encoding="utf-8")
    shutil.copy(REPO / "definitions" / "complaints.py", package / "complaints.py")
    monkeypatch.chdir(root)  # the code location's working directory: data/<name> lives here
    monkeypatch.syspath_prepend(str(root))
    yield root
    for module in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[module]


def test_written_modules_load_as_assets_next_to_the_running_example(code_location: Path) -> None:
    from lester_dagster.orchestration import discover_definitions

    defs = discover_definitions(PACKAGE)
    keys = {key.to_user_string() for asset in defs.assets or () for key in asset.keys}
    steps = ("train", "test", "X_train", "y_train", "X_test", "y_test", "model")
    sources = {
        "complaint_mails": ("customers", "mails"),
        "churn": ("customers", "orders"),
        "machine_failures": ("sensors", "readings"),
    }
    for name, names in sources.items():
        assert {f"{name}/{step}" for step in (*steps, name, *names)} <= keys
    assert {"customers", "mails", "complaints", "X_train", "model"} <= keys  # unchanged
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["churn", "churn"])).group_name == "churn"


def test_an_aggregating_module_materialises(code_location: Path, tmp_path: Path) -> None:
    from lester_dagster.orchestration import LesterIOManager
    from lester_dagster.orchestration.definitions import materialize_pipeline
    from lester_dagster.orchestration.discovery import find_pipeline_and_translator

    pipeline, translator = find_pipeline_and_translator("churn", PACKAGE)
    io = LesterIOManager(base_path=str(tmp_path / "artifacts"))
    results = materialize_pipeline(pipeline, io, translator=translator)
    assert all(r.success for r in results)
    train = io.load(dg.AssetKey(["churn", "train"]))
    test = io.load(dg.AssetKey(["churn", "test"]))
    assert not train.prov.single  # rows aggregate several orders
    customers = pd.read_csv(code_location / "data" / "churn" / "customers.csv")
    both = set(train.prov.keys["customers"]) | set(test.prov.keys["customers"])
    assert not set(train.prov.keys["customers"]) & set(test.prov.keys["customers"])
    assert len(both) == len(train) + len(test) <= len(customers)


def test_a_written_module_materialises_with_provenance(code_location: Path, tmp_path: Path) -> None:
    from lester_dagster.orchestration import LesterIOManager
    from lester_dagster.orchestration.definitions import materialize_pipeline
    from lester_dagster.orchestration.discovery import find_pipeline_and_translator

    pipeline, translator = find_pipeline_and_translator("machine_failures", PACKAGE)
    results = materialize_pipeline(
        pipeline, LesterIOManager(base_path=str(tmp_path / "artifacts")), translator=translator
    )
    assert all(r.success for r in results)
    materialized = {
        event.asset_key.to_user_string(): event.materialization.metadata
        for result in results
        for event in result.get_asset_materialization_events()
    }
    prepared = materialized["machine_failures/machine_failures"]
    readings = pd.read_csv(code_location / "data" / "machine_failures" / "readings.csv")
    sensors = pd.read_csv(code_location / "data" / "machine_failures" / "sensors.csv")
    kept = readings[
        (readings["pressure"] > 0)
        & readings["temperature"].notna()
        & readings["sensor_id"].isin(sensors["sensor_id"])
    ]
    assert prepared["dagster/row_count"].value == len(kept)
    lineage = prepared["dagster/column_lineage"].value
    site = next(d for d in lineage.deps_by_column["site"])
    assert site.asset_key == dg.AssetKey(["machine_failures", "sensors"])
    assert {"machine_failures/model", "machine_failures/X_test"} <= set(materialized)


def test_checks_failing_on_every_attempt_exit_1_and_write_nothing(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    bad = "```python\nimport subprocess\n\nsubprocess.run(['id'])\npipeline = None\n```"
    fake_openai.play([Step.reply(bad), Step.reply(bad)])
    report = tmp_path / "report.md"
    args = _args(fake_openai, "churn", messy_data / "churn", tmp_path, "--attempts", "2")
    code, out, err = _cli([*args, "--report", str(report)])
    assert code == 1 and out == ""
    assert "error: no attempt passed every check (2 attempts)" in err
    assert not (tmp_path / PACKAGE).exists()
    assert "**failed**: nothing written" in report.read_text(encoding="utf-8")


def test_bad_input_exits_2_and_names_the_value(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.py"
    args = _args(fake_openai, "churn", messy_data / "churn", tmp_path)
    code, _, err = _cli([*args[:1], str(missing), *args[2:]])
    assert code == 2 and str(missing) in err
    target = tmp_path / PACKAGE / "churn.py"
    target.parent.mkdir()
    target.write_text("# hand-written\n", encoding="utf-8")
    code, _, err = _cli(args)
    assert code == 2 and "--force" in err and str(target) in err
    code, _, err = _cli([*_args(fake_openai, "churn", tmp_path / "no-data", tmp_path)])
    assert code == 2 and "no-data" in err
    with pytest.raises(SystemExit) as caught, contextlib.redirect_stderr(io.StringIO()) as usage:
        main([*args, "--attempts", "0"])
    assert caught.value.code == 2 and "expected a positive integer, got 0" in usage.getvalue()
    assert fake_openai.completions == []
