"""Feature matrices with provenance: row mapping, column blocks and offsets, forward queries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lester_dagster.errors import PlanError, UnknownColumnError, UnknownKeyError
from lester_dagster.features.matrix import encode, encode_labels, fit_encode
from lester_dagster.frame import ColumnRef, Result, col, from_pandas

CUSTOMERS = pd.DataFrame(
    {"cid": [1, 2, 3], "email": ["a", "b", "c"], "country": ["DE", "FR", "DE"], "age": [30, 40, 50]}
)
MAILS = pd.DataFrame(
    {
        "mid": [10, 11, 12, 13, 14],
        "email": ["a", "a", "b", "c", "c"],
        "text": ["bad bank", "good", "bank bank bad", "fine", "bad"],
        "score": [1.0, np.nan, 3.0, 4.0, 5.0],
    }
)


@pytest.fixture
def prepared() -> Result:
    customers = from_pandas(CUSTOMERS, name="customers", key="cid")
    mails = from_pandas(MAILS, name="mails", key="mid")
    joined = mails.join(customers, on="email").with_column("age2", col("age") * 2)
    return joined.execute()


def _ct(sparse: bool) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("words", CountVectorizer(), "text"),
            ("age", StandardScaler(), ["age", "age2"]),
            ("country", OneHotEncoder(), ["country"]),
            ("score", make_pipeline(SimpleImputer(), StandardScaler()), ["score"]),
        ],
        sparse_threshold=1.0 if sparse else 0.0,
    )


@pytest.mark.parametrize("sparse", [True, False])
def test_blocks_tile_x_at_sklearns_offsets(prepared: Result, sparse: bool) -> None:
    _, fm = fit_encode(_ct(sparse), prepared)
    assert sp.issparse(fm.X) == sparse
    vocabulary = sorted({w for t in MAILS["text"] for w in t.split()})  # bad, bank, fine, good
    widths = {"words": len(vocabulary), "age": 2, "country": 2, "score": 1}
    assert [b.name for b in fm.blocks] == ["words", "age", "country", "score"]
    start = 0
    for block in fm.blocks:
        assert (block.start, block.width) == (start, widths[block.name])
        start = block.stop
    assert fm.shape == (len(prepared), start)
    dense = fm.X.toarray() if sp.issparse(fm.X) else fm.X
    frame = prepared.to_pandas()
    # the age block is the standardised age: check it against numpy directly
    age = frame["age"].to_numpy(dtype=float)
    expected_age = (age - age.mean()) / age.std()
    b = fm.block("age")
    np.testing.assert_allclose(dense[:, b.start], expected_age)
    # the country block is one-hot DE, FR in that order
    c = fm.block("country")
    np.testing.assert_array_equal(dense[:, c.start], (frame["country"] == "DE").to_numpy())
    # the word block counts words in vocabulary order
    w = fm.block("words")
    bank = vocabulary.index("bank")
    counts = [t.split().count("bank") for t in frame["text"]]
    np.testing.assert_array_equal(dense[:, w.start + bank], counts)


def test_blocks_know_their_inputs_and_source_columns(prepared: Result) -> None:
    _, fm = fit_encode(_ct(True), prepared)
    assert fm.block("age").inputs == ("age", "age2")
    assert fm.block("age").lineage == {ColumnRef("customers", "age")}
    assert fm.block("words").lineage == {ColumnRef("mails", "text")}
    assert fm.block("country").sources == {"customers"}
    assert fm.column_lineage(fm.block("score").start) == {ColumnRef("mails", "score")}
    with pytest.raises(IndexError):
        fm.block_of(fm.shape[1])


def test_rows_map_to_prepared_rows_and_source_keys(prepared: Result) -> None:
    _, fm = fit_encode(_ct(True), prepared)
    frame = prepared.to_pandas()
    for row in range(len(frame)):
        ids = fm.backward(row)
        assert prepared.lineage.keys_of("mails", ids["mails"]) == [frame.at[row, "mid"]]
        assert prepared.lineage.keys_of("customers", ids["customers"]) == [frame.at[row, "cid"]]


def test_forward_gives_rows_and_the_columns_holding_the_sources_data(prepared: Result) -> None:
    _, fm = fit_encode(_ct(True), prepared)
    frame = prepared.to_pandas()
    hit = fm.forward("customers", [3])
    assert hit.rows.tolist() == frame.index[frame["cid"] == 3].tolist()
    assert set(hit.blocks) == {"age", "country"}
    expected = [*range(fm.block("age").start, fm.block("age").stop)]
    expected += range(fm.block("country").start, fm.block("country").stop)
    assert sorted(hit.columns.tolist()) == expected
    mail = fm.forward("mails", [12])
    assert mail.rows.tolist() == frame.index[frame["mid"] == 12].tolist()
    assert set(mail.blocks) == {"words", "score"}
    with pytest.raises(UnknownKeyError):
        fm.forward("customers", [99])


def test_remainder_passthrough_is_a_block_and_drop_is_not(prepared: Result) -> None:
    ct = ColumnTransformer(
        [("country", OneHotEncoder(), ["country"]), ("gone", "drop", ["text"])],
        remainder="passthrough",
        sparse_threshold=0.0,
    )
    plan = from_pandas(prepared.to_pandas()[["mid", "country", "age", "text"]], name="p", key="mid")
    _, fm = fit_encode(ct, plan.execute())
    names = [b.name for b in fm.blocks]
    assert "gone" not in names and "remainder" in names
    rest = fm.block("remainder")
    assert "country" not in rest.inputs and "text" not in rest.inputs
    assert rest.width == len(rest.inputs)
    assert fm.blocks[-1].stop == fm.shape[1]


def test_passing_text_through_into_x_is_a_clear_error(prepared: Result) -> None:
    ct = ColumnTransformer([("country", OneHotEncoder(), ["country"])], remainder="passthrough")
    with pytest.raises(PlanError, match="numeric") as info:
        fit_encode(ct, prepared)
    assert "email" in str(info.value)


def test_encode_applies_the_fitted_transformer_to_new_rows(prepared: Result) -> None:
    ct, train = fit_encode(_ct(False), prepared)
    again = encode(ct, prepared)
    np.testing.assert_allclose(again.X, train.X)
    with pytest.raises(PlanError, match="not fitted"):
        encode(_ct(False), prepared)


def test_unknown_input_column_names_it_and_lists_the_frame(prepared: Result) -> None:
    ct = ColumnTransformer([("x", StandardScaler(), ["agee"])])
    with pytest.raises(UnknownColumnError, match="agee") as info:
        fit_encode(ct, prepared)
    assert "age" in str(info.value)


def test_only_column_transformers_are_accepted(prepared: Result) -> None:
    with pytest.raises(PlanError, match="ColumnTransformer"):
        fit_encode(StandardScaler(), prepared)


def test_labels_follow_the_prepared_rows_with_lineage(prepared: Result) -> None:
    labels = encode_labels(
        lambda df: (df["text"].str.contains("bad") & (df["country"] == "DE")).astype(int),
        prepared,
        inputs=["text", "country"],
    )
    frame = prepared.to_pandas()
    expected = [int("bad" in t and c == "DE") for t, c in zip(frame["text"], frame["country"])]
    assert labels.y.tolist() == expected
    assert labels.lineage == {ColumnRef("mails", "text"), ColumnRef("customers", "country")}
    assert labels.prov is prepared.prov


def test_labels_must_give_one_value_per_row(prepared: Result) -> None:
    with pytest.raises(PlanError, match="one value per prepared row"):
        encode_labels(lambda df: [1, 2], prepared)
    with pytest.raises(UnknownColumnError):
        encode_labels(lambda df: df["x"], prepared, inputs=["x"])
