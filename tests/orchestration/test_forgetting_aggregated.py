"""Aggregated training rows (mails counted per customer): split by the one customer each row
derives from, and a deletion that changes an aggregate refits the model (recorded), equal to
a recompute on the data without the deleted records."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lester_dagster.errors import UnsupportedOperationError
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.frame import Frame, col
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration import LesterPipeline, SourceSpec, SplitSpec, build_assets
from lester_dagster.orchestration.forgetting import apply_deletions
from lester_dagster.store.ledger import Ledger

from .test_forgetting import _load, assert_equal_to_oracle, materialise_all

CUSTOMERS = 240


def prepare(customers: Frame, mails: Frame) -> Frame:
    counts = mails.group_by("email").agg(mails=("mail_id", "count"))
    return counts.join(customers, on="email").select(
        "customer_id", "email", "country", "level", "mails"
    )


def features() -> Any:
    return ColumnTransformer(
        [
            ("mails", StandardScaler(), ["mails"]),
            ("country", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ],
        sparse_threshold=1.0,
    )


def label(rows: pd.DataFrame) -> pd.Series:
    return (rows["level"] == "premium").astype("int64")


def make(directory: Path, partitions: int = 0) -> LesterPipeline:
    return LesterPipeline(
        name="mail_counts",
        sources={
            "customers": SourceSpec(directory / "customers.csv", key="customer_id"),
            "mails": SourceSpec(directory / "mails.csv", key="mail_id"),
        },
        prepare=prepare,
        split=SplitSpec(by="customers", test_fraction=0.25, seed=1),
        features=features,
        label=label,
        label_inputs=("level",),
        model=lambda: LogisticRegression(C=1.0, max_iter=1000),
        partitions=partitions,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aggregated") / "data"
    write_complaints(out, CUSTOMERS, seed=4)
    return out


def test_aggregated_rows_split_by_their_customer_and_refit_on_deletion(
    data: Path, tmp_path: Path
) -> None:
    shutil.copytree(data, tmp_path / "data")
    pipeline = make(tmp_path / "data")
    io = materialise_all(pipeline, tmp_path / "store")
    train = _load(io, "train")
    assert not train.prov.single and len(train) > 20  # one row per customer, several mails
    # a mail of a training customer with several mails: its row changes, it does not leave
    multi = train.data[train.data["mails"] > 1]
    email = multi["email"].iloc[0]
    mails = pd.read_csv(data / "mails.csv")
    mail = int(mails.loc[mails["email"] == email, "mail_id"].iloc[0])
    customer = int(train.data["customer_id"].iloc[-1])
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        requests = [
            ledger.submit(pipeline.name, "mails", [mail]),
            ledger.submit(pipeline.name, "customers", [customer]),
        ]
        report = apply_deletions(pipeline, build_assets(pipeline), io, requests, run_id="t")
    assert any("aggregates" in f for f in report.fallbacks), report.fallbacks
    assert report.strategies.get("model") == "refit"
    # the oracle: the pipeline on csvs without the mail and the customer
    out = tmp_path / "oracle_data"
    out.mkdir()
    mails[mails["mail_id"] != mail].to_csv(out / "mails.csv", index=False)
    customers = pd.read_csv(data / "customers.csv")
    customers[customers["customer_id"] != customer].to_csv(out / "customers.csv", index=False)
    oracle = materialise_all(dataclasses.replace(make(out)), tmp_path / "oracle_store")
    assert_equal_to_oracle(io, oracle, ("customers", "mails", "mail_counts", "train", "test"))
    row = _load(io, "train").data.set_index("email").loc[email]
    assert int(row["mails"]) == int(multi["mails"].iloc[0]) - 1


def test_key_based_forgetting_of_aggregated_rows_is_refused(data: Path, tmp_path: Path) -> None:
    shutil.copytree(data, tmp_path / "data")
    pipeline = make(tmp_path / "data")
    io = materialise_all(pipeline, tmp_path / "store")
    state = _load(io, "model")
    assert isinstance(state, TrainingState)
    mail_ids = state.prov.keys["mails"][:1]
    with pytest.raises(UnsupportedOperationError, match="refit"):
        state.forget("mails", [int(np.asarray(mail_ids)[0])])


def test_split_of_aggregated_rows_follows_the_customer() -> None:
    from lester_dagster.frame import Prov, split_mask

    ids = np.array([5, 5, 9, 7, 7, 7], dtype=np.uint64)
    grouped = Prov(3, {"customers": ids, "mails": np.arange(1, 7, dtype=np.uint64)},
                   np.array([0, 2, 3, 6]))  # fmt: skip
    single = Prov.of_source("customers", np.array([5, 9, 7], dtype=np.uint64))
    for seed in range(5):
        assert (
            split_mask(grouped, "customers", 0.5, seed).tolist()
            == split_mask(single, "customers", 0.5, seed).tolist()
        )
    mixed = Prov(2, {"customers": np.array([5, 6, 9], dtype=np.uint64)}, np.array([0, 2, 3]))
    with pytest.raises(UnsupportedOperationError, match="row 0"):
        split_mask(mixed, "customers", 0.5, 0)
    _ = col  # the frame API is used by prepare()
