"""Decremental encoders: keep fitted scikit-learn transformers equal to a refit after deletions.

Users declare feature encoding as an ordinary ColumnTransformer. After fitting, call
:func:`track` once per fitted transformer (``ct.transformers_``) with exactly the data it was
fitted on; the returned :class:`Decremental` keeps sufficient statistics and, on
:meth:`~Decremental.forget` (rows removed) or :meth:`~Decremental.replace` (some rows' values
changed, e.g. a forgotten value became missing), updates the fitted object **in place** so that
it equals a fresh fit on the current rows, and returns an
:class:`~lester_dagster.features.record.UpdateRecord`::

    ct.fit(train)
    trackers = {name: track(t, train[cols], name=name) for name, t, cols in ct.transformers_}
    record = trackers["country"].forget(train.loc[gone, ["country"]],
                                        remaining=lambda: train.loc[kept, ["country"]])
    if record.changed:  # re-transform that block for the remaining rows
        ...             # (record.detail["dropped_columns"/"added_columns"] if its width changed)

Strategies (``tracker.strategy`` is declared up front; each record says what one update did):

=============================================  =========  ====================================
transformer (exact type, not subclasses)       strategy   sufficient statistics (per column)
=============================================  =========  ====================================
StandardScaler (dense)                         exact      count, exact sum and sum of squares
MinMaxScaler, MaxAbsScaler (dense)             exact      sorted distinct values with counts
KBinsDiscretizer quantile/uniform, n <=        exact      sorted distinct values with counts
subsample (quantile: O(n) per update)
SimpleImputer mean / median / most_frequent /  exact      non-missing counts + exact sums /
constant (dense), add_indicator                           sorted values / value counts
OneHotEncoder, OrdinalEncoder (auto            exact      count of every distinct value
categories, no min_frequency/max_categories)
CountVectorizer, TfidfVectorizer               exact      df and term count of every term
                                                          ever seen, number of documents
TfidfTransformer                               exact      df per column, number of rows
HashingVectorizer, FunctionTransformer,        stateless  none
'drop', 'passthrough', explicit categories,
fixed vocabulary without idf
Pipeline                                       see below  one tracker per step
anything else; sparse input to scalers and     refit      none: ``remaining()`` is refitted
imputers; KBins kmeans or subsampled;
infrequent categories; callable imputer
strategy; vectorizers reading files
=============================================  =========  ====================================

Pipelines: the removed rows are passed through the steps (with their current state) and each
step's tracker updates it. A step whose state changes alters the input of every later step for
all remaining rows, so later *stateful* steps are then refitted on ``remaining()`` (recorded as
``refit`` with ``detail["refitted_steps"]``). A chain with at most one stateful step is
therefore declared ``exact``; a chain with several is declared ``refit`` (many of its updates
are still exact, e.g. while an imputer's statistics or an encoder's categories do not change).

Errors (:class:`~lester_dagster.errors.DecrementalError`, a ``ValueError``) leave the
transformer and its statistics as they were: removing every row, rows or values that were never
fitted, missing text, or a state that a refit would reject (e.g. a ``drop=[value]`` whose value
vanishes, a vocabulary pruned to nothing).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import (
    CountVectorizer,
    HashingVectorizer,
    TfidfTransformer,
    TfidfVectorizer,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

from lester_dagster.errors import DecrementalError
from lester_dagster.features.decremental_base import (
    Decremental,
    Outcome,
    RefitTracker,
    Remaining,
    StatelessTracker,
    call_remaining,
    n_rows_of,
    refit_failed,
    swap_in,
)
from lester_dagster.features.decremental_categorical import track_encoder
from lester_dagster.features.decremental_numeric import (
    track_kbins,
    track_scaler,
    track_simple_imputer,
)
from lester_dagster.features.decremental_text import track_tfidf_transformer, track_vectorizer
from lester_dagster.features.record import Strategy, UpdateRecord

__all__ = ["Decremental", "PipelineTracker", "track"]

Builder = Callable[[Any, Any, str | None], Decremental]


def _stateless(transformer: Any, X: Any, name: str | None) -> Decremental:
    return StatelessTracker(transformer, n_rows_of(X), name=name, reason="nothing is fitted")


def track(transformer: Any, X_fit: Any, *, name: str | None = None) -> Decremental:
    """A tracker for an already fitted transformer and exactly the data it was fitted on.

    ``X_fit`` is laid out as the ColumnTransformer passes it: a DataFrame of the input columns,
    or a 1-d Series for text vectorizers. Types (or configurations) without an exact update get
    an explicit ``refit`` tracker, never an error; the strings ``'drop'`` and ``'passthrough'``
    get a stateless one. ``name`` names the component in records (default: the class name).
    """
    n = n_rows_of(X_fit)
    if transformer is None or isinstance(transformer, str):
        if transformer not in (None, "drop", "passthrough"):
            raise DecrementalError(
                f"unknown transformer string {transformer!r}; expected a fitted transformer, "
                "'drop' or 'passthrough' (as in ColumnTransformer.transformers_)"
            )
        return StatelessTracker(transformer, n, name=name or str(transformer), reason="no-op")
    if not hasattr(transformer, "fit"):
        raise DecrementalError(
            f"{type(transformer).__name__} has no fit(); pass a scikit-learn transformer"
        )
    try:
        check_is_fitted(transformer)
    except NotFittedError:
        raise DecrementalError(
            f"{type(transformer).__name__} is not fitted; fit the ColumnTransformer first and "
            "pass the fitted objects from ct.transformers_"
        ) from None
    expected = getattr(transformer, "n_features_in_", None)
    width = getattr(X_fit, "shape", (n, None))[1] if getattr(X_fit, "ndim", 1) == 2 else None
    if expected is not None and width is not None and width != expected:
        raise DecrementalError(
            f"{type(transformer).__name__} was fitted on {expected} columns but X_fit has "
            f"{width}; pass exactly the data it was fitted on (its input columns)"
        )
    if n == 0:
        raise DecrementalError("X_fit has no rows; pass the data the transformer was fitted on")
    builder = _BUILDERS.get(type(transformer))
    if builder is None:
        reason = f"no decremental update for {type(transformer).__name__}"
        return RefitTracker(transformer, n, name=name, reason=reason)
    try:
        return builder(transformer, X_fit, name)
    except (DecrementalError, ValueError, TypeError) as err:  # data the statistics cannot hold
        reason = f"statistics cannot be kept for this data ({err})"
        return RefitTracker(transformer, n, name=name, reason=reason)


def _transform(step: Any, data: Any) -> Any:
    if step is None or isinstance(step, str):
        return data
    return step.transform(data)


class PipelineTracker(Decremental):
    """A Pipeline of transformers: one tracker per step (see the module docstring)."""

    def __init__(self, pipeline: Any, X: Any, name: str | None = None) -> None:
        base = name or type(pipeline).__name__
        self._steps: list[Decremental] = []
        data = X
        for i, (step_name, step) in enumerate(pipeline.steps):
            self._steps.append(track(step, data, name=f"{base}/{step_name}"))
            if i < len(pipeline.steps) - 1:
                data = _transform(step, data)
        declared = [s.strategy for s in self._steps]
        stateful = sum(s != "stateless" for s in declared)
        reason = ""
        if "refit" in declared:
            strategy: Strategy = "refit"
            reason = "a step is refitted: " + ", ".join(
                s.name for s in self._steps if s.strategy == "refit"
            )
        elif stateful == 0:
            strategy = "stateless"
        elif stateful == 1:
            strategy = "exact"
        else:
            strategy = "refit"
            reason = "several stateful steps: when one changes, later stateful steps are refitted"
        self.strategy = strategy
        super().__init__(pipeline, n_rows_of(X), name=base, reason=reason)

    @property
    def steps(self) -> list[Decremental]:
        """The step trackers (replaced when a step is refitted)."""
        return list(self._steps)

    def _through(self, remaining: Remaining | None, upto: int, n_after: int) -> Any:
        data = call_remaining(self.name, remaining, n_after, self.reason or "pipeline step")
        for _, step in self.transformer.steps[:upto]:
            data = _transform(step, data)
        return data

    def _update(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        # With several stateful steps a later step can fail after an earlier one was updated:
        # keep a copy to restore (one stateful step updates atomically on its own).
        stateful = sum(s.strategy != "stateless" for s in self._steps)
        snapshot = copy.deepcopy((self.transformer, self._steps)) if stateful > 1 else None
        try:
            return self._update_steps(removed, added, n_after, remaining)
        except Exception:
            if snapshot is not None:
                pipeline, steps = snapshot
                vars(self.transformer).clear()
                vars(self.transformer).update(vars(pipeline))
                self._steps = steps
            raise

    def _update_steps(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        steps = self.transformer.steps
        records: list[UpdateRecord] = []
        refitted: list[str] = []
        old, new = removed, added
        for i, sub in enumerate(self._steps):
            later_stateful = any(s.strategy != "stateless" for s in self._steps[i + 1 :])
            step = steps[i][1]
            if later_stateful:  # the next step's inputs, computed with this step's current state
                next_old = _transform(step, old)
                next_new = None if new is None else _transform(step, new)

            def sub_remaining(i: int = i) -> Any:
                return self._through(remaining, i, n_after)

            if new is None:
                record = sub.forget(old, remaining=sub_remaining)
            else:
                record = sub.replace(old, new, remaining=sub_remaining)
            records.append(record)
            if not later_stateful:
                break
            if record.changed:
                tail = self._refit_tail(i + 1, self._through(remaining, i + 1, n_after))
                records.extend(tail)
                refitted = [r.component for r in tail if r.strategy == "refit"]
                break
            old, new = next_old, next_new
        for sub in self._steps:
            sub.n_rows = n_after
        used = {r.strategy for r in records}
        strategy: Strategy = next(
            (s for s in ("refit", "exact", "stateless") if s in used), "unchanged"
        )
        detail: dict[str, Any] = {"steps": [r.as_metadata() for r in records]}
        if refitted:
            detail["refitted_steps"] = refitted
        return Outcome(strategy, any(r.changed for r in records), detail)

    def _refit_tail(self, start: int, data: Any) -> list[UpdateRecord]:
        """Refit steps ``start..`` on ``data`` (the remaining rows entering step ``start``)."""
        steps = self.transformer.steps
        fitted: list[tuple[int, Any, Any, list[str]]] = []
        for j in range(start, len(steps)):
            step = steps[j][1]
            if step is None or isinstance(step, str):
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fresh = clone(step)
                inputs = data
                try:
                    if j < len(steps) - 1:
                        data = fresh.fit_transform(data)
                    else:
                        fresh.fit(data)
                except ValueError as err:
                    raise refit_failed(step, err) from err
            fitted.append((j, fresh, inputs, [str(w.message) for w in caught]))
        records = []
        for j, fresh, inputs, messages in fitted:
            step = steps[j][1]
            changed = swap_in(step, fresh)
            sub_name = self._steps[j].name
            self._steps[j] = track(step, inputs, name=sub_name)
            detail: dict[str, Any] = {
                "changed_attributes": changed,
                "reason": "an earlier step's state changed",
            }
            if messages:
                detail["warnings"] = messages
            records.append(UpdateRecord(sub_name, "refit", 0.0, 0, bool(changed), detail=detail))
        return records


def _track_pipeline(transformer: Any, X: Any, name: str | None) -> Decremental:
    return PipelineTracker(transformer, X, name)


_BUILDERS: dict[type, Builder] = {
    StandardScaler: track_scaler,
    MinMaxScaler: track_scaler,
    MaxAbsScaler: track_scaler,
    KBinsDiscretizer: track_kbins,
    SimpleImputer: track_simple_imputer,
    OneHotEncoder: track_encoder,
    OrdinalEncoder: track_encoder,
    CountVectorizer: track_vectorizer,
    TfidfVectorizer: track_vectorizer,
    TfidfTransformer: track_tfidf_transformer,
    HashingVectorizer: _stateless,
    FunctionTransformer: _stateless,
    Pipeline: _track_pipeline,
}
