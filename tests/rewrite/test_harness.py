"""The orchestration harness writes what the rewrite's capture reads (the one format, two
writers: lester_dagster.rewrite.runner and lester_dagster.orchestration.harness, which may not
import each other); the module header and the hand-edit guard; the data description's keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.linear_model import LogisticRegression

from lester_dagster.errors import RewriteError
from lester_dagster.orchestration.harness import dump_artifacts
from lester_dagster.rewrite.capture import ModelSummary, load_captured
from lester_dagster.rewrite.describe import describe_data
from lester_dagster.rewrite.differential import compare
from lester_dagster.rewrite.module import (
    assemble_body,
    check_target,
    read_header,
    render_module,
    write_module,
)
from lester_dagster.rewrite.runner import dump_values


@pytest.mark.parametrize("sparse", [False, True])
def test_harness_output_round_trips_through_the_capture_reader(
    tmp_path: Path, sparse: bool
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(np.int64)
    model = LogisticRegression().fit(X, y)
    matrix = scipy.sparse.csr_matrix(X) if sparse else X
    values = {"X_train": matrix, "y_train": y, "model": model}
    dump_artifacts(values, tmp_path / "harness")
    dump_values(values, tmp_path / "runner")
    harness, runner = load_captured(tmp_path / "harness"), load_captured(tmp_path / "runner")

    loaded = harness.values["X_train"]
    assert scipy.sparse.issparse(loaded) == sparse
    dense = loaded.toarray() if sparse else loaded
    np.testing.assert_array_equal(dense, X)
    np.testing.assert_array_equal(harness.values["y_train"], y)
    summary = harness.values["model"]
    assert isinstance(summary, ModelSummary) and summary.fitted
    assert summary.class_name.endswith("LogisticRegression")
    np.testing.assert_array_equal(summary.arrays["predict.X_train"], model.predict(X))
    np.testing.assert_allclose(summary.arrays["predict_proba.X_train"], model.predict_proba(X))
    # both writers agree entry by entry, and the check finds nothing between them
    assert set(summary.arrays) == set(runner.values["model"].arrays)
    assert summary.params == runner.values["model"].params
    assert compare(runner, harness).ok


def test_a_generated_module_knows_whether_it_was_edited(tmp_path: Path) -> None:
    body = assemble_body("from __future__ import annotations\n\npipeline = None\n", "demo")
    text = render_module(body, {"model": "m", "checks": "static ok;\n differential ok"})
    fields, parsed_body = read_header(text) or ({}, "")
    assert parsed_body == body and fields["checks"] == "static ok; differential ok"
    target = tmp_path / "demo.py"
    assert write_module(target, text).state == "missing"
    assert check_target(target).state == "generated"
    assert write_module(target, text).state == "generated"  # unchanged: may be replaced

    target.write_text(text.replace("pipeline = None", "pipeline = None  # mine"), encoding="utf-8")
    with pytest.raises(RewriteError, match="edited by hand") as caught:
        write_module(target, text)
    assert str(target) in str(caught.value) and "--force" in str(caught.value)
    assert "# mine" in target.read_text(encoding="utf-8")
    assert write_module(target, text, force=True).state == "edited"
    assert target.read_text(encoding="utf-8") == text

    foreign = tmp_path / "own.py"
    foreign.write_text('"""Mine."""\n', encoding="utf-8")
    with pytest.raises(RewriteError, match="not written by"):
        check_target(foreign)


def test_candidate_keys_are_confirmed_on_the_data(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "order_id": [1, 2, 2, 3],  # repeated: not a key
            "line": [1, 1, 2, 1],
            "note": ["a", None, "c", "d"],
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_csv(tmp_path / "lines.csv", index=False)
    pd.DataFrame({"sku": ["x", "y"], "name": ["X", "Y"]}).to_json(
        tmp_path / "items.jsonl", orient="records", lines=True
    )
    description = describe_data(tmp_path)
    files = {f.name: f for f in description.files}
    assert files["items.jsonl"].key == ("sku",) and files["items.jsonl"].format == "json"
    lines = files["lines.csv"]
    assert ("order_id",) not in lines.keys and ("note",) not in lines.keys  # a missing value
    assert lines.key == ("amount",)
    text = description.markdown("data/shop")
    assert "`data/shop`" in text and "Key: `sku`" in text and "| note | " in text


def test_composite_keys_and_errors_of_the_description(tmp_path: Path) -> None:
    pd.DataFrame({"order_id": [1, 1, 2], "line": [1, 2, 1]}).to_csv(tmp_path / "l.csv", index=False)
    assert describe_data(tmp_path).files[0].key == ("order_id", "line")
    with pytest.raises(RewriteError, match="nowhere"):
        describe_data(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(RewriteError, match=r"notes\.txt"):
        describe_data(empty)
