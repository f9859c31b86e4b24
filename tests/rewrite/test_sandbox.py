"""The sandbox: time and memory limits, process groups, environment, bounded output."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from lester_dagster.errors import RewriteCheckError
from lester_dagster.rewrite.sandbox import minimal_env, run_python


def test_runs_code_and_captures_output(tmp_path: Path) -> None:
    result = run_python(
        "import sys; print('out', 6 * 7); print('err', file=sys.stderr)",
        cwd=tmp_path,
        timeout=30,
    )
    assert result.ok
    assert result.returncode == 0
    assert result.stdout.strip() == "out 42"
    assert result.stderr.strip() == "err"
    assert result.killed_for is None
    assert result.check() is result


def test_runs_a_script_with_arguments_in_cwd(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 'from helper'\n")
    script = tmp_path / "script.py"
    script.write_text(
        "import os, sys\nimport helper\nprint(sys.argv[1:], os.getcwd(), helper.VALUE, __name__)\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_python([script, "a", "b"], cwd=workdir, timeout=30)
    assert result.ok, result.stderr
    assert result.stdout.split() == ["['a',", "'b']", str(workdir), "from", "helper", "__main__"]


def test_nonzero_exit_is_reported_not_raised(tmp_path: Path) -> None:
    result = run_python("raise ValueError('boom 17')", cwd=tmp_path, timeout=30)
    assert not result.ok
    assert result.returncode == 1
    assert result.killed_for is None
    assert "boom 17" in result.describe()
    with pytest.raises(RewriteCheckError, match="boom 17"):
        result.check("the rewritten pipeline")


def test_forever_is_killed_at_the_time_limit_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(marker)!r}, "w").write(str(child.pid))
        while True:
            time.sleep(0.05)
        """
    )
    start = time.perf_counter()
    result = run_python(code, cwd=tmp_path, timeout=1.5)
    elapsed = time.perf_counter() - start
    assert result.killed_for == "timeout"
    assert result.returncode < 0
    assert 1.4 <= elapsed < 10
    assert "time limit of 1.5 s" in result.describe()
    assert "timeout=" in result.describe()
    # the grandchild in the same process group died too
    child = int(marker.read_text())
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the child process {child} survived the time limit")


def test_too_much_memory_is_killed_at_the_memory_limit(tmp_path: Path) -> None:
    code = "import numpy as np\nblock = np.ones((400, 2**20))\nprint('allocated')"  # 3.2 GB
    result = run_python(code, cwd=tmp_path, timeout=30, memory_mb=1024)
    assert result.killed_for == "memory"
    assert "allocated" not in result.stdout
    assert "memory limit of 1024 MB" in result.describe()
    assert "memory_mb=" in result.describe()
    # the same allocation fits without the limit (so the limit, not the machine, stopped it)
    small = run_python(
        "import numpy as np\nblock = np.ones((40, 2**20))\nprint('allocated')",
        cwd=tmp_path,
        timeout=30,
        memory_mb=1024,
    )
    assert small.ok, small.stderr
    assert small.stdout.strip() == "allocated"


def test_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("SOME_RANDOM_SETTING", "x")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = run_python(code, cwd=tmp_path, timeout=30, env={"LESTER_DATA": "d", "MY_TOKEN": "t"})
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert "OPENAI_API_KEY" not in seen
    assert "HTTPS_PROXY" not in seen
    assert "SOME_RANDOM_SETTING" not in seen
    assert "MY_TOKEN" not in seen
    assert seen["LESTER_DATA"] == "d"
    assert seen["OPENBLAS_NUM_THREADS"] == "1"
    assert seen["PYTHONHASHSEED"] == "0"
    assert "sk-should-not-leak" not in result.stdout


def test_minimal_env_drops_credentials_from_extra() -> None:
    env = minimal_env({"AWS_SECRET_ACCESS_KEY": "s", "DB_PASSWORD": "p", "FINE": "f"})
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "DB_PASSWORD" not in env
    assert env["FINE"] == "f"


def test_output_is_capped(tmp_path: Path) -> None:
    code = "import sys\nfor _ in range(1000):\n    sys.stdout.write('x' * 1000)\n"
    result = run_python(code, cwd=tmp_path, timeout=30, output_limit=5000)
    assert result.ok
    assert result.stdout_truncated
    kept, _, note = result.stdout.partition("\n")
    assert kept == "x" * 5000
    assert "cut" in note


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive"),
        ({"timeout": 1, "memory_mb": -1}, "memory_mb must be"),
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_python("pass", cwd=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_missing_cwd_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cwd must be an existing directory"):
        run_python("pass", cwd=tmp_path / "nope", timeout=5)
