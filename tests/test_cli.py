"""The lester-dagster command: demo, generate, forget and requests, exit codes, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
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
    assert out.rstrip().endswith("verification: ok")
    assert "reaches" in out and "provenance mails[" in out
    assert "#1 applied, #2 applied" in out  # the sensor's run applied both requests
    assert "model      max |param diff|" in out
    assert "sentiment   <- mails.text" in out
    assert (tmp_path / "data" / "customers.csv").exists()


def test_demo_is_deterministic_for_a_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", "--rows", "200", "--home", str(tmp_path / "a"), "--seed", "3"])
    first = capsys.readouterr().out.replace(str(tmp_path / "a"), "HOME")
    main(["demo", "--rows", "200", "--home", str(tmp_path / "b"), "--seed", "3"])
    second = capsys.readouterr().out.replace(str(tmp_path / "b"), "HOME")

    def stable(out: str) -> list[str]:
        noisy = (" s", " ms", "run ", "max |")
        return [line for line in out.splitlines() if not any(n in line for n in noisy)]

    assert stable(first) == stable(second)


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
    assert done.stdout.rstrip().endswith("verification: ok")


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


# -- forget / requests ---------------------------------------------------------------------------

CLI_MODULE = """
from pathlib import Path
from definitions.complaints import make_pipeline
pipeline = make_pipeline(Path({data!r}), 30)
"""


@pytest.fixture
def code_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[str], Path]]:
    """A package ``lester_cli_pkg`` with the running example on 30 generated customers, and the
    options that point ``forget`` / ``requests`` at it and at a temporary ledger."""
    from lester_dagster.examples.complaints_data import write_complaints

    data = tmp_path / "data"
    write_complaints(data, 30, seed=0)
    package = tmp_path / "lester_cli_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "complaints.py").write_text(CLI_MODULE.format(data=str(data)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("lester_dagster.cli.getpass.getuser", lambda: "alice")
    ledger = ["--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"]
    yield ["--package", "lester_cli_pkg", *ledger], data
    for name in [m for m in sys.modules if m.split(".")[0] == "lester_cli_pkg"]:
        del sys.modules[name]


def test_forget_files_a_request_and_requests_lists_it(
    code_location: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    options, _ = code_location
    ledger = options[2:]
    assert main(["forget", "customers", "17", "3", *options, "--reason", "art. 17"]) == 0
    assert capsys.readouterr().out.strip() == (
        "filed #1 (pending): forget 2 record(s) of complaints.customers"
    )
    assert main(["forget", "customers", "3", "17", *options]) == 0
    assert capsys.readouterr().out.startswith("already filed as #1 (pending)")
    assert main(["forget", "mails", "4", *options, "--columns", "subject", "text"]) == 0
    assert "filed #2 (pending): forget the values of subject, text of 1" in capsys.readouterr().out

    assert main(["requests", *ledger]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "id", "pipeline", "source", "kind", "columns", "keys", "status", "created_at", "run",
        "applied_at", "reason",
    ]  # fmt: skip
    assert lines[1].split()[:7] == ["1", "complaints", "customers", "instance", "-", "2", "pending"]
    assert lines[2].split()[:7] == [
        "2",
        "complaints",
        "mails",
        "value",
        "subject,text",
        "1",
        "pending",
    ]

    assert (
        main(["requests", *ledger, "--json", "--status", "pending", "--pipeline", "complaints"])
        == 0
    )
    docs = json.loads(capsys.readouterr().out)
    assert [(d["id"], d["keys"], d["requested_by"]) for d in docs] == [
        (1, [17, 3], "alice"),
        (2, [4], "alice"),
    ]
    assert docs[0]["reason"] == "art. 17"
    assert main(["requests", *ledger, "--status", "applied"]) == 0
    assert capsys.readouterr().out.strip() == "no deletion requests with status applied"


def test_forget_by_email_and_as_json(
    code_location: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    options, data = code_location
    customers = pd.read_csv(data / "customers.csv")
    email = customers.loc[customers.customer_id == 9, "email"].item()
    code = main(
        ["forget", "customers", email, "--by", "email", *options, "--json", "--requested-by", "dpo"]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["keys"], doc["requested_by"], doc["duplicate"]) == ([9], "dpo", False)
    assert doc["reason"] == f'by email: ["{email}"]'


def test_a_missing_key_as_a_noop_is_shown_in_requests(
    code_location: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    options, _ = code_location
    assert main(["forget", "customers", "999", *options, "--on-missing", "noop"]) == 0
    assert capsys.readouterr().out.startswith("filed #1 as a no-op (applied): source 'customers'")
    assert main(["requests", *options[2:]]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "applied (no-op)" in row and " noop " in row and "no record with key 999" in row


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["customers", "1", "--columns", "nope"], "unknown column 'nope' in source 'customers'"),
        (["customers", "999"], "no record with key 999"),
        (["customers", "x"], "column 'customer_id' of source 'customers', whose dtype is int64"),
        (["clients", "1"], "unknown source 'clients'; known sources: 'customers', 'mails'"),
        (["customers", "[1, 2"], "not a JSON list"),
        (["customers", "1", "--columns", "customer_id"], "delete the record instead"),
        (["customers", "1", "--pipeline", "other"], "no pipeline named 'other'"),
    ],
)
def test_a_bad_request_exits_2_and_files_nothing(
    code_location: tuple[list[str], Path],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    options, _ = code_location
    assert main(["forget", *argv, *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ")
    assert message in captured.err
    if "--columns" in argv and "nope" in argv:
        assert "'customer_id', 'email', 'bank', 'country', 'level'" in captured.err
    assert main(["requests", *options[2:]]) == 0
    assert capsys.readouterr().out.strip() == "no deletion requests"


def test_requests_on_a_fresh_home_creates_no_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["requests"]) == 0
    assert capsys.readouterr().out.strip() == "no deletion requests"
    assert not (tmp_path / "lester" / "ledger.db").exists()


def test_forget_needs_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["forget", "customers"])
    assert exc.value.code == 2
    assert "KEY" in capsys.readouterr().err


def test_demo_refuses_a_directory_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["demo", "--rows", "100", "--home", str(tmp_path)]) == 2
    assert "thesis.tex" in capsys.readouterr().err
    assert (tmp_path / "thesis.tex").read_text() == "precious"


# -- trace / verify ------------------------------------------------------------------------------

PROOF_MODULE = """
from pathlib import Path
from definitions.complaints import make_pipeline
pipeline = make_pipeline(Path({data!r}), 200)
"""


@pytest.fixture(scope="module")
def materialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The running example on 200 customers, materialised once: (data, artifact root)."""
    from definitions.complaints import make_pipeline
    from lester_dagster.examples.complaints_data import write_complaints
    from tests.orchestration.test_forgetting import materialise_all

    tmp = tmp_path_factory.mktemp("proof")
    write_complaints(tmp / "data", 200, seed=1)
    materialise_all(make_pipeline(tmp / "data", 200), tmp / "artifacts")
    return tmp / "data", tmp / "artifacts"


@pytest.fixture
def proof(
    materialised: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[str], Path]]:
    """A package ``lester_proof_pkg`` with that pipeline, a copy of its artifacts and the
    options that point ``trace`` / ``verify`` / ``forget`` at them and at a temporary ledger."""
    import shutil

    data, artifacts = materialised
    shutil.copytree(artifacts, tmp_path / "artifacts")
    package = tmp_path / "lester_proof_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "complaints.py").write_text(PROOF_MODULE.format(data=str(data)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    options = ["--package", "lester_proof_pkg", "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}",
               "--artifacts", str(tmp_path / "artifacts")]  # fmt: skip
    yield options, tmp_path / "artifacts"
    for name in [m for m in sys.modules if m.split(".")[0] == "lester_proof_pkg"]:
        del sys.modules[name]


def _apply_pending(options: list[str]) -> None:
    """What the deletion sensor's run does: apply the pending requests by IVM."""
    from lester_dagster.orchestration import LesterIOManager, build_assets, find_pipeline
    from lester_dagster.orchestration.forgetting import apply_deletions
    from lester_dagster.store.ledger import Ledger

    pipeline = find_pipeline(None, "lester_proof_pkg")
    io = LesterIOManager(base_path=options[options.index("--artifacts") + 1])
    with Ledger(options[options.index("--ledger") + 1]) as ledger:
        ids = [r.id for r in ledger.pending(pipeline.name)]
        ledger.claim(ids, "cli-test")
        apply_deletions(pipeline, build_assets(pipeline), io, [ledger.get(i) for i in ids],
                        run_id="cli-test")  # fmt: skip
        ledger.mark_applied(ids, "cli-test", {}, {"ok": True})


def _train(artifacts: Path) -> pd.DataFrame:
    import dagster as dg

    from lester_dagster.orchestration import LesterIOManager

    return LesterIOManager(base_path=str(artifacts)).load(dg.AssetKey("train")).data


def test_trace_lists_a_customer_before_and_nothing_after_its_deletion(
    proof: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    options, artifacts = proof
    train = _train(artifacts)
    customer = int(train.customer_id.value_counts().idxmax())
    mails = sorted(train.mail_id[train.customer_id == customer].tolist())
    assert main(["trace", "customers", str(customer), *options]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(": not deleted")
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"customers", "complaints", "train", "X_train", "y_train", "model"}
    assert "mails " + ", ".join(map(str, mails)) in lines["train"]
    assert f"trained on {len(mails)} of its {len(train)} rows" in lines["model"]
    assert "columns country [" in lines["X_train"]

    assert main(["forget", "customers", str(customer), *options]) == 0
    capsys.readouterr()
    _apply_pending(options)
    assert main(["trace", "customers", str(customer), *options, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["key"], doc["status"], doc["reaches"]) == (customer, "deleted by request #1", [])
    assert main(["trace", "customers", str(customer), *options]) == 0
    assert "reaches nothing" in capsys.readouterr().out


def test_verify_exits_0_when_forgotten_and_1_when_data_is_left(
    proof: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import dagster as dg

    from lester_dagster.orchestration import LesterIOManager

    options, artifacts = proof
    train = _train(artifacts)
    customer = int(train.customer_id.min())
    io = LesterIOManager(base_path=str(artifacts))
    old_train = io.load(dg.AssetKey("train"))
    assert main(["verify", *options]) == 0  # nothing deleted yet
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("verification ok")
    assert main(["forget", "customers", str(customer), *options]) == 0
    _apply_pending(options)
    capsys.readouterr()
    assert main(["verify", "--model", *options]) == 0
    out = capsys.readouterr().out
    assert "deleted records: 1 of customers" in out and "max |param diff| to a refit" in out

    io.store(dg.AssetKey("train"), old_train)  # the deleted customer's rows come back
    n = int((old_train.data.customer_id == customer).sum())
    assert main(["verify", *options]) == 1
    out = capsys.readouterr().out
    left = [
        f"train: {n} row(s) derived from a deleted record (customers: {n})",
        "train: its key index of 'customers' still holds 1 deleted key(s)",
        "train: 1 older version(s) of the artifact are still on disk and may hold deleted "
        "data; re-run the deletion run or lester_dagster.store.collect_garbage() on it",
    ]
    assert all(f"- {line}" in out for line in left), out
    assert out.rstrip().splitlines()[-1].startswith("verification FAILED: 3 violation(s)")
    assert main(["verify", *options, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["requests"] == [1] and doc["violations"] == left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--pipeline", "other"], "no pipeline named 'other'"),
        (["trace", "customers", "x"], "whose dtype is int64"),
        (["trace", "clients", "1"], "unknown source 'clients'"),
    ],
)
def test_trace_and_verify_input_errors_exit_2(
    proof: tuple[list[str], Path],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    options, _ = proof
    assert main([*argv, *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_verify_of_an_empty_artifact_root_exits_2(
    proof: tuple[list[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options, _ = proof
    empty = [*options[:-1], str(tmp_path / "nothing")]
    assert main(["verify", *empty]) == 2
    assert "materialise the pipeline first" in capsys.readouterr().err
