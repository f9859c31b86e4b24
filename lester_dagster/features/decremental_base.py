"""The tracker contract (:class:`Decremental`) and the two generic trackers (stateless, refit).

A tracker wraps one *fitted* scikit-learn transformer (as found in a fitted ColumnTransformer's
``transformers_``) and keeps what it needs to update that object **in place** when rows are
removed (:meth:`Decremental.forget`) or when some rows' input values change
(:meth:`Decremental.replace`, e.g. a forgotten value became missing), so that the object equals
a fresh fit on the current rows. Every update returns an
:class:`~lester_dagster.features.record.UpdateRecord`.

Concrete trackers live in ``decremental_numeric``, ``decremental_categorical``,
``decremental_text``; :func:`lester_dagster.features.decremental.track` picks one.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone

from lester_dagster.errors import DecrementalError
from lester_dagster.features.record import Strategy, UpdateRecord

__all__ = [
    "Decremental",
    "ExactTracker",
    "Outcome",
    "RefitTracker",
    "Remaining",
    "StatelessTracker",
    "adopt",
    "call_remaining",
    "fitted_attributes",
    "n_rows_of",
    "refit_failed",
    "refit_in_place",
    "same_state",
    "swap_in",
]

Remaining = Callable[[], Any]
"""A callable giving the input data of the rows the transformer must be fitted on *after* the
update (same layout as the fitted data); only refitting strategies call it."""


def n_rows_of(data: Any) -> int:
    """Number of rows of a DataFrame, Series, array, sparse matrix or list."""
    if sp.issparse(data) or isinstance(data, np.ndarray | pd.DataFrame | pd.Series):
        return int(data.shape[0])
    return len(data)


def fitted_attributes(estimator: Any) -> dict[str, Any]:
    """An estimator's fitted state: every instance attribute that is not a constructor param."""
    params = set(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else set()
    return {k: v for k, v in vars(estimator).items() if k not in params}


def same_state(a: Any, b: Any) -> bool:
    """Deep equality of fitted state (arrays incl. NaN and object arrays, dicts, estimators)."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind == "O":
            return all(same_state(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if sp.issparse(a) or sp.issparse(b):
        if not (sp.issparse(a) and sp.issparse(b)) or a.shape != b.shape:
            return False
        return bool((a != b).nnz == 0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same_state(x, y) for x, y in zip(a, b, strict=True))
        )
    if hasattr(a, "get_params") and hasattr(b, "get_params"):
        return type(a) is type(b) and same_state(vars(a), vars(b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):
        return False


def adopt(target: Any, state: dict[str, Any]) -> list[str]:
    """Set the fitted attributes ``state`` on ``target``; returns the names that changed."""
    changed = []
    for name, value in state.items():
        if name in vars(target) and same_state(vars(target)[name], value):
            continue
        setattr(target, name, value)
        changed.append(name)
    return changed


def _names_out(transformer: Any) -> list[str] | None:
    """The output column names (unique) of a fitted transformer, or None if unknown."""
    try:
        names = [str(n) for n in transformer.get_feature_names_out()]
    except Exception:  # no names for this transformer (or its configuration)
        return None
    return names if len(set(names)) == len(names) else None


def _layout_detail(before: list[str] | None, after: list[str] | None) -> dict[str, Any]:
    """How the output columns changed: indices dropped (old block), added (new block)."""
    if before is None or after is None:
        return {"layout_changed": None}
    if before == after:
        return {"layout_changed": False}
    old, new = set(before), set(after)
    detail: dict[str, Any] = {
        "layout_changed": True,
        "n_features_out": [len(before), len(after)],
        "dropped_columns": [i for i, name in enumerate(before) if name not in new],
        "added_columns": [i for i, name in enumerate(after) if name not in old],
    }
    if [n for n in before if n in new] != [n for n in after if n in old]:
        detail["columns_reordered"] = True
    return detail


@dataclass
class Outcome:
    """What a tracker's ``_update`` did (turned into an UpdateRecord by the base class)."""

    strategy: Strategy
    changed: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Decremental:
    """Keeps one fitted transformer equal to a fresh fit on the current rows.

    * ``transformer``: the fitted scikit-learn object, updated **in place**;
    * ``strategy``: the declared (guaranteed) strategy: ``exact`` (every update equals a refit up
      to float rounding), ``stateless`` (nothing depends on the rows), or ``refit`` (updates may
      refit the object, explicitly, on ``remaining()``; see ``reason``);
    * ``n_rows``: the number of rows it is currently fitted on.

    Records: ``strategy`` is what the update did (``unchanged`` for no rows); ``changed`` says
    whether the transform of unchanged inputs may differ now (then re-transform the block for
    all remaining rows; bookkeeping such as ``n_samples_seen_`` is updated either way). When the
    output columns change (a category or term appears/disappears), ``detail`` has
    ``dropped_columns`` (indices in the old block), ``added_columns`` (indices in the new block)
    and ``n_features_out`` [before, after]; surviving columns keep their relative order.
    ``detail["layout_changed"]`` is None when the layout cannot be known (no feature names).
    """

    strategy: Strategy = "refit"

    def __init__(
        self, transformer: Any, n_rows: int, *, name: str | None = None, reason: str = ""
    ) -> None:
        self.transformer = transformer
        self.n_rows = n_rows
        self.name = name or type(transformer).__name__
        self.reason = reason
        self._columns = None if self.strategy == "stateless" else self._layout()

    def __repr__(self) -> str:
        kind = type(self.transformer).__name__
        return (
            f"<{type(self).__name__} {self.name!r} ({kind}, {self.strategy}, {self.n_rows} rows)>"
        )

    # -- public API ----------------------------------------------------------------------------
    def forget(self, removed: Any, *, remaining: Remaining | None = None) -> UpdateRecord:
        """Remove rows: ``removed`` is their input data, laid out as the fitted data.

        ``remaining()`` gives the input data of the rows left (only refitting strategies call
        it). Raises :class:`DecrementalError` (changing nothing) when every row would be removed.
        """
        k = n_rows_of(removed)
        if k == 0:
            return self._unchanged(rows_removed=0)
        if k >= self.n_rows:
            raise DecrementalError(
                f"cannot forget {k} rows from {self.name!r}, which is fitted on {self.n_rows}: "
                "a fit needs at least one remaining row; refit the pipeline on new data (or drop "
                "the component) instead"
            )
        self._check_layout(removed)
        start = time.perf_counter()
        outcome = self._update(removed, None, self.n_rows - k, remaining)
        self.n_rows -= k
        return self._record(outcome, start, rows_removed=k)

    def replace(self, old: Any, new: Any, *, remaining: Remaining | None = None) -> UpdateRecord:
        """Rows whose input changed from ``old`` to ``new`` (same rows, same order).

        Value deletion: ``new`` holds the rows as a recompute sees them (the forgotten value
        missing: NaN for numbers, NaN/None for categories, ``""`` for text). ``remaining()``
        gives the input data of all rows after the change (only refitting strategies call it).
        """
        k = n_rows_of(old)
        if n_rows_of(new) != k:
            raise DecrementalError(
                f"replace() needs old and new values of the same rows: got {k} old rows and "
                f"{n_rows_of(new)} new rows; pass both with one row per changed record"
            )
        if k == 0:
            return self._unchanged(rows_removed=0)
        if k > self.n_rows:
            raise DecrementalError(
                f"cannot replace {k} rows of {self.name!r}, which is fitted on {self.n_rows}"
            )
        self._check_layout(old)
        self._check_layout(new)
        start = time.perf_counter()
        outcome = self._update(old, new, self.n_rows, remaining)
        outcome.detail["rows_replaced"] = k
        return self._record(outcome, start, rows_removed=0)

    # -- for subclasses ------------------------------------------------------------------------
    def _update(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        """Remove the rows ``removed`` and add ``added`` (either may be None); update in place."""
        raise NotImplementedError

    def _layout(self) -> list[str] | None:
        """The transformer's output column names (unique), None when unknown."""
        return _names_out(self.transformer)

    # -- helpers -------------------------------------------------------------------------------
    def _check_layout(self, data: Any) -> None:
        """Rows must come with the fitted input columns (names and count), in order."""
        t = self.transformer
        names = getattr(t, "feature_names_in_", None)
        if names is not None and isinstance(data, pd.DataFrame):
            if list(data.columns) != list(names):
                raise DecrementalError(
                    f"{self.name!r} was fitted on columns {list(names)} but got rows with "
                    f"columns {list(data.columns)}; pass the same input columns, in order"
                )
            return
        width = getattr(t, "n_features_in_", None)
        shape = getattr(data, "shape", None)
        if width is not None and shape is not None and len(shape) == 2 and shape[1] != width:
            raise DecrementalError(
                f"{self.name!r} was fitted on {width} input columns but got rows with "
                f"{shape[1]}; pass the same input columns as the fitted data"
            )

    def _unchanged(self, rows_removed: int) -> UpdateRecord:
        return UpdateRecord(self.name, "unchanged", 0.0, rows_removed, False)

    def _record(self, outcome: Outcome, start: float, rows_removed: int) -> UpdateRecord:
        detail = dict(outcome.detail)
        if outcome.changed and self.strategy != "stateless":
            after = self._layout()
            detail.update(_layout_detail(self._columns, after))
            self._columns = after
        if self.reason and outcome.strategy in ("refit", "stateless"):
            detail.setdefault("reason", self.reason)
        return UpdateRecord(
            component=self.name,
            strategy=outcome.strategy,
            seconds=time.perf_counter() - start,
            rows_removed=rows_removed,
            changed=outcome.changed,
            detail=detail,
        )


class StatelessTracker(Decremental):
    """Nothing fitted depends on the rows (HashingVectorizer, FunctionTransformer, 'drop', ...).

    FunctionTransformer is taken to be row-wise (each output row depends on its input row only),
    as a ColumnTransformer step should be.
    """

    strategy: Strategy = "stateless"

    def _update(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        return Outcome("stateless", changed=False)


def swap_in(target: Any, fresh: Any) -> list[str]:
    """Move the whole state of ``fresh`` (a fitted clone) into ``target``, keeping its identity.

    Returns the names of the fitted attributes that changed.
    """
    before = copy.deepcopy(fitted_attributes(target))
    vars(target).clear()
    vars(target).update(vars(fresh))
    after = fitted_attributes(target)
    keys = sorted(set(before) | set(after))
    return [k for k in keys if not same_state(before.get(k), after.get(k))]


def refit_in_place(transformer: Any, data: Any) -> tuple[list[str], list[str]]:
    """Fit a clone of ``transformer`` on ``data`` and move its state into ``transformer``.

    The original object keeps its identity (the ColumnTransformer holds it) and is untouched if
    the fit fails. Returns the changed fitted attribute names and the warnings the fit raised.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fresh = clone(transformer).fit(data)
        except ValueError as err:
            raise refit_failed(transformer, err) from err
    return swap_in(transformer, fresh), [str(w.message) for w in caught]


def refit_failed(transformer: Any, err: Exception) -> DecrementalError:
    """The error for a state that a refit on the remaining rows rejects."""
    return DecrementalError(
        f"a refit of {type(transformer).__name__} on the remaining rows would fail ({err}); "
        "nothing was changed: adjust the encoder's parameters or keep those rows"
    )


class RefitTracker(Decremental):
    """No exact update known for this transformer (or configuration): refit on ``remaining()``.

    The refit is explicit: declared as ``strategy == "refit"`` with a ``reason``, and recorded
    per update (``detail["reason"]``, ``changed_attributes``).
    """

    strategy: Strategy = "refit"

    def _update(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        data = call_remaining(self.name, remaining, n_after, self.reason)
        changed, caught = refit_in_place(self.transformer, data)
        detail: dict[str, Any] = {"changed_attributes": changed}
        if caught:
            detail["warnings"] = caught
        return Outcome("refit", changed=bool(changed), detail=detail)


def call_remaining(name: str, remaining: Remaining | None, n_after: int, reason: str) -> Any:
    """``remaining()``, checked: a clear error when it is missing or has the wrong row count."""
    if remaining is None:
        raise DecrementalError(
            f"{name!r} is updated by a refit ({reason or 'no exact update'}), which needs the "
            "remaining rows: pass remaining=<callable returning their input data>"
        )
    data = remaining()
    if n_rows_of(data) != n_after:
        raise DecrementalError(
            f"remaining() for {name!r} returned {n_rows_of(data)} rows, expected {n_after} "
            "(the fitted rows after this update); pass the input data of exactly those rows"
        )
    return data


class ExactTracker(Decremental):
    """Base of trackers with additive sufficient statistics.

    Subclasses implement ``_apply(data, sign)`` (add ``sign=1`` / remove ``sign=-1`` rows; must
    validate before mutating and be exactly invertible) and ``_state(n_after)`` (the fitted
    attributes a refit would set, or raise). ``_bookkeeping`` names attributes that do not
    affect ``transform`` (they never make ``changed`` true).
    """

    strategy: Strategy = "exact"
    _bookkeeping: frozenset[str] = frozenset({"n_samples_seen_"})

    def _apply(self, data: Any, sign: int) -> None:
        raise NotImplementedError

    def _state(self, n_after: int) -> dict[str, Any]:
        raise NotImplementedError

    def _commit(self, state: dict[str, Any]) -> list[str]:
        return adopt(self.transformer, state)

    def _update(
        self, removed: Any, added: Any, n_after: int, remaining: Remaining | None
    ) -> Outcome:
        done: list[tuple[Any, int]] = []
        try:
            for data, sign in ((removed, -1), (added, 1)):
                if data is not None:
                    self._apply(data, sign)
                    done.append((data, sign))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                state = self._state(n_after)
        except Exception:
            for data, sign in reversed(done):
                self._apply(data, -sign)
            raise
        changed = self._commit(state)
        detail: dict[str, Any] = {"changed_attributes": changed}
        if caught:
            detail["warnings"] = sorted({str(w.message) for w in caught})
        return Outcome("exact", any(a not in self._bookkeeping for a in changed), detail)
