"""The differential check: equal up to row/column order passes, semantic changes are caught.

The wrong variants are built independently of the code under test: by editing a messy script
(characters instead of words; the date filter moved after the aggregation) or by computing a
variant matrix by hand; expected numbers come from pandas on the generated data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from examples.messy import data as messy_data
from lester_dagster.rewrite.capture import Captured, capture_script
from lester_dagster.rewrite.differential import compare

MESSY = Path(__file__).resolve().parents[2] / "examples" / "messy"


def _fit(x: np.ndarray, y: np.ndarray) -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(x, y)


@pytest.fixture
def artifacts() -> dict[str, object]:
    rng = np.random.default_rng(0)
    n = 120
    words = rng.integers(1, 12, n).astype(float)
    country = rng.integers(0, 3, n)
    x = np.column_stack(
        [(words - words.mean()) / words.std(), np.eye(3)[country], rng.normal(size=(n, 2))]
    )
    y = (x[:, 4] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return {"X_train": x, "y_train": y, "model": _fit(x, y)}


def test_equal_up_to_row_and_column_order_and_noise_passes(artifacts: dict[str, object]) -> None:
    x, y = np.asarray(artifacts["X_train"]), np.asarray(artifacts["y_train"])
    rng = np.random.default_rng(1)
    rows, cols = rng.permutation(x.shape[0]), rng.permutation(x.shape[1])
    x2 = x[rows][:, cols] + rng.normal(scale=1e-12, size=x.shape)
    rewritten = {
        "X_train": scipy.sparse.csr_matrix(x2),
        "y_train": y[rows],
        "model": _fit(x2, y[rows]),
    }
    diff = compare(artifacts, rewritten)
    assert diff.ok, diff.report
    assert "another order" in diff.report


def test_a_changed_column_is_named_with_numbers(artifacts: dict[str, object]) -> None:
    x, y = np.asarray(artifacts["X_train"]), np.asarray(artifacts["y_train"])
    changed = x.copy()
    changed[:, 0] = changed[:, 0] * 5.5 + 2.0  # a rescaled feature, rows in the same order
    rows = np.arange(x.shape[0])[::-1]
    diff = compare(
        artifacts,
        {"X_train": changed[rows], "y_train": y[rows], "model": _fit(changed[rows], y[rows])},
    )
    assert not diff.ok
    x_report = next(a for a in diff.artifacts if a.name == "X_train")
    assert not x_report.ok
    assert len(x_report.problems) == 1
    problem = x_report.problems[0]
    assert problem.startswith("column 0 of the original")
    differing = int(np.sum(~np.isclose(x[:, 0], changed[:, 0])))
    assert f"differs in {differing} of {x.shape[0]} matched rows" in problem
    assert "5.5 * original + 2" in problem  # the affine hint
    assert f"{x.shape[1] - 1} of {x.shape[1]} columns equal" in " ".join(x_report.notes)
    assert next(a for a in diff.artifacts if a.name == "y_train").ok


def test_missing_rows_and_artifacts_are_reported(artifacts: dict[str, object]) -> None:
    x, y = np.asarray(artifacts["X_train"]), np.asarray(artifacts["y_train"])
    dropped = np.array([3, 50, 77])
    keep = np.setdiff1d(np.arange(x.shape[0]), dropped)
    diff = compare(artifacts, {"X_train": x[keep], "y_train": y[keep]})
    assert not diff.ok
    report = diff.report
    assert f"the original has {x.shape[0]} rows x {x.shape[1]} columns" in report
    assert f"{dropped.size} of {x.shape[0]} original rows have no equal row" in report
    for row in dropped:
        assert f"row {row} [" in report
    assert "the rewrite does not produce 'model'" in report


def test_row_keys_match_rows(artifacts: dict[str, object]) -> None:
    x, y = np.asarray(artifacts["X_train"]), np.asarray(artifacts["y_train"])
    keys = [f"k{i}" for i in range(x.shape[0])]
    rows = np.random.default_rng(2).permutation(x.shape[0])
    diff = compare(
        {"X_train": x, "y_train": y},
        {"X_train": x[rows], "y_train": y[rows]},
        row_keys={"train": (keys, [keys[r] for r in rows])},
    )
    assert diff.ok, diff.report


def test_bad_tolerances_are_refused(artifacts: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="rtol must be a non-negative number"):
        compare(artifacts, artifacts, rtol=-1)


# --- real scripts and their wrong rewrites ----------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("messy-diff")
    messy_data.write_all(root)
    return root


def _variant(tmp_path: Path, script: str, replacements: list[tuple[str, str]]) -> Path:
    text = (MESSY / script).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"variant_{script}"
    path.write_text(text)
    return path


def test_characters_instead_of_words_is_caught(tmp_path: Path, data_root: Path) -> None:
    directory = data_root / "complaints"
    wrong = _variant(
        tmp_path,
        "complaints_loops.py",
        [
            (
                "    n = 0\n    for _w in title.split():\n        n = n + 1\n    return n",
                "    return len(title)",
            )
        ],
    )
    original = capture_script(MESSY / "complaints_loops.py", [directory], unsplit=True)
    rewritten = capture_script(wrong, [directory], unsplit=True)
    assert compare(original, original).ok
    diff = compare(original, rewritten)
    assert not diff.ok
    x_report = next(a for a in diff.artifacts if a.name == "X_train")
    assert [p.split(" of the original")[0] for p in x_report.problems] == ["column 0"]
    # independently: in how many prepared rows do word and character counts standardise apart?
    mails = pd.read_csv(directory / "mails.csv")
    titles = _prepared_titles(directory, mails)
    words = np.array([len(t.split()) for t in titles], dtype=float)
    chars = np.array([len(t) for t in titles], dtype=float)
    z_words = (words - words.mean()) / words.std()
    z_chars = (chars - chars.mean()) / chars.std()
    assert len(titles) == original["X_train"].shape[0]
    differing = int(np.sum(~np.isclose(z_words, z_chars, rtol=1e-6, atol=1e-8)))
    assert f"differs in {differing} of {len(titles)} matched rows" in x_report.problems[0]
    assert next(a for a in diff.artifacts if a.name == "y_train").ok
    assert not next(a for a in diff.artifacts if a.name == "model").ok


def _prepared_titles(directory: Path, mails: pd.DataFrame) -> list[str]:
    customers = pd.read_csv(directory / "customers.csv")
    kept = customers[customers["country"].isin(["DE", "FR", "NL"])]
    text = mails["text"].str.lower()
    topical = mails[
        (mails["date"] >= "2022-01-01")
        & (text.str.contains("complaint") | text.str.contains("bank account"))
    ]
    joined = topical.merge(kept, on="email")
    return joined["subject"].str.lower().tolist()


def test_filter_after_aggregation_is_caught(tmp_path: Path, data_root: Path) -> None:
    directory = data_root / "churn"
    wrong = _variant(
        tmp_path,
        "churn_pandas.py",
        [
            ("df = recent.merge(", "df = orders.merge("),
            (
                'data = customers.merge(agg, on="customer_id", how="left")',
                "data = customers[customers.customer_id.isin(recent.customer_id)].merge(\n"
                '    agg, on="customer_id", how="left"\n)',
            ),
        ],
    )
    original = capture_script(MESSY / "churn_pandas.py", [directory], unsplit=True)
    rewritten = capture_script(wrong, [directory], unsplit=True)
    diff = compare(original, rewritten)
    assert not diff.ok
    customers = pd.read_csv(directory / "customers.csv")
    orders = pd.read_csv(directory / "orders.csv")
    recent = orders[(orders["amount"] > 0) & (orders["date"] >= "2023-01-01")]
    members = customers[customers["plan"] != "trial"]
    expected_original = len(members)
    expected_rewrite = int(members["customer_id"].isin(recent["customer_id"]).sum())
    assert expected_rewrite < expected_original  # the data exercises the difference
    assert (
        f"the original has {expected_original} rows x {original['X_train'].shape[1]} columns, "
        f"the rewrite {expected_rewrite} x" in diff.report
    )
    assert f"{expected_original - expected_rewrite} of {expected_original} original rows" in (
        diff.report
    )
    assert not next(a for a in diff.artifacts if a.name == "model").ok


def test_captured_and_mapping_inputs_agree(data_root: Path) -> None:
    original = capture_script(MESSY / "sensors_numpy.py", [data_root / "sensors"])
    as_mapping = dict(original.values)
    assert isinstance(original, Captured)
    assert compare(original, as_mapping).ok
