"""TrainingState.reencode_matrix: bringing X_test up to date after the training state changed.

Scenario: a state is fitted on the training rows of a split and the test rows are encoded with
its encoding. Then training rows are forgotten (the scaler's statistics move and a category
vanishes from the one-hot encoder, so those blocks are re-encoded), test records are deleted,
other test records change their values and new test records appear. ``reencode_matrix`` must
give the same X_test as encoding the new test rows from scratch, both with the state's (updated)
encoding and with an encoding refitted on the remaining training rows (a full recompute).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lester_dagster.errors import PlanError
from lester_dagster.features.matrix import FeatureMatrix, encode
from lester_dagster.frame import Frame, Result, execute, from_pandas
from lester_dagster.ivm.frames import positions_in, row_identity, rows_mentioning
from lester_dagster.ivm.training import TrainingState

N = 160
WORDS = np.array(["late", "fee", "bank", "card", "refund", "rude", "slow", "thanks"])


def _data(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "rid": np.arange(N),
            "x": rng.normal(loc=3.0, scale=2.0, size=N),
            "n": rng.integers(0, 10, size=N).astype(np.int64),
            "cat": rng.choice(["a", "b", "c"], size=N).astype(object),
            "text": [" ".join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(N)],
        }
    )
    data["target"] = 0.5 * data["x"] - (data["cat"] == "a") + 0.1 * data["n"]
    return data


def _sides(data: pd.DataFrame) -> tuple[Frame, Frame]:
    return from_pandas(data, name="records", key="rid").split("records", test_fraction=0.4, seed=2)


def _run(data: pd.DataFrame) -> tuple[Result, Result]:
    train, test = execute(*_sides(data))
    return train, test


def _encoding(sparse: bool) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("x", StandardScaler(), ["x"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
            ("text", HashingVectorizer(n_features=16, alternate_sign=False), "text"),
            ("n", "passthrough", ["n"]),
        ],
        sparse_threshold=1.0 if sparse else 0.0,
    )


def _target(frame: pd.DataFrame) -> pd.Series:
    return frame["target"]


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _max_abs_diff(a: Any, b: Any) -> float:
    """Max abs difference of two matrices of the same shape; NaN must sit at the same places."""
    da, db = _dense(a), _dense(b)
    assert da.shape == db.shape
    nan = np.isnan(da)
    assert np.array_equal(nan, np.isnan(db))
    return float(np.abs(da[~nan] - db[~nan]).max()) if (~nan).any() else 0.0


def _assert_same(got: FeatureMatrix, expected: FeatureMatrix) -> None:
    assert sp.issparse(got.X) == sp.issparse(expected.X)
    assert got.shape == expected.shape
    assert _max_abs_diff(got.X, expected.X) < 1e-12
    assert [(b.name, b.start, b.stop) for b in got.blocks] == [
        (b.name, b.start, b.stop) for b in expected.blocks
    ]


def _rids(result: Result) -> list[int]:
    return result.to_pandas()["rid"].tolist()


def _with_vanishing_category(data: pd.DataFrame) -> pd.DataFrame:
    """Category 'd' on three training records and two test records."""
    train, test = _run(data)
    data = data.copy()
    data.loc[data["rid"].isin(_rids(train)[:3] + _rids(test)[:2]), "cat"] = "d"
    return data


class Scenario:
    """A fitted state, the old test matrix, and the test side after the deletions."""

    def __init__(self, sparse: bool, forget: bool = True, new_records: bool = True) -> None:
        data = _with_vanishing_category(_data())
        train, test = _run(data)
        self.sparse = sparse
        self.state = TrainingState.fit(train, _encoding(sparse), _target, Ridge(alpha=1.0))
        self.old_test = test
        self.old = encode(self.state.encoding, test)
        assert sp.issparse(self.old.X) == sparse
        frame = self.state.frame
        # forget the training records of category 'd' and those with the largest x
        self.forgotten = frame.loc[
            (frame["cat"] == "d") | (frame["x"] >= frame["x"].quantile(0.9)), "rid"
        ].tolist()
        self.changed: tuple[str, ...] = ()
        if forget:
            update = self.state.forget_rows(np.flatnonzero(frame["rid"].isin(self.forgotten)))
            self.changed = update.reencoded_blocks
        # the test side: some records deleted, some with new values, maybe some new records
        test_rids = _rids(test)
        self.dropped = test_rids[2:4] + test_rids[10:14]
        self.valued = [test_rids[0], *test_rids[5:8], test_rids[-1]]
        new = data[~data["rid"].isin(self.dropped)].copy()
        hit = new["rid"].isin(self.valued)
        new.loc[hit, "x"] = new.loc[hit, "x"] + 10.0
        new.loc[new["rid"] == self.valued[1], "x"] = np.nan  # a forgotten value
        new.loc[hit, "cat"] = "b"
        new.loc[hit, "text"] = "thanks thanks"
        new.loc[hit, "n"] = 99
        if new_records:
            extra = _data(seed=8).assign(rid=lambda d: d["rid"] + 10 * N)
            new = pd.concat([new, extra], ignore_index=True)
        self.data = new
        self.train_rids = [r for r in _rids(train) if r not in self.forgotten]
        _, self.test = _run(new)

    def source_rows(self) -> np.ndarray:
        """Where each new test row was in the old matrix; -1 for changed or new rows, computed
        from the records (rid) without the helpers of the module under test."""
        old_position = {rid: i for i, rid in enumerate(_rids(self.old_test))}
        return np.array(
            [-1 if rid in self.valued else old_position.get(rid, -1) for rid in _rids(self.test)],
            dtype=np.intp,
        )

    def reencode(self, rows: np.ndarray | None = None) -> FeatureMatrix:
        return self.state.reencode_matrix(
            self.old,
            self.source_rows() if rows is None else rows,
            self.test.to_pandas(),
            self.test.prov,
            self.changed,
        )

    def from_scratch(self) -> FeatureMatrix:
        return encode(self.state.encoding, self.test)

    def recompute(self) -> Any:
        """X_test of a full recompute: the encoding refitted on the remaining training rows."""
        train = self.data[self.data["rid"].isin(self.train_rids)]
        return clone(_encoding(self.sparse)).fit(train).transform(self.test.to_pandas())


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_reencode_matrix_equals_encoding_the_new_test_rows(sparse: bool) -> None:
    s = Scenario(sparse)
    assert set(s.changed) == {"x", "cat"}  # the scaler moved and category 'd' vanished
    assert s.from_scratch().block("cat").width == s.old.block("cat").width - 1
    rows = s.source_rows()
    assert (rows >= 0).sum() > 0 and (rows < 0).sum() > len(s.valued)  # kept, changed and new
    got = s.reencode(rows)
    _assert_same(got, s.from_scratch())
    assert _max_abs_diff(got.X, s.recompute()) < 1e-12
    assert np.array_equal(got.prov.keys["records"], s.test.prov.keys["records"])
    assert got.resolve is s.old.resolve


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_source_rows_from_row_identity(sparse: bool) -> None:
    """The orchestration's way to compute the source rows gives the same matrix."""
    s = Scenario(sparse)
    rows = positions_in(row_identity(s.old.prov), row_identity(s.test.prov))
    valued_ids = s.test.lineage.key_ids("records", s.valued)
    rows[rows_mentioning(s.test.prov, {"records": valued_ids})] = -1
    assert rows.tolist() == s.source_rows().tolist()
    _assert_same(s.reencode(rows), s.from_scratch())


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_without_a_training_change_only_the_changed_rows_are_encoded(sparse: bool) -> None:
    s = Scenario(sparse, forget=False)
    assert s.changed == ()
    _assert_same(s.reencode(), s.from_scratch())


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_a_changed_row_is_not_taken_from_the_old_matrix(sparse: bool) -> None:
    """Guard: claiming a changed row is unchanged gives its old encoding, which differs."""
    s = Scenario(sparse, forget=False, new_records=False)
    rows = s.source_rows()
    old_position = {rid: i for i, rid in enumerate(_rids(s.old_test))}
    stale = rows.copy()
    for i, rid in enumerate(_rids(s.test)):
        if rid in s.valued:
            stale[i] = old_position[rid]
    difference = np.abs(_dense(s.reencode(stale).X) - _dense(s.from_scratch().X))
    assert np.nanmax(difference) > 1.0


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_rows_in_another_order(sparse: bool) -> None:
    s = Scenario(sparse)
    perm = np.random.default_rng(0).permutation(len(s.test))
    frame = s.test.to_pandas().iloc[perm].reset_index(drop=True)
    prov = s.test.prov.take(perm)
    got = s.state.reencode_matrix(s.old, s.source_rows()[perm], frame, prov, s.changed)
    assert _max_abs_diff(got.X, _dense(s.from_scratch().X)[perm]) < 1e-12
    assert np.array_equal(got.prov.keys["records"], s.test.prov.keys["records"][perm])


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("forget", [True, False], ids=["forget", "keep"])
def test_all_rows_kept_or_all_rows_new(sparse: bool, forget: bool) -> None:
    s = Scenario(sparse, forget=forget)
    n_old = len(s.old_test)
    # every row kept, in place: only the changed blocks are encoded again
    same = s.state.reencode_matrix(
        s.old, np.arange(n_old), s.old_test.to_pandas(), s.old_test.prov, s.changed
    )
    _assert_same(same, encode(s.state.encoding, s.old_test))
    if not forget:
        assert _max_abs_diff(same.X, s.old.X) == 0.0
    # every row new
    fresh = s.reencode(np.full(len(s.test), -1, dtype=np.intp))
    _assert_same(fresh, s.from_scratch())


def test_mismatched_lengths_are_refused() -> None:
    s = Scenario(sparse=True, forget=False, new_records=False)
    rows, frame, prov = s.source_rows(), s.test.to_pandas(), s.test.prov
    with pytest.raises(PlanError, match="one source row and one provenance row per result row"):
        s.state.reencode_matrix(s.old, rows[:-1], frame, prov, ())
    with pytest.raises(PlanError, match="provenance rows"):
        s.state.reencode_matrix(s.old, rows, frame, prov.take(np.arange(prov.n - 1)), ())
    with pytest.raises(PlanError):
        s.state.reencode_matrix(s.old, rows[:-1], frame.iloc[:-1], prov, ())


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_a_frame_of_only_the_new_rows_is_enough_without_changed_blocks(sparse: bool) -> None:
    s = Scenario(sparse, forget=False)
    rows = s.source_rows()
    fresh = s.test.to_pandas().iloc[np.flatnonzero(rows < 0)].reset_index(drop=True)
    assert 0 < len(fresh) < len(rows)
    got = s.state.reencode_matrix(s.old, rows, fresh, s.test.prov, ())
    _assert_same(got, s.from_scratch())


def test_a_frame_of_only_the_new_rows_is_refused_when_blocks_changed() -> None:
    s = Scenario(True, forget=True)
    assert s.changed
    rows = s.source_rows()
    fresh = s.test.to_pandas().iloc[np.flatnonzero(rows < 0)].reset_index(drop=True)
    with pytest.raises(PlanError, match="must be re-encoded for every row"):
        s.state.reencode_matrix(s.old, rows, fresh, s.test.prov, s.changed)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_a_moved_scaler_maps_the_kept_rows_affinely(sparse: bool) -> None:
    """Forgetting rows that only move the scaler: the update records the scaler's affine map,
    and X_test's kept rows go through it, without their data, as encoding would give."""
    s = Scenario(sparse, forget=False)
    frame = s.state.frame
    # the training rows with the largest x: the scaler moves, no category vanishes
    rows = np.flatnonzero(frame["x"] >= frame["x"].quantile(0.9))
    assert frame["cat"].iloc[rows].nunique() < frame["cat"].nunique()
    update = s.state.forget_rows(rows)
    assert "x" in update.reencoded_blocks and set(update.affine) == {"x"}
    ratio, shift = update.affine["x"]
    assert not np.allclose(ratio, 1.0) or not np.allclose(shift, 0.0)
    kept = s.source_rows()
    fresh = s.test.to_pandas().iloc[np.flatnonzero(kept < 0)].reset_index(drop=True)
    changed = [b for b in update.reencoded_blocks if b != "x"]
    got = s.state.reencode_matrix(
        s.old, kept, fresh if not changed else s.test.to_pandas(), s.test.prov,
        update.reencoded_blocks, update.affine,
    )  # fmt: skip
    _assert_same(got, s.from_scratch())
    # without the map the old values would be kept: the scaled column would be stale
    stale = s.state.reencode_matrix(
        s.old, kept, s.test.to_pandas(), s.test.prov, [b for b in changed], {}
    )
    assert _max_abs_diff(stale.X, s.from_scratch().X) > 1e-3


@pytest.mark.parametrize("subset", [False, True], ids=["every-row", "some-rows-left"])
def test_kept_rows_through_the_scaler_map_equal_encoding_them(subset: bool) -> None:
    """A training deletion that only moves the scaler, and a test side whose rows stay (or
    some leave) with their values: the kept rows' scaled columns are mapped in place of a
    copy of X block by block; the result equals encoding those rows, and the old X_test is
    not changed."""
    s = Scenario(sparse=True, forget=False)
    frame = s.state.frame
    update = s.state.forget_rows(np.flatnonzero(frame["x"] >= frame["x"].quantile(0.9)))
    assert set(update.reencoded_blocks) == {"x"} and set(update.affine) == {"x"}
    old_values = s.old.X.toarray()
    n = s.old.shape[0]
    rows = np.delete(np.arange(n), [1, 5, n - 1]) if subset else np.arange(n)
    prov = s.old.prov.take(rows)
    got = s.state.reencode_matrix(
        s.old, rows, pd.DataFrame(), prov, update.reencoded_blocks, update.affine
    )
    old_rows = s.old_test.to_pandas().iloc[rows].reset_index(drop=True)
    expected = s.state.encoding.transform(old_rows)
    assert got.shape == expected.shape and got.prov.n == len(rows)
    np.testing.assert_allclose(_dense(got.X), _dense(expected), rtol=1e-12, atol=1e-12)
    assert [b.name for b in got.blocks] == [b.name for b in s.state.features.blocks]
    np.testing.assert_array_equal(s.old.X.toarray(), old_values)
