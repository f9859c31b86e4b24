"""Exact trackers for OneHotEncoder and OrdinalEncoder (``categories='auto'``).

Sufficient statistics: per input column, the count of every distinct value (a
:class:`~lester_dagster.features.stats.Tally`). Without ``min_frequency`` / ``max_categories``
a fit depends only on *which* values occur, so:

* while no value's count reaches 0 (and, for ``replace``, no new value appears), nothing
  fitted changes (``changed`` is False);
* when a category's last row is removed, a refit would not know it: the new state is
  scikit-learn's own fit on a tiny frame holding each column's distinct remaining values (one
  row per value), so ``categories_``, ``drop_idx_`` (``drop='first'`` / ``'if_binary'`` move
  with the categories) and every private attribute equal a refit's. For OneHotEncoder this
  **removes that category's output column** (the block gets narrower; a value that appears
  through ``replace``, e.g. NaN, adds one): the record lists ``dropped_columns`` /
  ``added_columns``. For OrdinalEncoder the codes of later categories shift down by one.

Configurations that depend on counts (``min_frequency``, ``max_categories``: infrequent
categories) are declared ``refit``. Explicit ``categories=[...]`` make the fit independent of
the rows: ``stateless``. A ``drop=[values]`` list whose value disappears makes a refit fail, so
``forget`` raises :class:`DecrementalError` (nothing changed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import clone
from sklearn.utils.validation import check_array

from lester_dagster.errors import DecrementalError
from lester_dagster.features.decremental_base import (
    Decremental,
    ExactTracker,
    RefitTracker,
    StatelessTracker,
    fitted_attributes,
    n_rows_of,
    refit_failed,
)
from lester_dagster.features.stats import Tally, tally_of

__all__ = ["CategoryTracker", "track_encoder"]

Array = npt.NDArray[Any]


def _columns(data: Any) -> list[Array]:
    """The input columns as the encoders read them (``_BaseEncoder._check_X``)."""
    if isinstance(data, pd.DataFrame):
        return [
            check_array(data.iloc[:, j], ensure_2d=False, dtype=None, ensure_all_finite=False)
            for j in range(data.shape[1])
        ]
    values = check_array(data, dtype=None, ensure_all_finite=False)
    if not hasattr(data, "dtype") and np.issubdtype(values.dtype, np.str_):
        values = check_array(data, dtype=object, ensure_all_finite=False)
    return [values[:, j] for j in range(values.shape[1])]


class CategoryTracker(ExactTracker):
    """OneHotEncoder / OrdinalEncoder with ``categories='auto'`` and no infrequent grouping."""

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        if isinstance(X, pd.DataFrame):
            self._template: Any = X.iloc[:0]
        else:
            self._template = None
        self._tallies: list[Tally] = [tally_of(c) for c in _columns(X)]
        self._dirty = False
        super().__init__(transformer, n_rows_of(X), name=name)

    def _apply(self, data: Any, sign: int) -> None:
        columns = _columns(data)
        for tally, column in zip(self._tallies, columns, strict=True):
            tally.check_update(column, sign)
        for j, (tally, column) in enumerate(zip(self._tallies, columns, strict=True)):
            self._dirty |= tally.update(column, sign)
            if sign > 0 and self._template is not None:
                self._promote(j, data.iloc[:, j].dtype)

    def _promote(self, j: int, dtype: Any) -> None:
        """A column whose new values need a wider dtype (an int column that gained a NaN)."""
        current = self._template.dtypes.iloc[j]
        if current == dtype:
            return
        try:
            common = np.result_type(current, dtype)
        except TypeError:  # pandas extension dtypes (str, category): keep the frame's dtype
            return
        label = self._template.columns[j]
        self._template = self._template.astype({label: common})

    def _synthetic(self) -> Any:
        """One row per distinct value of each column (shorter columns repeat their first value)."""
        values = [t.present() for t in self._tallies]
        height = max(len(v) for v in values)
        padded = [np.concatenate([v, np.repeat(v[:1], height - len(v))]) for v in values]
        if self._template is None:
            dtype = np.result_type(*[v.dtype for v in padded])
            return np.column_stack([v.astype(dtype) for v in padded])
        frame = {j: pd.Series(v, dtype=self._template.dtypes.iloc[j]) for j, v in enumerate(padded)}
        return pd.DataFrame(frame).set_axis(self._template.columns, axis=1)

    def _state(self, n_after: int) -> dict[str, Any]:
        if not self._dirty:
            return {}
        try:
            fresh = clone(self.transformer).fit(self._synthetic())
        except ValueError as err:
            raise refit_failed(self.transformer, err) from err
        self._dirty = False
        return fitted_attributes(fresh)

    def _update(self, removed: Any, added: Any, n_after: int, remaining: Any) -> Any:
        dirty = self._dirty
        try:
            return super()._update(removed, added, n_after, remaining)
        except Exception:
            self._dirty = dirty
            raise


def track_encoder(transformer: Any, X: Any, name: str | None) -> Decremental:
    """OneHotEncoder / OrdinalEncoder: exact, stateless (explicit categories) or refit."""
    n = n_rows_of(X)
    if transformer.min_frequency is not None or transformer.max_categories is not None:
        reason = "infrequent categories (min_frequency/max_categories) depend on counts"
        return RefitTracker(transformer, n, name=name, reason=reason)
    if not (isinstance(transformer.categories, str) and transformer.categories == "auto"):
        return StatelessTracker(transformer, n, name=name, reason="explicit categories")
    try:
        return CategoryTracker(transformer, X, name)
    except DecrementalError as err:  # a dtype that cannot be tallied
        return RefitTracker(transformer, n, name=name, reason=str(err))
