"""The messy example scripts run through the capture on generated data and leave sane outputs.

Expected row counts are derived independently (pandas on the generated csv files, or the
package's own running-example preparation), not from the scripts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from examples.messy import data as messy_data
from lester_dagster.examples.complaints import prepare_pandas
from lester_dagster.rewrite.capture import Captured, ModelSummary, capture_script

MESSY = Path(__file__).resolve().parents[2] / "examples" / "messy"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("messy-data")
    messy_data.write_all(root)
    return root


def _expected_complaints(directory: Path) -> int:
    customers = pd.read_csv(directory / "customers.csv")
    mails = pd.read_csv(directory / "mails.csv")
    return len(prepare_pandas(customers, mails, with_sentiment=False))


def _expected_churn(directory: Path) -> int:
    customers = pd.read_csv(directory / "customers.csv")
    return int((customers["plan"] != "trial").sum())


def _expected_sensors(directory: Path) -> int:
    sensors = pd.read_csv(directory / "sensors.csv")
    readings = pd.read_csv(directory / "readings.csv")
    kept = readings[
        readings["sensor_id"].isin(sensors["sensor_id"])
        & (readings["pressure"] > 0)
        & readings["temperature"].notna()
    ]
    return len(kept)


CASES = {
    "complaints_loops.py": ("complaints", _expected_complaints),
    "churn_pandas.py": ("churn", _expected_churn),
    "sensors_numpy.py": ("sensors", _expected_sensors),
}


def _check_sane(captured: Captured, rows: int) -> None:
    x_train, x_test = captured["X_train"], captured["X_test"]
    y_train, y_test = np.asarray(captured["y_train"]), np.asarray(captured["y_test"])
    assert x_train.ndim == 2 and x_test.ndim == 2
    assert x_train.shape[1] == x_test.shape[1]
    assert x_train.shape[0] == y_train.shape[0]
    assert x_test.shape[0] == y_test.shape[0]
    assert x_train.shape[0] + x_test.shape[0] == rows
    assert x_train.shape[0] > x_test.shape[0] > 0
    assert np.isfinite(np.asarray(x_train, dtype=float)).all()
    assert set(np.unique(y_train)) == {0, 1}  # binary, and both classes present
    assert set(np.unique(y_test)) <= {0, 1}
    model = captured["model"]
    assert isinstance(model, ModelSummary)
    assert model.fitted, model.errors
    assert model.arrays["coef_"].shape == (1, x_train.shape[1])
    predictions = model.predictions("X_test")
    assert predictions is not None and predictions.shape == y_test.shape
    assert set(np.unique(predictions)) <= {0, 1}


@pytest.mark.parametrize("script", sorted(CASES))
def test_messy_script_runs_and_leaves_sane_outputs(script: str, data_root: Path) -> None:
    dataset, expected_rows = CASES[script]
    directory = data_root / dataset
    captured = capture_script(MESSY / script, [directory], timeout=120)
    _check_sane(captured, expected_rows(directory))


def test_complaints_title_length_counts_words(data_root: Path) -> None:
    """The trap of complaints_loops.py: column 0 is the standardised word count of the title."""
    directory = data_root / "complaints"
    captured = capture_script(MESSY / "complaints_loops.py", [directory], unsplit=True)
    prepared = prepare_pandas(
        pd.read_csv(directory / "customers.csv"),
        pd.read_csv(directory / "mails.csv"),
        with_sentiment=False,
    )
    words = prepared["title_words"].to_numpy(dtype=float)
    standardised = (words - words.mean()) / words.std()
    np.testing.assert_allclose(np.sort(captured["X_train"][:, 0]), np.sort(standardised))


def test_generators_are_deterministic(tmp_path: Path) -> None:
    for name, generate in messy_data.DATASETS.items():
        first = generate(tmp_path / "a" / name)
        second = generate(tmp_path / "b" / name)
        for one, two in zip(first, second, strict=True):
            assert one.read_bytes() == two.read_bytes(), name
        other = generate(tmp_path / "c" / name, seed=1)
        assert any(a.read_bytes() != b.read_bytes() for a, b in zip(first, other, strict=True))


def test_generators_refuse_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="customers must be a positive integer"):
        messy_data.write_churn(tmp_path, customers=0)
    with pytest.raises(ValueError, match="readings must be a positive integer"):
        messy_data.write_sensors(tmp_path, readings=-3)
