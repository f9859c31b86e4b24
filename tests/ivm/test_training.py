"""The training side under forgetting, against the oracle: a full recompute without the data.

The running example (prepare -> split -> encode -> label -> model) is fitted once; then
customers are forgotten (instance deletion) or a leaked subject is blanked (value deletion)
through :class:`TrainingState`. The oracle re-runs everything from source files that no longer
hold the deleted records/values. Prepared rows, X, y must be equal; the model equal for exact
families and, for logistic regression, much closer to the new optimum than the old model was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import BernoulliNB

from lester_dagster.errors import PlanError
from lester_dagster.examples.complaints import feature_encoding, label, prepare
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.frame import Result
from lester_dagster.ivm.training import TrainingState

SPLIT = {"by": "customers", "test_fraction": 0.25, "seed": 3}


def _train(customers_csv: Path, mails_csv: Path) -> Result:
    train, _ = prepare(customers_csv, mails_csv).split(**SPLIT)
    return train.execute()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_complaints(tmp_path_factory.mktemp("src"), 600, seed=11)


def _dense(X: Any) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _by_mail(frame: pd.DataFrame) -> np.ndarray:
    return np.argsort(frame["mail_id"].to_numpy(), kind="stable")


def _oracle(
    sources: tuple[Path, Path], tmp: Path, drop_customers: list[int], blank_mails: list[int]
) -> Result:
    customers = pd.read_csv(sources[0])
    mails = pd.read_csv(sources[1])
    customers = customers[~customers["customer_id"].isin(drop_customers)]
    mails.loc[mails["mail_id"].isin(blank_mails), "subject"] = np.nan
    tmp.mkdir(parents=True, exist_ok=True)
    customers.to_csv(tmp / "customers.csv", index=False)
    mails.to_csv(tmp / "mails.csv", index=False)
    return _train(tmp / "customers.csv", tmp / "mails.csv")


def _regression_label(frame: pd.DataFrame) -> pd.Series:
    return frame["sentiment"]


MODELS = {
    "ridge": (Ridge(alpha=1.0), _regression_label),
    "bernoulli_nb": (BernoulliNB(), label),
    "logistic": (LogisticRegression(C=1.0, max_iter=1000), label),
}


def _encoding() -> Any:
    return feature_encoding(text_features=64)


def _compare(state: TrainingState, oracle: Result, model: Any, label_fn: Any, name: str) -> None:
    expected = oracle.to_pandas()
    got = state.frame
    assert sorted(got["mail_id"]) == sorted(expected["mail_id"])
    mine, theirs = _by_mail(got), _by_mail(expected)
    pd.testing.assert_frame_equal(
        got.iloc[mine].reset_index(drop=True),
        expected.iloc[theirs].reset_index(drop=True),
        check_dtype=False,
    )
    ct = clone(_encoding()).fit(expected)
    X_ref = _dense(ct.transform(expected))[theirs]
    np.testing.assert_allclose(_dense(state.X)[mine], X_ref, rtol=1e-9, atol=1e-9)
    y_ref = np.asarray(label_fn(expected))[theirs]
    np.testing.assert_array_equal(np.asarray(state.y)[mine], y_ref)
    if name == "logistic":
        return  # compared by distance in the test itself
    reference = clone(model).fit(_dense(state.X), state.y)
    for attr in ("coef_", "intercept_", "feature_log_prob_", "class_log_prior_"):
        if hasattr(reference, attr):
            ref = np.asarray(getattr(reference, attr))
            scale = max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(
                np.asarray(getattr(state.model, attr)), ref, rtol=0, atol=1e-9 * scale
            )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forgetting_customers_equals_a_recompute(
    sources: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    model, label_fn = MODELS[name]
    state = TrainingState.fit(_train(*sources), _encoding(), label_fn, clone(model))
    old_coef = np.asarray(getattr(state.model, "coef_", np.zeros(1))).copy()
    customers = state.frame["customer_id"].drop_duplicates().sample(5, random_state=1).tolist()
    expected_removed = int(state.frame["customer_id"].isin(customers).sum())
    update = state.forget("customers", customers)
    assert update.rows_removed == expected_removed > 0
    assert not state.frame["customer_id"].isin(customers).any()
    assert "title_words" in update.reencoded_blocks  # the scaler's mean moved: re-encoded
    oracle = _oracle(sources, tmp_path / "oracle", customers, [])
    _compare(state, oracle, model, label_fn, name)
    if name == "logistic":
        tight = clone(model).set_params(tol=1e-10, max_iter=10_000)
        reference = tight.fit(_dense(state.X), state.y).coef_
        new_distance = np.abs(state.model.coef_ - reference).max()
        old_distance = np.abs(old_coef - reference).max()
        assert new_distance <= 1e-3 * old_distance


def test_value_deletion_reencodes_the_row_as_a_recompute_would(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    model, label_fn = MODELS["ridge"]
    state = TrainingState.fit(_train(*sources), _encoding(), label_fn, clone(model))
    mails = state.frame["mail_id"].head(3).tolist()
    rows = state.rows_of("mails", mails)
    new = state.frame.iloc[rows].copy()
    new["title"] = ""  # the forgotten subject, as the preparation turns a missing subject
    new["title_words"] = 0
    update = state.replace_rows(rows, new)
    assert update.rows_replaced == len(rows)
    oracle = _oracle(sources, tmp_path / "oracle", [], mails)
    _compare(state, oracle, model, label_fn, "ridge")


@pytest.mark.parametrize("implicit_zero", [False, True], ids=["mapped", "re-encoded"])
def test_a_moved_scaler_is_mapped_in_x_unless_a_row_holds_no_value(
    sources: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    implicit_zero: bool,
) -> None:
    """Forgetting rows moves the title-word scaler: its column of X is mapped affinely when
    every row stores a value there, re-encoded from the frame when one row holds an implicit
    zero; both equal a recompute."""
    model, label_fn = MODELS["ridge"]
    state = TrainingState.fit(_train(*sources), _encoding(), label_fn, clone(model))
    block = state.features.block("title_words")
    X = sp.csr_matrix(state.X)
    if implicit_zero:  # drop the stored value of row 0 in the scaler's column
        X = X.tolil()
        X[0, block.start] = 0.0
        X = X.tocsr()
        X.eliminate_zeros()
    state.features = type(state.features)(
        X, state.features.prov, state.features.blocks, state.features.resolve
    )
    calls: list[bool] = []
    real = TrainingState._map_affine_blocks

    def spy(self: TrainingState, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(TrainingState, "_map_affine_blocks", spy)
    customers = state.frame["customer_id"].drop_duplicates().sample(5, random_state=2).tolist()
    if implicit_zero:  # keep row 0, whose value was dropped
        customers = [c for c in customers if c != state.frame["customer_id"].iloc[0]]
    update = state.forget("customers", customers)
    assert update.reencoded_blocks == ("title_words",)
    assert calls == [not implicit_zero]
    expected = _oracle(sources, tmp_path / "oracle", customers, []).to_pandas()
    mine, theirs = _by_mail(state.frame), _by_mail(expected)
    ct = clone(_encoding()).fit(expected)
    X_ref = _dense(ct.transform(expected))[theirs]
    # mapped, or re-encoded from the frame (which restores row 0's dropped value)
    np.testing.assert_allclose(_dense(state.X)[mine], X_ref, rtol=1e-9, atol=1e-9)
    assert sp.issparse(state.X)


# -- the columns the state keeps ---------------------------------------------------------------
# Columns read by nothing but stateless encoders (the hashed subject and text) and not by the
# label are dropped from TrainingState.frame when the label's inputs are declared; forgetting
# rows and replacing values must still equal a recompute.
LABEL_INPUTS = ("sentiment",)


def _fit_declared(
    prepared: Result, label_inputs: tuple[str, ...] | None = LABEL_INPUTS
) -> TrainingState:
    return TrainingState.fit(
        prepared, _encoding(), _regression_label, Ridge(alpha=1.0),
        label_inputs=label_inputs,
    )  # fmt: skip


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
    X_ref = _dense(clone(_encoding()).fit_transform(expected))[theirs]
    np.testing.assert_allclose(_dense(state.X)[mine], X_ref, rtol=1e-9, atol=1e-9)
    reference = Ridge(alpha=1.0).fit(_dense(state.X), state.y)
    np.testing.assert_allclose(state.model.coef_, reference.coef_, rtol=0, atol=1e-9)


def test_columns_only_stateless_encoders_read_are_not_kept(sources: tuple[Path, Path]) -> None:
    prepared = _train(*sources)
    state = _fit_declared(prepared)
    assert set(state.dropped) == {"title", "text"}  # hashed only; the scaler reads title_words
    assert not set(state.dropped) & set(state.frame.columns)
    assert {"title_words", "country", "sentiment", "mail_id"} <= set(state.frame.columns)
    # a label that may read any column (inputs not declared) keeps every column
    everything = _fit_declared(prepared, label_inputs=None)
    assert everything.dropped == () and list(everything.frame.columns) == list(
        prepared.to_pandas().columns
    )


def test_forgetting_customers_without_the_dropped_columns_equals_a_recompute(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    state = _fit_declared(_train(*sources))
    customers = state.frame["customer_id"].drop_duplicates().head(4).tolist()
    state.forget("customers", customers)
    _assert_recompute(state, _oracle(sources, tmp_path / "o", customers, []))


def test_a_value_deletion_of_a_dropped_column_equals_a_recompute(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    prepared = _train(*sources)
    state = _fit_declared(prepared)
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
    state = _fit_declared(_train(*sources))
    rows = np.arange(2)
    with pytest.raises(PlanError, match=r"lacks the prepared column\(s\) \['title', 'text'\]"):
        state.replace_rows(rows, state.frame.iloc[rows])


@pytest.mark.parametrize("rows", [[0], [7, 2, 19], [19], [3, 4, 5]], ids=str)
def test_replacing_rows_of_a_sparse_x_changes_exactly_those_rows(rows: list[int]) -> None:
    """The rows of a value deletion are swapped into X slice by slice: the result equals the
    dense replacement, in canonical CSR form, and X itself is left as it was."""
    from lester_dagster.ivm.training import _replace_rows

    rng = np.random.default_rng(len(rows))
    X = sp.random(20, 9, density=0.3, format="csr", random_state=rng)
    X.data[:] = rng.normal(size=X.nnz)
    before = X.toarray()
    fresh = rng.normal(size=(len(rows), 9))
    fresh[:, 4] = 0.0  # zeros of a new row are not stored
    if len(rows) > 1:
        fresh[1] = 0.0  # a row that becomes empty
    out = _replace_rows(X, np.asarray(rows), fresh)
    expected = before.copy()
    expected[rows] = fresh
    np.testing.assert_array_equal(out.toarray(), expected)
    assert out.has_canonical_format
    for row in rows:  # the new rows store their nonzeros only
        assert (out.data[out.indptr[row] : out.indptr[row + 1]] != 0).all()
    assert out.shape == X.shape
    np.testing.assert_array_equal(X.toarray(), before)
    with pytest.raises(PlanError, match="distinct"):
        _replace_rows(X, np.asarray([1, 1]), np.zeros((2, 9)))
