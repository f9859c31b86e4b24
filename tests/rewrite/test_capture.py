"""Capturing a script's globals through the sandbox."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from lester_dagster.errors import RewriteCheckError
from lester_dagster.rewrite.capture import ModelSummary, Opaque, capture_script

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pandas as pd
    import scipy.sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rows = int(sys.argv[1])
    rng = np.random.default_rng(3)
    features = rng.normal(size=(rows, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    X_train, X_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0
    )
    model = LogisticRegression().fit(X_train, y_train)
    X_sparse = scipy.sparse.csr_matrix(np.where(X_train > 1, X_train, 0.0))
    table = pd.DataFrame({"a": np.arange(rows), "b": ["x"] * rows})
    records = [{"k": i, "v": str(i)} for i in range(3)]
    labels_list = labels.tolist()
    note = "done"
    weird = object()
    print("finished", rows)
    """
)


def _expected(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(3)
    features = rng.normal(size=(rows, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0
    )
    return x_train, x_test, y_train, y_test


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(SCRIPT)
    return path


def test_captures_arrays_frames_sparse_and_a_model_summary(script: Path) -> None:
    names = (
        "X_train",
        "y_train",
        "model",
        "X_test",
        "y_test",
        "X_sparse",
        "table",
        "records",
        "labels_list",
        "note",
        "weird",
    )
    captured = capture_script(script, ["80"], names=names)
    x_train, x_test, y_train, y_test = _expected(80)
    np.testing.assert_array_equal(captured["X_train"], x_train)
    np.testing.assert_array_equal(captured["X_test"], x_test)
    np.testing.assert_array_equal(captured["y_train"], y_train)
    np.testing.assert_array_equal(captured["y_test"], y_test)
    sparse = captured["X_sparse"]
    assert scipy.sparse.issparse(sparse)
    np.testing.assert_array_equal(sparse.toarray(), np.where(x_train > 1, x_train, 0.0))
    pd.testing.assert_frame_equal(
        captured["table"], pd.DataFrame({"a": np.arange(80), "b": ["x"] * 80}), check_dtype=False
    )
    assert captured["records"]["k"].tolist() == [0, 1, 2]
    features = np.random.default_rng(3).normal(size=(80, 4))
    np.testing.assert_array_equal(captured["labels_list"], features[:, 0] + features[:, 1] > 0)
    assert captured["note"] == "done"
    assert isinstance(captured["weird"], Opaque)
    assert captured["weird"].type_name == "object"
    assert "finished 80" in captured.stdout
    assert captured.seconds > 0

    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression().fit(x_train, y_train)
    model = captured["model"]
    assert isinstance(model, ModelSummary)
    assert model.fitted
    assert model.class_name.endswith("LogisticRegression")
    np.testing.assert_allclose(model.arrays["coef_"], reference.coef_)
    np.testing.assert_array_equal(model.predictions("X_test"), reference.predict(x_test))
    np.testing.assert_allclose(model.probabilities("X_train"), reference.predict_proba(x_train))
    assert model.predictions("X_sparse") is not None


def test_missing_names_are_named_with_what_the_script_defined(tmp_path: Path) -> None:
    path = tmp_path / "incomplete.py"
    path.write_text("import numpy as np\nfeatures = np.zeros((3, 2))\nlabels = [0, 1, 0]\n")
    with pytest.raises(RewriteCheckError) as error:
        capture_script(path)
    message = str(error.value)
    assert "'X_train', 'y_train', 'model'" in message
    assert "'features'" in message
    assert "'labels'" in message
    assert "'np'" not in message  # modules are not listed


def test_optional_names_may_be_missing(tmp_path: Path) -> None:
    path = tmp_path / "minimal.py"
    path.write_text(
        "from sklearn.dummy import DummyClassifier\n"
        "X_train = [[0.0], [1.0]]\ny_train = [0, 1]\n"
        "model = DummyClassifier().fit(X_train, y_train)\n"
    )
    captured = capture_script(path)
    assert set(captured.values) == {"X_train", "y_train", "model"}
    np.testing.assert_array_equal(captured["X_train"], [[0.0], [1.0]])


def test_a_failing_script_raises_with_its_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("rows = []\nfirst = rows[0]\n")
    with pytest.raises(RewriteCheckError, match="IndexError"):
        capture_script(path)


def test_time_limit_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "slow.py"
    path.write_text("import time\nwhile True:\n    time.sleep(0.1)\n")
    with pytest.raises(RewriteCheckError, match=r"time limit of 1\.5 s"):
        capture_script(path, timeout=1.5)


def test_unsplit_makes_train_every_row_in_order(script: Path) -> None:
    captured = capture_script(script, ["40"], unsplit=True)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 4))
    np.testing.assert_array_equal(captured["X_train"], features)
    np.testing.assert_array_equal(captured["X_test"], features)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(RewriteCheckError, match="does not exist"):
        capture_script(tmp_path / "nope.py")
    (tmp_path / "s.py").write_text("pass\n")
    with pytest.raises(ValueError, match="identifiers"):
        capture_script(tmp_path / "s.py", names=("X train",), required=())
    with pytest.raises(ValueError, match="must also be in names"):
        capture_script(tmp_path / "s.py", names=("X_train",), required=("model",))
