"""Sufficient statistics: exact moment sums and value tallies."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lester_dagster.errors import DecrementalError
from lester_dagster.features.stats import NAN_KEY, ExactMoments, NumericTally, ObjectTally, tally_of

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150)
column = st.lists(
    st.one_of(finite, st.just(math.nan), st.sampled_from([0.0, -0.0, 5e-324])), max_size=40
)


def _exact(values: list[float]) -> tuple[float, float]:
    xs = [Fraction(v) for v in values if not math.isnan(v)]
    mean = sum(xs, Fraction(0)) / len(xs)
    return float(mean), float(sum(((x - mean) ** 2 for x in xs), Fraction(0)) / len(xs))


@settings(max_examples=150, deadline=None)
@given(column, column)
def test_moments_are_correctly_rounded_and_removal_is_exact(
    kept: list[float], gone: list[float]
) -> None:
    both = ExactMoments.of(np.array([kept + gone]).T if kept + gone else np.zeros((0, 1)))
    if gone:
        both.update(ExactMoments.of(np.array([gone]).T), -1)
    alone = ExactMoments.of(np.array([kept]).T if kept else np.zeros((0, 1)))
    assert (both.count, both.s1, both.s2) == (alone.count, alone.s1, alone.s2)
    if any(not math.isnan(v) for v in kept):
        mean, var = _exact(kept)
        assert alone.mean()[0] == mean
        assert alone.var()[0] == var
    else:
        assert math.isnan(alone.mean()[0]) and math.isnan(alone.var()[0])


def test_moments_refuse_infinity_and_overdrawn_counts() -> None:
    with pytest.raises(DecrementalError, match="infinite"):
        ExactMoments.of(np.array([[np.inf]]))
    m = ExactMoments.of(np.array([[1.0], [2.0]]))
    with pytest.raises(DecrementalError, match="more values removed"):
        m.update(ExactMoments.of(np.array([[1.0], [2.0], [3.0]])), -1)
    assert m.count == [2]


def test_a_huge_variance_overflows_to_inf_like_float_math() -> None:
    m = ExactMoments.of(np.array([[-1e300], [1e300]]))
    assert m.mean()[0] == 0.0 and m.var()[0] == math.inf


def test_numeric_tally_orders_counts_and_promotes() -> None:
    t = NumericTally.of(np.array([3, 1, 3, 2]))
    assert t.values.tolist() == [1, 2, 3] and t.counts.tolist() == [1, 1, 2]
    assert (t.minmax(), t.kth(2, 1), t.mode(), t.total) == ((1, 3), [3, 2], 3, 4)
    assert t.update(np.array([1]), -1) is True  # 1 vanished
    assert t.update(np.array([3]), -1) is False
    assert t.update(np.array([np.nan, 2.5]), 1) is True
    assert t.values.dtype == np.float64 and np.isnan(t.values[-1])
    assert t.expand()[:3].tolist() == [2.0, 2.5, 3.0] and t.n_finite() == 3
    with pytest.raises(DecrementalError, match="never fitted"):
        t.update(np.array([7.0]), -1)
    with pytest.raises(DecrementalError, match="more often"):
        t.update(np.array([2.0, 2.0]), -1)
    assert t.total == 4


def test_object_tally_counts_every_nan_as_one_value_and_breaks_ties_low() -> None:
    values = np.array(["b", float("nan"), "a", np.nan, "b", "a"], dtype=object)
    t = tally_of(values)
    assert isinstance(t, ObjectTally) and t.counts[NAN_KEY] == 2
    assert len(t.present()) == 3 and np.isnan(t.present()[1])
    assert tally_of(np.array(["b", "a", "b", "a", "c"], dtype=object)).mode() == "a"
    assert t.update(np.array([np.nan, np.nan], dtype=object), -1) is True
    assert pickle.loads(pickle.dumps(NAN_KEY)) is NAN_KEY
    with pytest.raises(DecrementalError, match="not fitted"):
        t.update(np.array(["zz"], dtype=object), -1)
