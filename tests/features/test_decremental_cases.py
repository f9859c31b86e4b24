"""Targeted decremental cases: vanishing categories and terms, errors, records, pipelines."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    KBinsDiscretizer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from lester_dagster.errors import DecrementalError, LesterError
from lester_dagster.features.decremental import PipelineTracker, track
from lester_dagster.features.decremental_base import fitted_attributes
from tests.features.oracle import assert_same_fit, assert_same_output, feature_names, make_frame


def _tracked(est: Any, X: Any) -> Any:
    est.fit(X)
    return track(est, X)


def _equals_refit(tracker: Any, X: Any) -> None:
    ref = clone(tracker.transformer).fit(X)
    assert_same_fit(tracker.transformer, ref)
    assert_same_output(tracker.transformer, ref, X)


# -- categories ----------------------------------------------------------------------------------
CATS = pd.DataFrame(
    {
        "country": pd.Series(["DE", "FR", "DE", "NL", "FR", "DE"], dtype="str"),
        "level": pd.Series(["gold", "basic", "basic", "gold", "basic", "basic"], dtype="str"),
    }
)


def test_onehot_drops_the_column_of_a_category_whose_last_row_is_forgotten() -> None:
    tracker = _tracked(OneHotEncoder(), CATS)
    names = feature_names(tracker.transformer)
    record = tracker.forget(CATS.iloc[[3]], remaining=lambda: CATS.drop(index=3))
    assert record.strategy == "exact" and record.changed
    assert record.detail["dropped_columns"] == [names.index("country_NL")]
    assert record.detail["added_columns"] == []
    assert record.detail["n_features_out"] == [5, 4]
    assert list(tracker.transformer.categories_[0]) == ["DE", "FR"]
    _equals_refit(tracker, CATS.drop(index=3))


def test_onehot_keeps_its_state_while_every_category_has_rows() -> None:
    tracker = _tracked(OneHotEncoder(), CATS)
    before = copy.deepcopy(tracker.transformer)
    record = tracker.forget(CATS.iloc[[0, 1]], remaining=lambda: CATS.iloc[2:])
    assert not record.changed and record.detail["changed_attributes"] == []
    assert_same_fit(tracker.transformer, before)


def test_onehot_value_deletion_adds_a_missing_category_column() -> None:
    tracker = _tracked(OneHotEncoder(), CATS)
    new = CATS.copy()
    new.loc[1, "level"] = np.nan
    record = tracker.replace(CATS.iloc[[1]], new.iloc[[1]], remaining=lambda: new)
    after = feature_names(tracker.transformer)
    assert record.detail["added_columns"] == [after.index("level_nan")]
    _equals_refit(tracker, new)


def test_onehot_drop_first_moves_to_the_next_category() -> None:
    tracker = _tracked(OneHotEncoder(drop="first"), CATS)
    gone = CATS.index[CATS["level"] == "basic"]
    rest = CATS.drop(index=gone)
    record = tracker.forget(CATS.loc[gone], remaining=lambda: rest)
    assert record.changed
    _equals_refit(tracker, rest)


def test_onehot_drop_list_whose_value_vanishes_raises_and_changes_nothing() -> None:
    tracker = _tracked(OneHotEncoder(drop=["NL", "gold"]), CATS)
    before = copy.deepcopy(tracker.transformer)
    with pytest.raises(DecrementalError, match=r"refit .* would fail"):
        tracker.forget(CATS.iloc[[3]], remaining=lambda: CATS.drop(index=3))
    assert_same_fit(tracker.transformer, before)
    assert tracker.n_rows == 6
    tracker.forget(CATS.iloc[[0]], remaining=lambda: CATS.drop(index=0))  # still consistent
    _equals_refit(tracker, CATS.drop(index=0))


def test_ordinal_codes_shift_when_a_category_vanishes() -> None:
    tracker = _tracked(OrdinalEncoder(), CATS)
    record = tracker.forget(CATS.iloc[[1, 4]], remaining=lambda: CATS.drop(index=[1, 4]))
    assert record.changed and record.detail["layout_changed"] is False
    assert tracker.transformer.transform(CATS.iloc[[3]])[0, 0] == 1.0  # NL moved from 2 to 1
    _equals_refit(tracker, CATS.drop(index=[1, 4]))


def test_forgetting_values_that_were_never_fitted_raises_and_changes_nothing() -> None:
    tracker = _tracked(OneHotEncoder(), CATS)
    stranger = pd.DataFrame({"country": pd.Series(["US"], dtype="str"), "level": ["gold"]})
    with pytest.raises(DecrementalError, match=r"never fitted|not fitted"):
        tracker.forget(stranger, remaining=lambda: CATS)
    twice = CATS.iloc[[3, 3]]  # NL has one row
    with pytest.raises(DecrementalError):
        tracker.forget(twice, remaining=lambda: CATS.drop(index=3))
    tracker.forget(CATS.iloc[[3]], remaining=lambda: CATS.drop(index=3))
    _equals_refit(tracker, CATS.drop(index=3))


# -- scalers and imputers ------------------------------------------------------------------------
def test_standard_scaler_is_exact_when_the_rest_is_constant() -> None:
    # a float downdate of M2 leaves ~1e-9 of noise here, and scale_ would be ~3e-5, not 1
    X = pd.DataFrame({"x": [0.1] * 50 + [1e8, -3e7]})
    tracker = _tracked(StandardScaler(), X)
    tracker.forget(X.iloc[50:], remaining=lambda: X.iloc[:50])
    assert tracker.transformer.var_[0] == 0.0 and tracker.transformer.scale_[0] == 1.0
    _equals_refit(tracker, X.iloc[:50])


def test_standard_scaler_does_not_drift_over_many_updates() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(100.0, 5.0, 400), "y": rng.integers(0, 9, 400)})
    tracker = _tracked(StandardScaler(), X)
    current = X.copy()
    for step in range(30):
        rows = current.index[rng.choice(len(current), 5, replace=False)]
        new = current.loc[rows].copy()
        new["x"] = rng.normal(100.0, 5.0, 5)
        updated = current.copy()
        updated.loc[rows, "x"] = new["x"]
        tracker.replace(current.loc[rows], new, remaining=lambda u=updated: u)
        current = updated
        if step % 10 == 9:
            gone = current.index[:3]
            tracker.forget(current.loc[gone], remaining=lambda c=current, g=gone: c.drop(index=g))
            current = current.drop(index=gone)
    _equals_refit(tracker, current)


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_imputer_drops_a_column_that_becomes_all_missing(strategy: str) -> None:
    X = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    tracker = _tracked(SimpleImputer(strategy=strategy), X)
    rest = X.iloc[[1, 2]]
    record = tracker.forget(X.iloc[[0, 3]], remaining=lambda: rest)
    assert np.isnan(tracker.transformer.statistics_[0])
    assert record.detail["dropped_columns"] == [0]
    _equals_refit(tracker, rest)


def test_most_frequent_ties_go_to_the_smallest_value() -> None:
    X = pd.DataFrame({"c": pd.Series(["b", "b", "a", "a", "c", "b"], dtype="str")})
    tracker = _tracked(SimpleImputer(strategy="most_frequent"), X)
    assert tracker.transformer.statistics_[0] == "b"
    tracker.forget(X.iloc[[5]], remaining=lambda: X.iloc[:5])
    assert tracker.transformer.statistics_[0] == "a"
    _equals_refit(tracker, X.iloc[:5])


def test_kbins_with_subsampling_is_refitted_explicitly() -> None:
    X = pd.DataFrame({"x": np.arange(50.0)})
    tracker = _tracked(KBinsDiscretizer(n_bins=3, subsample=20, random_state=0), X)
    assert tracker.strategy == "refit" and "subsample" in tracker.reason
    record = tracker.forget(X.iloc[:5], remaining=lambda: X.iloc[5:])
    assert record.strategy == "refit" and "subsample" in record.detail["reason"]
    _equals_refit(tracker, X.iloc[5:])


def test_sparse_input_to_a_scaler_is_refitted() -> None:
    X = sp.csr_array(np.eye(6))
    tracker = _tracked(StandardScaler(with_mean=False), X)
    assert tracker.strategy == "refit" and tracker.reason == "sparse input"
    tracker.forget(X[:2], remaining=lambda: X[2:])
    _equals_refit(tracker, X[2:])


# -- text ----------------------------------------------------------------------------------------
DOCS = pd.Series(
    ["bank fee", "bank loan", "fee late", "card", "card bank", "loan loan loan", "late"],
    dtype="str",
)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CountVectorizer(min_df=2),
        lambda: TfidfVectorizer(min_df=2),
        lambda: TfidfVectorizer(min_df=2, use_idf=False),
    ],
    ids=["count", "tfidf", "tf"],
)
def test_a_term_below_min_df_leaves_the_vocabulary(make: Any) -> None:
    tracker = _tracked(make(), DOCS)
    before = feature_names(tracker.transformer)
    assert "fee" in before
    rest = DOCS.drop(index=0)
    record = tracker.forget(DOCS.iloc[[0]], remaining=lambda: rest)
    assert record.detail["dropped_columns"] == [before.index("fee")]
    assert "fee" not in tracker.transformer.vocabulary_
    _equals_refit(tracker, rest)
    # and back: a new document with 'fee' makes it frequent enough again
    more = pd.Series(["fee fee"], index=[0], dtype="str")
    record = tracker.replace(
        DOCS.iloc[[3]], more, remaining=lambda: pd.concat([more, rest.drop(index=3)])
    )
    assert "fee" in tracker.transformer.vocabulary_
    _equals_refit(tracker, pd.concat([more, rest.drop(index=3)]))


def test_a_term_rises_into_max_features() -> None:
    # term counts: loan 4, bank 3, card 2, fee 2, late 2 -> max_features=2 keeps loan, bank
    tracker = _tracked(CountVectorizer(max_features=2), DOCS)
    assert sorted(tracker.transformer.vocabulary_) == ["bank", "loan"]
    rest = DOCS.drop(index=[5])  # loan drops to 1: bank and a 2-count term win
    record = tracker.forget(DOCS.iloc[[5]], remaining=lambda: rest)
    assert record.changed and record.detail["added_columns"]
    _equals_refit(tracker, rest)


def test_a_fractional_max_df_prunes_a_term_when_documents_go() -> None:
    tracker = _tracked(CountVectorizer(max_df=0.45), DOCS)
    assert "bank" in tracker.transformer.vocabulary_  # in 3 of 7 documents
    rest = DOCS.drop(index=[3, 6])  # 3 of 5 documents: above 45%
    tracker.forget(DOCS.iloc[[3, 6]], remaining=lambda: rest)
    assert "bank" not in tracker.transformer.vocabulary_
    _equals_refit(tracker, rest)


def test_tfidf_changes_on_every_removal() -> None:
    tracker = _tracked(TfidfVectorizer(), DOCS)
    record = tracker.forget(DOCS.iloc[[6]], remaining=lambda: DOCS.iloc[:6])
    assert record.changed and record.detail["changed_attributes"] == ["idf_"]
    assert record.detail["layout_changed"] is False
    _equals_refit(tracker, DOCS.iloc[:6])


def test_deleted_text_is_the_empty_document_and_nan_is_refused() -> None:
    tracker = _tracked(TfidfVectorizer(), DOCS)
    before = copy.deepcopy(tracker.transformer)
    with pytest.raises(DecrementalError, match="empty string ''"):
        tracker.replace(DOCS.iloc[[3]], pd.Series([np.nan], index=[3], dtype="str"))
    assert_same_fit(tracker.transformer, before)
    blank = DOCS.copy()
    blank[3] = ""
    record = tracker.replace(DOCS.iloc[[3]], blank.iloc[[3]], remaining=lambda: blank)
    assert record.changed and record.detail["layout_changed"] is False  # 'card' is in doc 4
    _equals_refit(tracker, blank)


def test_forgetting_every_document_with_words_raises() -> None:
    docs = pd.Series(["bank", "", ""], dtype="str")
    tracker = _tracked(CountVectorizer(), docs)
    with pytest.raises(DecrementalError, match="no terms"):
        tracker.forget(docs.iloc[[0]], remaining=lambda: docs.iloc[1:])
    assert tracker.n_rows == 3 and tracker.transformer.vocabulary_ == {"bank": 0}


# -- general contract ----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [StandardScaler, OneHotEncoder, RobustScaler])
def test_forgetting_all_rows_is_a_clear_error(make: Any) -> None:
    X = make_frame(20, seed=5)[["wide"]] if make is not OneHotEncoder else CATS
    tracker = _tracked(make(), X)
    with pytest.raises(DecrementalError, match="at least one remaining row") as err:
        tracker.forget(X, remaining=lambda: X.iloc[:0])
    assert isinstance(err.value, LesterError) and isinstance(err.value, ValueError)
    with pytest.raises(DecrementalError, match=f"fitted on {len(X)}"):
        tracker.forget(pd.concat([X, X]))
    assert tracker.n_rows == len(X)


def test_a_refit_needs_remaining_rows_of_the_right_count() -> None:
    X = make_frame(20, seed=5)[["wide"]]
    tracker = _tracked(RobustScaler(), X)
    assert tracker.strategy == "refit" and "RobustScaler" in tracker.reason
    with pytest.raises(DecrementalError, match="pass remaining="):
        tracker.forget(X.iloc[:2])
    with pytest.raises(DecrementalError, match="returned 20 rows, expected 18"):
        tracker.forget(X.iloc[:2], remaining=lambda: X)
    record = tracker.forget(X.iloc[:2], remaining=lambda: X.iloc[2:])
    assert record.strategy == "refit" and record.detail["reason"] == tracker.reason
    _equals_refit(tracker, X.iloc[2:])


def test_replace_needs_old_and_new_of_the_same_rows() -> None:
    tracker = _tracked(StandardScaler(), CATS.assign(x=1.0)[["x"]])
    with pytest.raises(DecrementalError, match="same rows"):
        tracker.replace(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": [1.0, 2.0]}))


def test_track_refuses_unfitted_or_mismatched_input() -> None:
    with pytest.raises(DecrementalError, match="not fitted"):
        track(StandardScaler(), CATS)
    with pytest.raises(DecrementalError, match="fitted on 2 columns but X_fit has 1"):
        track(OneHotEncoder().fit(CATS), CATS[["country"]])
    with pytest.raises(DecrementalError, match="'dorp'"):
        track("dorp", CATS)
    assert track("drop", CATS).strategy == "stateless"
    assert track("passthrough", CATS).forget(CATS.iloc[:1]).strategy == "stateless"


def test_pipeline_refits_later_steps_only_when_an_earlier_state_changes() -> None:
    X = pd.DataFrame({"c": pd.Series(["a", "a", "b", None, "c", "c", "a"], dtype="str")})
    pipe = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder())
    tracker = _tracked(pipe, X)
    assert isinstance(tracker, PipelineTracker) and tracker.strategy == "refit"
    record = tracker.forget(X.iloc[[2]], remaining=lambda: X.drop(index=2))  # b vanishes
    assert record.strategy == "exact" and record.changed and "refitted_steps" not in record.detail
    _equals_refit(tracker, X.drop(index=2))
    rest = X.drop(index=[0, 1, 2])  # the mode becomes 'c': the imputer changes
    record = tracker.forget(X.iloc[[0, 1]], remaining=lambda: rest)
    assert record.strategy == "refit"
    assert record.detail["refitted_steps"] == ["Pipeline/onehotencoder"]
    _equals_refit(tracker, rest)
    assert tracker.steps[1].transformer is pipe.steps[1][1]  # same object, refitted in place


def test_trackers_pickle_with_their_transformer() -> None:
    X = make_frame(50, seed=9)
    est = make_pipeline(SimpleImputer(), StandardScaler()).fit(X[["num"]])
    tracker = track(est, X[["num"]])
    text = track(TfidfVectorizer(min_df=2).fit(X["text"]), X["text"])
    tracker, text = pickle.loads(pickle.dumps((tracker, text)))
    tracker.forget(X.loc[:9, ["num"]], remaining=lambda: X.loc[10:, ["num"]])
    text.forget(X.loc[:9, "text"], remaining=lambda: X.loc[10:, "text"])
    _equals_refit(tracker, X.loc[10:, ["num"]])
    _equals_refit(text, X.loc[10:, "text"])


def test_exact_updates_never_call_remaining() -> None:
    X = make_frame(40, seed=4)

    def fail() -> Any:
        raise AssertionError("an exact update read the remaining rows")

    for est, cols in [
        (StandardScaler(), ["num"]),
        (OneHotEncoder(), ["cat"]),
        (TfidfVectorizer(), "text"),
    ]:
        tracker = _tracked(est, X[cols])
        assert tracker.forget(X.loc[:4, cols], remaining=fail).strategy == "exact"
        assert set(fitted_attributes(tracker.transformer)) == set(
            fitted_attributes(clone(est).fit(X.loc[5:, cols]))
        )


def test_rows_must_come_with_the_fitted_columns() -> None:
    tracker = _tracked(OneHotEncoder(), CATS)
    with pytest.raises(DecrementalError, match="columns"):
        tracker.forget(CATS[["level", "country"]].iloc[:1])
    array_tracker = _tracked(StandardScaler(), np.arange(12.0).reshape(6, 2))
    with pytest.raises(DecrementalError, match="fitted on 2 input columns but got rows with 3"):
        array_tracker.forget(np.zeros((1, 3)))
    assert tracker.n_rows == 6 and array_tracker.n_rows == 6


@pytest.mark.parametrize(
    "make",
    [
        StandardScaler,
        MinMaxScaler,
        lambda: KBinsDiscretizer(n_bins=3),
        lambda: SimpleImputer(strategy="median"),
        OneHotEncoder,
        OrdinalEncoder,
    ],
    ids=["scaler", "minmax", "kbins", "median", "onehot", "ordinal"],
)
def test_numpy_input_is_tracked_like_frames(make: Any) -> None:
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.integers(0, 5, 80), rng.normal(size=80).round(1)]).astype(float)
    tracker = _tracked(make(), X)
    tracker.forget(X[:30], remaining=lambda: X[30:])
    _equals_refit(tracker, X[30:])
    new = X[30:40].copy()
    new[:, 0] = 9.0
    current = np.concatenate([new, X[40:]])
    tracker.replace(X[30:40], new, remaining=lambda: current)
    _equals_refit(tracker, current)


def test_a_failing_later_step_leaves_the_whole_pipeline_as_it_was() -> None:
    X = pd.DataFrame({"c": pd.Series(["a", "a", "b", None, "a", "c", "c"], dtype="str")})
    pipe = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(drop=["b"]))
    tracker = _tracked(pipe, X)
    before = copy.deepcopy(pipe)
    with pytest.raises(DecrementalError, match="would fail"):  # 'b' vanishes: drop=['b'] fails
        tracker.forget(X.iloc[[0, 1, 2]], remaining=lambda: X.iloc[3:])
    assert_same_fit(pipe, before)
    assert tracker.n_rows == 7 and all(s.n_rows == 7 for s in tracker.steps)
    assert tracker.steps[1].transformer is pipe.steps[1][1]
    tracker.forget(X.iloc[[5]], remaining=lambda: X.drop(index=5))
    _equals_refit(tracker, X.drop(index=5))


@pytest.mark.filterwarnings("ignore:Found unknown categories")
def test_column_transformer_blocks_after_forgetting_equal_a_refit() -> None:
    data = make_frame(200, seed=3)
    ct = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["num", "wide"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
            ("text", TfidfVectorizer(min_df=2), "text"),
        ]
    ).fit(data)
    trackers = {name: track(t, data[cols], name=name) for name, t, cols in ct.transformers_}
    gone = data.index[(data["cat"] == "rare").to_numpy() | (data.index < 40)]
    keep = data.index.difference(gone)
    records = {
        name: trackers[name].forget(
            data.loc[gone, cols], remaining=lambda c=cols: data.loc[keep, c]
        )
        for name, _, cols in ct.transformers_
    }
    assert records["cat"].detail["dropped_columns"] == [4]  # cat_rare
    assert records["remainder"].strategy == "stateless"
    ref = clone(ct).fit(data.loc[keep])
    got, want = ct.transform(data.loc[keep]), ref.transform(data.loc[keep])
    np.testing.assert_allclose(
        sp.csr_array(got).toarray(), sp.csr_array(want).toarray(), atol=1e-12
    )


def test_data_the_statistics_cannot_hold_falls_back_to_an_explicit_refit() -> None:
    X = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01"])})
    tracker = _tracked(OneHotEncoder(), X)
    assert tracker.strategy == "refit" and "datetime64" in tracker.reason
    record = tracker.forget(X.iloc[[1]], remaining=lambda: X.iloc[[0, 2]])
    assert record.strategy == "refit" and record.changed
    _equals_refit(tracker, X.iloc[[0, 2]])
