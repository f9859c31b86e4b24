"""Exact trackers for numeric encoders: scalers, imputers, quantile/uniform binning.

* StandardScaler: per column count, exact sum and sum of squares (:class:`ExactMoments`);
  ``mean_``, ``var_``, ``scale_`` and ``n_samples_seen_`` are recomputed as ``partial_fit`` would
  set them (NaN ignored, per-column counts, constant features get scale 1).
* MinMaxScaler / MaxAbsScaler: per column order statistics (:class:`NumericTally`); the new
  state is scikit-learn's own fit on a two-row frame holding each column's new min and max
  (that is all these fits read), with ``n_samples_seen_`` set to the row count.
* KBinsDiscretizer (``quantile`` / ``uniform``, no subsampling): per column order statistics;
  the new state is scikit-learn's own fit on the columns' sorted values (quantiles do not depend
  on row order), O(n) per update, no access to the remaining rows needed.
* SimpleImputer: non-missing counts per column, plus exact sums (``mean``), order statistics
  (``median``) or value counts (``most_frequent``, ties to the smallest value as scikit-learn);
  ``constant`` only needs the counts (an all-missing column is dropped unless
  ``keep_empty_features``). ``add_indicator``'s ``features_`` follow the missing counts.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils.validation import FLOAT_DTYPES, check_array

from lester_dagster.errors import DecrementalError
from lester_dagster.features.decremental_base import (
    Decremental,
    ExactTracker,
    RefitTracker,
    fitted_attributes,
    n_rows_of,
    refit_failed,
)
from lester_dagster.features.stats import ExactMoments, NumericTally, Tally, tally_of

__all__ = [
    "ExtremesTracker",
    "KBinsTracker",
    "SimpleImputerTracker",
    "StandardScalerTracker",
    "track_kbins",
    "track_scaler",
    "track_simple_imputer",
]

Array = npt.NDArray[Any]


def _floats(data: Any) -> Array:
    """The data as scikit-learn's scalers read it (float array, NaN allowed)."""
    out: Array = check_array(data, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
    return out


def _frame_like(template: Any, columns: list[Array]) -> Any:
    """Columns as a DataFrame with the template's labels (or a 2-d array if it was not a frame)."""
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(dict(enumerate(columns))).set_axis(template.columns, axis=1)
    return np.column_stack(columns)


def _fit_on(transformer: Any, data: Any) -> dict[str, Any]:
    """The fitted attributes of a clone of ``transformer`` fitted on ``data``."""
    try:
        fresh = clone(transformer).fit(data)
    except ValueError as err:
        raise refit_failed(transformer, err) from err
    return fitted_attributes(fresh)


class StandardScalerTracker(ExactTracker):
    """StandardScaler: exact per-column count, sum and sum of squares."""

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        self._moments = ExactMoments.of(_floats(X))
        super().__init__(transformer, n_rows_of(X), name=name)

    def _apply(self, data: Any, sign: int) -> None:
        self._moments.update(ExactMoments.of(_floats(data)), sign)

    def _state(self, n_after: int) -> dict[str, Any]:
        t = self.transformer
        count = np.array(self._moments.count, dtype=np.int64)
        mean: Array | None = None
        var: Array | None = None
        scale: Array | None = None
        if not t.with_mean and not t.with_std:
            seen: Any = count
        else:
            seen = count.astype(np.float64)
            mean = self._moments.mean()
            var = self._moments.var() if t.with_std else None
        if seen.max() == seen.min():
            seen = seen[0]
        if var is not None and mean is not None:
            eps = np.finfo(np.float64).eps
            constant = var <= seen * eps * var + (seen * mean * eps) ** 2
            scale = np.sqrt(var)
            scale[constant] = 1.0
        return {"n_samples_seen_": seen, "mean_": mean, "var_": var, "scale_": scale}


class ExtremesTracker(ExactTracker):
    """MinMaxScaler / MaxAbsScaler: per-column order statistics; a refit reads min and max only."""

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        self._template = X.iloc[:0] if isinstance(X, pd.DataFrame) else None
        values = _floats(X)
        self._tallies = [NumericTally.of(values[:, j]) for j in range(values.shape[1])]
        super().__init__(transformer, n_rows_of(X), name=name)

    def _apply(self, data: Any, sign: int) -> None:
        values = _floats(data)
        for j, tally in enumerate(self._tallies):
            tally.check_update(values[:, j], sign)
        for j, tally in enumerate(self._tallies):
            tally.update(values[:, j], sign)

    def _state(self, n_after: int) -> dict[str, Any]:
        columns = [np.array(t.minmax(), dtype=t.values.dtype) for t in self._tallies]
        state = _fit_on(self.transformer, _frame_like(self._template, columns))
        state["n_samples_seen_"] = n_after
        return state


class KBinsTracker(ExactTracker):
    """KBinsDiscretizer (quantile/uniform): per-column order statistics, refit on sorted columns."""

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        self._template = X.iloc[:0] if isinstance(X, pd.DataFrame) else None
        values = self._numbers(X)
        self._tallies = [NumericTally.of(values[:, j]) for j in range(values.shape[1])]
        super().__init__(transformer, n_rows_of(X), name=name)

    @staticmethod
    def _numbers(data: Any) -> Array:
        out: Array = check_array(data, dtype="numeric")
        return out

    def _apply(self, data: Any, sign: int) -> None:
        values = self._numbers(data)
        for j, tally in enumerate(self._tallies):
            tally.check_update(values[:, j], sign)
        for j, tally in enumerate(self._tallies):
            tally.update(values[:, j], sign)

    def _state(self, n_after: int) -> dict[str, Any]:
        if self.transformer.strategy == "uniform":
            columns = [np.array(t.minmax(), dtype=t.values.dtype) for t in self._tallies]
        else:
            columns = [t.expand() for t in self._tallies]
        return _fit_on(self.transformer, _frame_like(self._template, columns))


def _is_nan(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isnan(value)


def _missing(X: Array, missing_values: Any) -> npt.NDArray[np.bool_]:
    """scikit-learn's missing mask (``utils._mask._get_dense_mask``)."""
    if missing_values is pd.NA:
        return np.asarray(pd.isna(X), dtype=bool)
    if _is_nan(missing_values):
        if X.dtype.kind == "f":
            return np.isnan(X)
        if X.dtype.kind in "iu":
            return np.zeros(X.shape, dtype=bool)
        return np.asarray(X != X, dtype=bool)
    return np.asarray(missing_values == X, dtype=bool)


class SimpleImputerTracker(ExactTracker):
    """SimpleImputer (mean/median/most_frequent/constant): counts, sums or tallies per column."""

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        self._strategy = transformer.strategy
        values = self._values(transformer, X)
        self._dtype = values.dtype
        missing = _missing(values, transformer.missing_values)
        self._present = (~missing).sum(axis=0).astype(np.int64)
        self._moments: ExactMoments | None = None
        self._tallies: list[Tally] = []
        if self._strategy == "mean":
            self._moments = ExactMoments.of(np.where(missing, np.nan, values))
        elif self._strategy in ("median", "most_frequent"):
            self._tallies = [tally_of(values[~missing[:, j], j]) for j in range(values.shape[1])]
        super().__init__(transformer, n_rows_of(X), name=name)

    @staticmethod
    def _values(transformer: Any, data: Any) -> Array:
        numeric = transformer.strategy in ("mean", "median")
        nan_like = transformer.missing_values is pd.NA or _is_nan(transformer.missing_values)
        out: Array = check_array(
            data,
            dtype=FLOAT_DTYPES if numeric else None,
            ensure_all_finite="allow-nan" if nan_like else True,
        )
        return out

    def _apply(self, data: Any, sign: int) -> None:
        values = self._values(self.transformer, data)
        missing = _missing(values, self.transformer.missing_values)
        present = self._present + sign * (~missing).sum(axis=0)
        if (present < 0).any():
            raise DecrementalError(
                "more non-missing values removed than were fitted; remove only rows the "
                "imputer was fitted on, with their values as fitted"
            )
        moments = None
        if self._moments is not None:
            moments = ExactMoments.of(np.where(missing, np.nan, values))
        columns = [values[~missing[:, j], j] for j in range(values.shape[1])]
        for tally, column in zip(self._tallies, columns, strict=False):
            tally.check_update(column, sign)
        # validated: mutate
        if moments is not None and self._moments is not None:
            self._moments.update(moments, sign)
        for tally, column in zip(self._tallies, columns, strict=False):
            tally.update(column, sign)
        self._present = present
        if sign > 0 and values.dtype != self._dtype:
            self._dtype = np.result_type(self._dtype, values.dtype)

    def _statistics(self) -> Array:
        t = self.transformer
        empty = self._present == 0
        fill_empty = 0 if t.keep_empty_features else np.nan
        if self._strategy == "mean" and self._moments is not None:
            stats = self._moments.mean().astype(self._dtype)
            stats[empty] = fill_empty
            return stats
        if self._strategy == "median":
            out = np.empty(len(self._tallies), dtype=self._dtype)
            for j, tally in enumerate(self._tallies):
                if empty[j]:
                    out[j] = fill_empty
                    continue
                assert isinstance(tally, NumericTally)
                n = tally.n_finite()
                lo, hi = tally.kth((n - 1) // 2, n // 2)
                out[j] = (np.float64(lo) + np.float64(hi)) / 2.0
            return out
        if self._strategy == "most_frequent":
            out = np.empty(len(self._tallies), dtype=object if self._dtype.kind == "O" else float)
            for j, tally in enumerate(self._tallies):
                out[j] = fill_empty if empty[j] else tally.mode()
            return out
        fill = t.fill_value
        if fill is None:
            fill = 0 if self._dtype.kind in "iuf" else "missing_value"
        stats = np.full(len(self._present), fill, dtype=object)
        if not t.keep_empty_features:
            stats[empty] = np.nan
        return stats

    def _state(self, n_after: int) -> dict[str, Any]:
        state: dict[str, Any] = {
            "statistics_": self._statistics(),
            "_fit_dtype": self._dtype,
            "_fill_dtype": self._dtype,
        }
        if self.transformer.add_indicator:
            features = self.transformer.indicator_.features
            if features == "missing-only":
                state["indicator_.features_"] = np.flatnonzero(n_after - self._present)
        return state

    def _commit(self, state: dict[str, Any]) -> list[str]:
        changed = []
        indicator = state.pop("indicator_.features_", None)
        if indicator is not None and not np.array_equal(
            self.transformer.indicator_.features_, indicator
        ):
            self.transformer.indicator_.features_ = indicator
            changed.append("indicator_.features_")
        return super()._commit(state) + changed


def _sparse(X: Any) -> bool:
    return bool(sp.issparse(X))


def track_scaler(transformer: Any, X: Any, name: str | None) -> Decremental:
    """StandardScaler, MinMaxScaler, MaxAbsScaler (dense input)."""
    if _sparse(X):
        return RefitTracker(transformer, n_rows_of(X), name=name, reason="sparse input")
    if type(transformer).__name__ == "StandardScaler":
        return StandardScalerTracker(transformer, X, name)
    return ExtremesTracker(transformer, X, name)


def track_kbins(transformer: Any, X: Any, name: str | None) -> Decremental:
    """KBinsDiscretizer: exact for quantile/uniform without subsampling, else refit."""
    n = n_rows_of(X)
    if transformer.strategy not in ("quantile", "uniform"):
        reason = f"strategy={transformer.strategy!r} (k-means bins have no exact update)"
        return RefitTracker(transformer, n, name=name, reason=reason)
    if transformer.subsample is not None and n > transformer.subsample:
        reason = f"fitted on a random subsample ({n} rows > subsample={transformer.subsample})"
        return RefitTracker(transformer, n, name=name, reason=reason)
    return KBinsTracker(transformer, X, name)


def track_simple_imputer(transformer: Any, X: Any, name: str | None) -> Decremental:
    """SimpleImputer: exact for mean/median/most_frequent/constant on dense input."""
    n = n_rows_of(X)
    if _sparse(X):
        return RefitTracker(transformer, n, name=name, reason="sparse input")
    if transformer.strategy not in ("mean", "median", "most_frequent", "constant"):
        return RefitTracker(transformer, n, name=name, reason="custom (callable) strategy")
    return SimpleImputerTracker(transformer, X, name)
