"""The training state keeps only the prepared columns its updates read: columns read by nothing
but stateless encoders (the subject and text, hashed) and not by the label are dropped from
``TrainingState.frame``. Forgetting rows and replacing values must still equal a recompute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import Ridge

from lester_dagster.errors import PlanError
from lester_dagster.examples.complaints import feature_encoding, prepare
from lester_dagster.frame import Result
from lester_dagster.ivm.training import TrainingState

SPLIT = {"by": "customers", "test_fraction": 0.25, "seed": 3}
LABEL_INPUTS = ("sentiment",)


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["sentiment"]


def _train(customers_csv: Path, mails_csv: Path) -> Result:
    train, _ = prepare(customers_csv, mails_csv).split(**SPLIT)
    return train.execute()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from lester_dagster.examples.complaints_data import write_complaints

    return write_complaints(tmp_path_factory.mktemp("src"), 500, seed=5)


def _fit(prepared: Result, label_inputs: tuple[str, ...] | None = LABEL_INPUTS) -> TrainingState:
    return TrainingState.fit(
        prepared, feature_encoding(text_features=64), _label, Ridge(alpha=1.0),
        label_inputs=label_inputs,
    )  # fmt: skip


def _dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _oracle(sources: tuple[Path, Path], tmp: Path, drop: list[int], blank: list[int]) -> Result:
    customers, mails = pd.read_csv(sources[0]), pd.read_csv(sources[1])
    customers = customers[~customers["customer_id"].isin(drop)]
    mails.loc[mails["mail_id"].isin(blank), "subject"] = np.nan
    tmp.mkdir(parents=True, exist_ok=True)
    customers.to_csv(tmp / "customers.csv", index=False)
    mails.to_csv(tmp / "mails.csv", index=False)
    return _train(tmp / "customers.csv", tmp / "mails.csv")


def _assert_recompute(state: TrainingState, oracle: Result) -> None:
    expected = oracle.to_pandas()
    mine = np.argsort(state.frame["mail_id"].to_numpy(), kind="stable")
    theirs = np.argsort(expected["mail_id"].to_numpy(), kind="stable")
    kept = list(state.frame.columns)
    pd.testing.assert_frame_equal(
        state.frame.iloc[mine].reset_index(drop=True),
        expected[kept].iloc[theirs].reset_index(drop=True),
        check_dtype=False,
    )
    X_ref = _dense(clone(feature_encoding(text_features=64)).fit_transform(expected))[theirs]
    np.testing.assert_allclose(_dense(state.X)[mine], X_ref, rtol=1e-9, atol=1e-9)
    reference = Ridge(alpha=1.0).fit(_dense(state.X), state.y)
    np.testing.assert_allclose(state.model.coef_, reference.coef_, rtol=0, atol=1e-9)


def test_columns_only_stateless_encoders_read_are_not_kept(sources: tuple[Path, Path]) -> None:
    prepared = _train(*sources)
    state = _fit(prepared)
    assert set(state.dropped) == {"title", "text"}  # hashed only; the scaler reads title_words
    assert not set(state.dropped) & set(state.frame.columns)
    assert {"title_words", "country", "sentiment", "mail_id"} <= set(state.frame.columns)
    # a label that may read any column (inputs not declared) keeps every column
    everything = _fit(prepared, label_inputs=None)
    assert everything.dropped == () and list(everything.frame.columns) == list(
        prepared.to_pandas().columns
    )


def test_forgetting_customers_without_the_dropped_columns_equals_a_recompute(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    state = _fit(_train(*sources))
    customers = state.frame["customer_id"].drop_duplicates().head(4).tolist()
    state.forget("customers", customers)
    _assert_recompute(state, _oracle(sources, tmp_path / "o", customers, []))


def test_a_value_deletion_of_a_dropped_column_equals_a_recompute(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    prepared = _train(*sources)
    state = _fit(prepared)
    full = prepared.to_pandas()
    mails = full.loc[full["title"].str.len() > 0, "mail_id"].head(3).tolist()
    rows = state.rows_of("mails", mails)
    new = full.set_index("mail_id").loc[state.frame["mail_id"].iloc[rows]].reset_index()
    new = new[list(full.columns)]
    assert not state.values_differ(rows, new)  # the stored rows, as they are
    new["title"] = ""  # the forgotten subject, as the preparation turns a missing one
    new["title_words"] = 0
    assert state.values_differ(rows, new)
    only_dropped = new.assign(title_words=state.frame["title_words"].iloc[rows].to_numpy())
    assert state.values_differ(rows, only_dropped)  # seen through the hashed subject in X
    update = state.replace_rows(rows, new)
    assert update.rows_replaced == len(rows)
    _assert_recompute(state, _oracle(sources, tmp_path / "o", [], mails))


def test_replacing_rows_needs_the_dropped_columns_too(sources: tuple[Path, Path]) -> None:
    state = _fit(_train(*sources))
    rows = np.arange(2)
    with pytest.raises(PlanError, match=r"lacks the prepared column\(s\) \['title', 'text'\]"):
        state.replace_rows(rows, state.frame.iloc[rows])
