"""The oracle itself must be able to say no: it accepts a faithful state and rejects stale ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lester_dagster.frame import Prov, Result, from_pandas
from lester_dagster.ivm.oracle import compare_with_recompute, provenance_order
from lester_dagster.ivm.training import TrainingState

RNG = np.random.default_rng(5)
N = 300
DATA = pd.DataFrame(
    {
        "rid": np.arange(N),
        "x": RNG.normal(size=N),
        "group": RNG.choice(["a", "b", "c"], size=N),
    }
)
DATA["target"] = 2 * DATA["x"] + (DATA["group"] == "a") + RNG.normal(scale=0.1, size=N)
DATA["label"] = (DATA["target"] > 0.5).astype(int)


def _result(data: pd.DataFrame) -> Result:
    return from_pandas(data, name="records", key="rid").execute()


def _encoding() -> ColumnTransformer:
    return ColumnTransformer(
        [("x", StandardScaler(), ["x"]), ("group", OneHotEncoder(), ["group"])],
        sparse_threshold=0.0,
    )


def _target(frame: pd.DataFrame) -> pd.Series:
    return frame["target"]


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["label"]


def test_provenance_order_sorts_rows_by_their_keys() -> None:
    prov = Prov(3, {"a": np.array([5, 1, 3], dtype=np.uint64)})
    assert provenance_order(prov).tolist() == [1, 2, 0]


def test_an_untouched_state_matches_its_own_data() -> None:
    state = TrainingState.fit(_result(DATA), _encoding(), _target, Ridge())
    report = compare_with_recompute(state, _result(DATA), _encoding())
    assert report.ok, report.lines()


def test_a_state_that_did_not_forget_is_rejected() -> None:
    state = TrainingState.fit(_result(DATA), _encoding(), _target, Ridge())
    report = compare_with_recompute(state, _result(DATA.iloc[10:]), _encoding())
    assert not report.rows_equal and not report.ok


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_forgetting_passes_and_a_stale_model_fails(name: str) -> None:
    model, label = (Ridge(), _target) if name == "ridge" else (LogisticRegression(), _label)
    state = TrainingState.fit(_result(DATA), _encoding(), label, model)
    old = {k: v.copy() for k, v in state.unlearner.parameters(state.model).items()}
    forgotten = list(range(0, N, 7))
    state.forget("records", forgotten)
    recomputed = _result(DATA[~DATA["rid"].isin(forgotten)])
    report = compare_with_recompute(state, recomputed, _encoding(), old_parameters=old)
    assert report.ok, report.lines()
    # put the old parameters back: the oracle must notice the model did not learn the deletion
    for attr, value in old.items():
        setattr(state.unlearner.model, attr, value)
    stale = compare_with_recompute(state, recomputed, _encoding(), old_parameters=old)
    assert not stale.model_ok


def test_a_vanishing_category_before_a_scaled_column_keeps_columns_aligned() -> None:
    data = DATA.copy()
    data.loc[:4, "group"] = "rare"  # only rows 0..4 have this category
    encoding = ColumnTransformer(  # the one-hot block comes first: its width shrinks
        [("group", OneHotEncoder(), ["group"]), ("x", StandardScaler(), ["x"])],
        sparse_threshold=0.0,
    )
    state = TrainingState.fit(_result(data), encoding, _target, Ridge())
    width = state.X.shape[1]
    update = state.forget("records", [0, 1, 2, 3, 4])
    assert state.X.shape[1] == width - 1
    assert set(update.reencoded_blocks) == {"group", "x"}
    recomputed = _result(data.iloc[5:])
    fresh = ColumnTransformer(
        [("group", OneHotEncoder(), ["group"]), ("x", StandardScaler(), ["x"])],
        sparse_threshold=0.0,
    )
    report = compare_with_recompute(state, recomputed, fresh)
    assert report.ok, report.lines()
