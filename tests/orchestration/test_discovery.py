"""Discovery of the pipelines of a code location: by name, the only one, clear errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lester_dagster.errors import PlanError
from lester_dagster.orchestration import LesterTranslator, discover_pipelines, find_pipeline
from lester_dagster.orchestration.discovery import find_pipeline_and_translator

MODULE = """
from pathlib import Path
import dataclasses
from definitions.complaints import make_pipeline
pipeline = dataclasses.replace(make_pipeline(Path({data!r}), 50), name={name!r})
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh package directory ``lester_disc_pkg`` on sys.path (unloaded afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "lester_disc_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] == "lester_disc_pkg"]:
        del sys.modules[name]


def _module(package: Path, module: str, text: str) -> None:
    (package / f"{module}.py").write_text(textwrap.dedent(text))


def test_the_repositorys_code_location_has_the_running_example() -> None:
    pipelines = discover_pipelines()
    assert list(pipelines) == ["complaints"]
    assert find_pipeline(None).name == "complaints"


def test_pipelines_are_found_by_name_with_their_translator(package: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _module(package, "a", MODULE.format(data=data, name="first"))
    _module(
        package,
        "b",
        MODULE.format(data=data, name="second")
        + "\nfrom lester_dagster.orchestration import LesterTranslator\n"
        "translator = LesterTranslator(key_prefix='v2')\n",
    )
    _module(package, "_private", "raise RuntimeError('modules starting with _ are skipped')")
    assert sorted(discover_pipelines("lester_disc_pkg")) == ["first", "second"]
    assert find_pipeline("second", "lester_disc_pkg").name == "second"
    _, translator = find_pipeline_and_translator("second", "lester_disc_pkg")
    assert isinstance(translator, LesterTranslator) and translator.key_prefix == ("v2",)
    assert find_pipeline_and_translator("first", "lester_disc_pkg")[1] is None
    with pytest.raises(PlanError, match=r"2 pipelines \('first', 'second'\).*--pipeline"):
        find_pipeline(None, "lester_disc_pkg")
    with pytest.raises(PlanError, match=r"no pipeline named 'third'.*'first', 'second'"):
        find_pipeline("third", "lester_disc_pkg")


def test_a_list_of_pipelines_and_duplicate_names(package: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _module(
        package,
        "many",
        MODULE.format(data=data, name="x")
        + "pipelines = [dataclasses.replace(pipeline, name='y')]\n",
    )
    assert sorted(discover_pipelines("lester_disc_pkg")) == ["x", "y"]
    _module(package, "more", MODULE.format(data=data, name="y"))
    with pytest.raises(PlanError, match="two pipelines are named 'y'"):
        discover_pipelines("lester_disc_pkg")


def test_an_empty_package_and_bad_names(package: Path) -> None:
    with pytest.raises(PlanError, match="defines no pipeline"):
        find_pipeline(None, "lester_disc_pkg")
    _module(package, "bad", "pipeline = 42\n")
    with pytest.raises(PlanError, match="is a int, not a LesterPipeline"):
        discover_pipelines("lester_disc_pkg")
    with pytest.raises(PlanError, match="cannot import the pipeline package 'no_such_pkg_x'"):
        discover_pipelines("no_such_pkg_x")
    with pytest.raises(PlanError, match="is a module, not a package"):
        discover_pipelines("lester_disc_pkg.bad")


def test_a_package_in_the_current_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lester_cwd_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "ex.py").write_text(MODULE.format(data=str(tmp_path / "d"), name="cwd"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert list(discover_pipelines("lester_cwd_pkg")) == ["cwd"]
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "lester_cwd_pkg"]:
            del sys.modules[name]
