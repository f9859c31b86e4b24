"""lester-dagster bench: the quick run's outputs, the prototype-style baseline against a real
recompute, and argument errors."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from lester_dagster.bench.baseline import PrototypeState
from lester_dagster.bench.command import QUICK
from lester_dagster.bench.recompute import Deleted, distance, reference, source_tables
from lester_dagster.bench.report import COLUMNS, read_csv, render_markdown, write_outputs
from lester_dagster.cli import main
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.examples.complaints_pipeline import make_pipeline
from lester_dagster.features.matrix import encode
from lester_dagster.frame import from_pandas
from lester_dagster.ivm.oracle import MODEL_RTOL, X_TOLERANCE
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact

OURS, PROTOTYPE, PATH = "ours (IVM, durable)", "prototype-style", "ours (Dagster path)"


# -- the quick run, once for the module ---------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], str]:
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--out", str(out)])
    assert code == 0
    return out, read_csv(out / "figure4_quick.csv"), (out / "figure4_quick.md").read_text()


def test_quick_run_writes_csv_markdown_and_plot(
    quick: tuple[Path, list[dict[str, Any]], str],
) -> None:
    out, rows, markdown = quick
    with open(out / "figure4_quick.csv") as fh:
        assert fh.readline().strip().split(",") == list(COLUMNS)
    assert sorted({r["customers"] for r in rows}) == sorted(QUICK["customers"])
    batch = f"{QUICK['batch']} instances (batch)"
    for customers in QUICK["customers"]:
        got = {(r["approach"], r["request"]) for r in rows if r["customers"] == customers}
        expected = {("recompute (Dagster)", "full"), ("recompute (in memory)", "full"),
                    (PATH, "1 instance")}  # fmt: skip
        expected |= {(a, q) for a in (OURS, PROTOTYPE) for q in ("1 instance", batch, "1 value")}
        assert got == expected
    for r in rows:
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"], r
        assert r["peak_rss_mib"] > 0
    # speed-ups are the recompute's median over this row's median
    for r in rows:
        recompute = next(
            x["median_s"] for x in rows
            if x["customers"] == r["customers"] and x["approach"] == "recompute (Dagster)"
        )  # fmt: skip
        assert math.isclose(r["speedup_vs_dagster"], recompute / r["median_s"], rel_tol=1e-3)
    for customers in QUICK["customers"]:
        assert f"| {customers:,} |" in markdown
    assert "Distance to a full recompute" in markdown and "**missed**" in markdown
    assert render_markdown(rows) == markdown  # the report is rebuilt from the CSV alone
    # matplotlib is in the dev extra: the plot is always checked here
    png = (out / "figure4_quick.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_ours_within_tolerance_and_baseline_measurably_farther(
    quick: tuple[Path, list[dict[str, Any]], str],
) -> None:
    _, rows, _ = quick
    measured = [r for r in rows if r["approach"] in (OURS, PROTOTYPE) and r["coef_max_diff"] != ""]
    assert len(measured) == 2 * 3 * len(QUICK["customers"])  # every request, both approaches
    for mine in (r for r in measured if r["approach"] == OURS):
        theirs = next(
            r for r in measured
            if r["approach"] == PROTOTYPE and (r["customers"], r["request"])
            == (mine["customers"], mine["request"])
        )  # fmt: skip
        assert mine["coef_rel_diff"] <= MODEL_RTOL, mine
        assert mine["x_max_diff"] <= X_TOLERANCE and mine["agreement"] == 1.0, mine
        assert theirs["coef_max_diff"] > 1e-4  # one gradient step does not reach the optimum
        assert theirs["coef_max_diff"] > 1e3 * max(mine["coef_max_diff"], 1e-12)
        assert theirs["x_max_diff"] > 1e-6  # encoder statistics kept
        if mine["request"] == "1 value":  # zeros where a recompute encodes the missing value
            assert theirs["x_max_diff"] > 0.1


def test_plot_is_optional(
    quick: tuple[Path, list[dict[str, Any]], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, rows, _ = quick
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    written = write_outputs(rows, tmp_path, "figure4")
    assert [p.name for p in written] == ["figure4.csv", "figure4.md"]
    assert not (tmp_path / "figure4.png").exists()
    assert ".[bench]" in capsys.readouterr().err


# -- the baseline against an independent recompute ----------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("small")
    write_complaints(directory, 400, seed=3)
    pipeline = make_pipeline(directory, 400, seed=3)
    tables = source_tables(pipeline)
    frames = {
        name: from_pandas(tables[name], name=name, key=spec.key_columns[0])
        for name, spec in pipeline.sources.items()
    }
    prepared = FrameArtifact.from_result(pipeline.prepare(**frames).execute())
    train, test = (
        steps.split_rows(pipeline, prepared, "train"),
        steps.split_rows(pipeline, prepared, "test"),
    )
    state = steps.fit_training(pipeline, train)
    x_test = encode(state.encoding, test.to_result())
    y_test = steps.testing_labels(pipeline, test)
    return {"pipeline": pipeline, "tables": tables, "state": state, "x_test": x_test,
            "y_test": y_test.y, "test": test.data}  # fmt: skip


def _baseline(small: dict[str, Any]) -> PrototypeState:
    s = small["state"]
    return PrototypeState.of(
        s.features, s.y, s.frame, small["x_test"], small["y_test"], small["test"], s.model
    )


def _objective(b: PrototypeState, coef: Any, intercept: float) -> float:
    """sklearn's L2 logistic objective on b's rows, as a mean (independent of the baseline)."""
    t = (np.asarray(b.y) == b.classes[1]).astype(float)
    p = np.clip(expit(np.asarray(b.X @ coef).ravel() + intercept), 1e-15, 1 - 1e-15)
    loss = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    return float(loss + coef @ coef / (2 * b.C * len(t)))


def test_baseline_drops_rows_keeps_encoding_and_takes_one_descent_step(
    small: dict[str, Any],
) -> None:
    b, state = _baseline(small), small["state"]
    customer = int(state.frame["customer_id"].iloc[0])
    before = b.coef.copy(), b.intercept
    gone = set(np.flatnonzero(state.frame["customer_id"].to_numpy() == customer).tolist())
    removed = b.forget("customers", [customer])
    assert removed == len(gone) > 0 and b.X.shape[0] == state.X.shape[0] - removed
    kept = [i for i in range(state.X.shape[0]) if i not in gone]
    assert abs(sp.csr_matrix(b.X) - sp.csr_matrix(state.X)[kept]).max() == 0  # not re-encoded
    assert customer not in set(b.frame["customer_id"])
    assert b.steps == 1 and not np.array_equal(b.coef, before[0])
    assert _objective(b, b.coef, b.intercept) < _objective(b, *before)  # a descent step
    # against a real recompute on the remaining data: same rows, X off by the scaler's move
    ref = reference(small["pipeline"], small["tables"], Deleted({"customers": [customer]}, {}))
    d = distance(ref, b.X, b.prov, b.parameters(), b.X_test, b.prov_test, b.predict_test())
    assert d.rows_match and 0 < d.x_max_diff < 0.5
    assert d.coef_max_diff > 1e-4
    # the recompute compared with itself is at distance 0 (the measure is not biased)
    same = distance(ref, ref.X_train.X, ref.X_train.prov, ref.parameters, ref.X_test.X,
                    ref.X_test.prov, ref.predictions)  # fmt: skip
    assert same.x_max_diff == 0 and same.coef_max_diff == 0 and same.agreement == 1.0


def test_baseline_gradient_is_the_objectives(small: dict[str, Any]) -> None:
    """Many 1/L steps converge to the optimum of the same objective (a wrong gradient or step
    would not): the distance to a tight scikit-learn fit shrinks by orders of magnitude."""
    from sklearn.linear_model import LogisticRegression

    b = _baseline(small)
    b.forget("customers", [int(small["state"].frame["customer_id"].iloc[0])])
    target = LogisticRegression(C=b.C, tol=1e-12, max_iter=10_000).fit(b.X, b.y)
    goal = np.concatenate([target.coef_.ravel(), target.intercept_])

    def gap() -> float:
        return float(np.abs(np.concatenate([b.coef, [b.intercept]]) - goal).max())

    first = gap()
    for _ in range(3000):
        b.gradient_step()
    assert gap() < first / 20


def test_baseline_zeroes_deleted_values(small: dict[str, Any]) -> None:
    b, state = _baseline(small), small["state"]
    with_subject = state.frame[state.frame["title_words"] > 0]  # (the subject itself is not kept)
    mail = int(with_subject["mail_id"].iloc[0])
    row = int(np.flatnonzero(state.frame["mail_id"].to_numpy() == mail)[0])
    assert b.forget_values("mails", [mail], ["subject"]) == 1
    fed = [blk for blk in b.blocks if any(r.column == "subject" for r in blk.lineage)]
    assert {blk.name for blk in fed} == {"title", "title_words"}
    X, old = sp.csr_matrix(b.X).toarray(), sp.csr_matrix(state.X).toarray()
    for blk in b.blocks:
        if blk in fed:
            assert not X[row, blk.start : blk.stop].any()
        else:
            assert np.array_equal(X[row, blk.start : blk.stop], old[row, blk.start : blk.stop])
    ref = reference(small["pipeline"], small["tables"], Deleted({}, {("mails", "subject"): [mail]}))
    d = distance(ref, b.X, b.prov, b.parameters(), b.X_test, b.prov_test, b.predict_test())
    assert d.x_max_diff > 0.1  # the recompute's standardised 0 words is not 0


# -- arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--customers", "50"], ["got 50", "300 customers or more"]),
        (["--customers", "ten"], ["'ten'", "300 customers or more"]),
        (["--repeat", "0"], ["--repeat", "got 0", "1 or more"]),
        (["--partitions", "-1"], ["--partitions", "got -1", "0 = unpartitioned"]),
        (["--batch", "0"], ["--batch", "got 0", "1 or more"]),
    ],
)
def test_bad_arguments_are_rejected(
    argv: list[str], wanted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in wanted), err


def test_bad_values_found_after_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--customers", "1000", "1000", "--out", str(tmp_path)]) == 2
    assert "[1000] more than once" in capsys.readouterr().err
    file = tmp_path / "a_file"
    file.write_text("")
    assert main(["bench", "--customers", "1000", "--out", str(file)]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and "directory" in err
    assert not list(tmp_path.glob("figure4*"))


def test_dataclass_config_is_frozen() -> None:
    from lester_dagster.bench.command import BenchConfig

    config = BenchConfig((300,), 1, 0, 5, Path("x"), None, True)
    assert config.stem == "figure4_quick"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.repeat = 2  # type: ignore[misc]


def test_a_commit_id_that_looks_like_a_number_is_read_back_as_text(tmp_path: Path) -> None:
    """543e317 (a real commit id) parses as a float overflowing to inf; text columns stay text."""
    from lester_dagster.bench.report import read_csv

    path = tmp_path / "figure4.csv"
    path.write_text("customers,code,date,median_s,met\n400,543e317,2026-11-25,0.5,True\n")
    (row,) = read_csv(path)
    assert row == {
        "customers": 400, "code": "543e317", "date": "2026-11-25", "median_s": 0.5, "met": True
    }  # fmt: skip
