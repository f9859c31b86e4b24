"""The lester-dagster command: demo and generate, exit codes, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lester_dagster.cli import main


def test_demo_prints_trace_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--rows", "300", "--home", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "lineage check" in out and out.rstrip().endswith("ok")
    assert "reaches" in out and "provenance mails[" in out
    assert "sentiment   <- mails.text" in out
    assert (tmp_path / "data" / "customers.csv").exists()


def test_demo_is_deterministic_for_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", "--rows", "200", "--home", str(tmp_path / "a"), "--seed", "3"])
    first = capsys.readouterr().out.replace(str(tmp_path / "a"), "HOME")
    main(["demo", "--rows", "200", "--home", str(tmp_path / "b"), "--seed", "3"])
    second = capsys.readouterr().out.replace(str(tmp_path / "b"), "HOME")
    strip = [line for line in first.splitlines() if " s" not in line and " ms" not in line]
    assert strip == [line for line in second.splitlines() if " s" not in line and " ms" not in line]


def test_generate_writes_both_sources(tmp_path: Path) -> None:
    code = main(["generate", "complaints", "--customers", "50", "--out", str(tmp_path)])
    assert code == 0
    customers = pd.read_csv(tmp_path / "customers.csv")
    mails = pd.read_csv(tmp_path / "mails.csv")
    assert len(customers) == 50 and len(mails) == 150


@pytest.mark.parametrize(
    "argv",
    [["demo", "--rows", "0"], ["demo", "--rows", "many"], ["generate", "nope", "--out", "x"], []],
)
def test_bad_usage_exits_2_and_names_the_problem(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lester-dagster")
    done = subprocess.run(
        [str(script), "demo", "--rows", "100", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "lineage check" in done.stdout


def test_demo_home_defaults_under_lester_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("LESTER_HOME", str(tmp_path / "home"))
    assert main(["demo", "--rows", "150"]) == 0
    assert (tmp_path / "home" / "demo" / "data" / "mails.csv").exists()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["demo", "--rows", "150"]) == 0
    assert (tmp_path / "dagster" / "lester" / "demo" / "data" / "mails.csv").exists()
    capsys.readouterr()
