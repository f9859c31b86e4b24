"""The training side of a pipeline kept equal to a recompute while records are forgotten.

:class:`TrainingState` holds the prepared training rows, the fitted ColumnTransformer with one
decremental tracker per transformer, X (with provenance), y and the model's unlearner. Two
kinds of change reach it, as in the paper:

* **instance deletion** (:meth:`TrainingState.forget_rows` / :meth:`forget`): rows leave. Each
  encoder downdates its statistics; where its fitted state changed (a mean, a vocabulary, an idf)
  the block of X it produces is re-encoded for the remaining rows, exactly as a recompute would
  encode them; the removed rows leave X and y; the model forgets them and absorbs the changed
  columns.
* **value deletion** (:meth:`TrainingState.replace_rows`): some rows' prepared values change
  (e.g. a leaked subject became missing). Encoders reading those columns replace the old by the
  new values in their statistics; the rows are re-encoded as a recompute would see them
  (null / imputed, never zeros); the model absorbs the changed rows.

Every step returns :class:`~lester_dagster.features.record.UpdateRecord` s, collected in a
:class:`TrainingUpdate`. Rows are identified by position in the current training frame; the
prepared rows' provenance (``prov``) maps source keys to positions.

Limits (explicit errors): :meth:`TrainingState.forget` refuses training rows that carry several
provenance monomials (an aggregated preparation: a deleted record changes such a row rather
than removing it; the pipeline's deletion run refits those); label functions must be row-wise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import PlanError, UnsupportedOperationError
from lester_dagster.features.decremental import Decremental, track
from lester_dagster.features.matrix import (
    Block,
    FeatureMatrix,
    Matrix,
    encode_labels,
    fit_encode,
    transformer_inputs,
)
from lester_dagster.features.record import UpdateRecord
from lester_dagster.frame import Prov, Result
from lester_dagster.frame.provenance import sorted_unique
from lester_dagster.models.base import Unlearner
from lester_dagster.models.dispatch import fit_for_forgetting

__all__ = ["TrainingState", "TrainingUpdate"]

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingUpdate:
    """What one update did: the records of every component, and what changed in X."""

    rows_removed: int
    rows_replaced: int
    records: tuple[UpdateRecord, ...]
    reencoded_blocks: tuple[str, ...]
    seconds: float
    #: Per re-encoded block whose change is affine (a scaler whose statistics moved, same
    #: width): ``(ratio, shift)`` with new column = ratio * old column + shift, for any row.
    affine: Mapping[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)

    @property
    def strategies(self) -> dict[str, str]:
        return {r.component: r.strategy for r in self.records}


def _inputs(frame: pd.DataFrame, spec: Any, names: tuple[str, ...]) -> Any:
    """A transformer's input as ColumnTransformer passes it: a Series for a single column name
    given as a string (text vectorisers), else a DataFrame."""
    return frame[spec] if isinstance(spec, str) else frame[list(names)]


def _affine(transformer: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """(a, b) with transform(x) = a * x + b per output column, for the fitted scalers whose
    output is affine in their input; None for every other transformer."""
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler

    kind = type(transformer)
    if kind is StandardScaler and hasattr(transformer, "n_features_in_"):
        width = transformer.n_features_in_
        scale = transformer.scale_ if transformer.scale_ is not None else np.ones(width)
        mean = transformer.mean_ if transformer.mean_ is not None else np.zeros(width)
        return 1.0 / scale, -np.asarray(mean) / scale
    if kind is MinMaxScaler and hasattr(transformer, "scale_"):
        if transformer.clip:
            return None  # clipping makes it piecewise
        return np.asarray(transformer.scale_), np.asarray(transformer.min_)
    if kind is MaxAbsScaler and hasattr(transformer, "scale_"):
        return 1.0 / np.asarray(transformer.scale_), np.zeros(len(transformer.scale_))
    return None


def _placeholder(spec: Any, names: tuple[str, ...], rows: int) -> Any:
    """Inputs of ``rows`` rows, shaped as :func:`_inputs` gives them, holding nothing: what a
    stateless tracker is handed for columns the state does not keep (it only counts rows)."""
    if isinstance(spec, str):
        return pd.Series([None] * rows, name=spec, dtype=object)
    return pd.DataFrame({name: [None] * rows for name in names}, dtype=object)


def _stateless_only(
    blocks: Sequence[Block],
    trackers: Mapping[str, Decremental],
    label_inputs: tuple[str, ...] | None,
    columns: tuple[str, ...],
) -> tuple[str, ...]:
    """Columns read only by stateless encoders and not by the label (all kept when the label's
    inputs are not declared: it may read any column)."""
    if label_inputs is None:
        return ()
    stateless: set[str] = set()
    needed: set[str] = set(label_inputs)
    for block in blocks:
        tracker = trackers.get(block.name)
        if tracker is not None and tracker.strategy == "stateless":
            stateless |= set(block.inputs)
        else:
            needed |= set(block.inputs)
    return tuple(c for c in columns if c in stateless and c not in needed)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _hstack(parts: Sequence[Matrix], sparse: bool, n_rows: int) -> Matrix:
    if not parts:
        return sp.csr_matrix((n_rows, 0)) if sparse else np.zeros((n_rows, 0))
    if sparse:
        return sp.hstack([sp.csr_matrix(p) for p in parts], format="csr", dtype=np.float64)
    return np.hstack([p.toarray() if sp.issparse(p) else np.asarray(p) for p in parts]).astype(
        np.float64, copy=False
    )


def _map_columns(
    X: Matrix, columns: IntArray, ratio: FloatArray, shift: FloatArray, *, owned: bool
) -> Matrix | None:
    """Sparse ``X`` with ``columns`` mapped to ``ratio * value + shift`` (``owned``: its values
    may change in place), or None when a row holds no stored value in one of them (a zero the
    map would turn into a stored value) or X is not in canonical form."""
    csr = sp.csr_matrix(X)
    if not csr.has_canonical_format:
        return None
    if columns.size <= 8:  # a scaler's few columns: one pass over the indices per column
        places = [np.flatnonzero(csr.indices == column) for column in columns.tolist()]
        if any(at.size != csr.shape[0] for at in places):
            return None  # some row holds an implicit zero there
        data = csr.data if owned else csr.data.copy()
        for at, r, c in zip(places, ratio.tolist(), shift.tolist(), strict=True):
            data[at] = data[at] * r + c
        return sp.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)
    width = int(csr.shape[1])
    where = np.full(width, -1, dtype=np.intp)
    where[columns] = np.arange(columns.size)
    at = where[csr.indices]
    hit = at >= 0
    if int(hit.sum()) != csr.shape[0] * columns.size:
        return None  # some row holds an implicit zero there
    data = csr.data if owned else csr.data.copy()
    data[hit] = data[hit] * ratio[at[hit]] + shift[at[hit]]
    return sp.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)


def _replace_rows(X: Any, rows: IntArray, fresh: FloatArray) -> Any:
    """CSR ``X`` with row ``rows[i]`` replaced by the dense ``fresh[i]`` (its nonzeros), the
    other rows' buffers copied slice by slice around them: one pass over X's buffers (a sparse
    product zeroing and adding the rows took ~60 ms at 3M entries, a LIL conversion seconds)."""
    order = np.argsort(rows, kind="stable")
    targets = np.asarray(rows, dtype=np.intp)[order]
    if targets.size > 1 and not bool((np.diff(targets) > 0).all()):
        raise PlanError("rows to replace must be distinct")
    new = sp.csr_matrix(np.asarray(fresh, dtype=X.dtype)[order])
    indptr = X.indptr
    counts = np.diff(indptr).astype(np.int64)
    counts[targets] = np.diff(new.indptr)
    out_indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    data: list[npt.NDArray[Any]] = []
    indices: list[npt.NDArray[Any]] = []
    previous = 0
    for i, row in enumerate(targets.tolist()):
        lo, hi = int(indptr[previous]), int(indptr[row])
        data += [X.data[lo:hi], new.data[new.indptr[i] : new.indptr[i + 1]]]
        indices += [X.indices[lo:hi], new.indices[new.indptr[i] : new.indptr[i + 1]]]
        previous = row + 1
    data.append(X.data[int(indptr[previous]) :])
    indices.append(X.indices[int(indptr[previous]) :])
    index_type = np.int32 if out_indptr[-1] < 2**31 and X.shape[1] < 2**31 else np.int64
    return sp.csr_matrix(
        (
            np.concatenate(data),
            np.concatenate(indices).astype(index_type, copy=False),
            out_indptr.astype(index_type, copy=False),
        ),
        shape=X.shape,
    )


class TrainingState:
    """Prepared training rows, encoders, X, y and model, kept equal to a recompute."""

    def __init__(
        self,
        frame: pd.DataFrame,
        features: FeatureMatrix,
        y: npt.NDArray[Any],
        encoding: Any,
        trackers: dict[str, Decremental],
        unlearner: Unlearner,
        label: Callable[[pd.DataFrame], Any],
        label_inputs: tuple[str, ...] | None,
    ) -> None:
        self.frame = frame
        self.features = features
        self.y = y
        self.encoding = encoding
        self.trackers = trackers
        self.unlearner = unlearner
        self.label = label
        self.label_inputs = label_inputs
        self.history: list[TrainingUpdate] = []
        self._affine_maps: dict[str, tuple[FloatArray, FloatArray]] = {}
        #: Prepared columns not kept in :attr:`frame`: read only by stateless encoders (a
        #: HashingVectorizer's text) and not by the label, so no update needs their old values.
        self.dropped: tuple[str, ...] = ()

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        prepared: Result,
        encoding: Any,
        label: Callable[[pd.DataFrame], Any],
        model: Any,
        *,
        label_inputs: Sequence[str] | None = None,
    ) -> TrainingState:
        """Fit encoders and model on the prepared training rows, keeping what forgetting needs."""
        encoding, features = fit_encode(encoding, prepared)
        labels = encode_labels(label, prepared, inputs=label_inputs)
        frame = prepared.to_pandas()
        trackers: dict[str, Decremental] = {}
        for name, transformer, spec in encoding.transformers_:
            block = next((b for b in features.blocks if b.name == name), None)
            if block is None:  # 'drop' or an empty block
                continue
            inputs = transformer_inputs(encoding, name, spec)
            trackers[name] = track(transformer, _inputs(frame, spec, inputs), name=name)
        unlearner = fit_for_forgetting(model, features.X, labels.y)
        unlearner.adopt(features.X)  # one X for the model and the features (stored once)
        inputs_ = tuple(label_inputs) if label_inputs is not None else None
        dropped = _stateless_only(features.blocks, trackers, inputs_, tuple(frame.columns))
        kept = frame.drop(columns=list(dropped)) if dropped else frame
        state = cls(kept, features, labels.y, encoding, trackers, unlearner, label, inputs_)
        state.dropped = dropped
        return state

    # -- queries -------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self.unlearner.model

    @property
    def prov(self) -> Prov:
        return self.features.prov

    @property
    def X(self) -> Matrix:
        return self.features.X

    def rows_of(self, source: str, keys: Iterable[Any]) -> IntArray:
        """Positions of the training rows derived from these keys of ``source``."""
        ids = self.features.resolve(source, keys)
        return self.prov.rows_mentioning(source, ids)

    # -- instance deletion ---------------------------------------------------------------------
    def forget(self, source: str, keys: Iterable[Any]) -> TrainingUpdate:
        """Forget every training row derived from these keys of ``source`` (the record's
        ``seconds`` include resolving the keys). Aggregated training rows (several provenance
        monomials per row) are refused: deleting one of their records changes such a row
        rather than removing it; refit, as the pipeline's deletion run does for them."""
        started = time.perf_counter()
        if not self.prov.single:
            raise UnsupportedOperationError(
                "the training rows were aggregated (several provenance monomials per row): a "
                "deleted record changes its rows instead of removing them, which needs a "
                "refit (the pipeline's deletion run refits and records it); forget_rows removes "
                "rows that leave entirely"
            )
        return self._forget_rows(self.rows_of(source, keys), started)

    def forget_rows(self, rows: npt.ArrayLike) -> TrainingUpdate:
        """Remove the training rows at these positions from encoders, X, y and model."""
        return self._forget_rows(rows, time.perf_counter())

    def _forget_rows(self, rows: npt.ArrayLike, started: float) -> TrainingUpdate:
        positions = sorted_unique(np.asarray(rows, dtype=np.intp))
        n = len(self.frame)
        if positions.size and (positions[0] < 0 or positions[-1] >= n):
            raise PlanError(f"row positions must lie in 0..{n - 1}, got {positions.tolist()[:5]}")
        if positions.size == 0:
            return self._done(started, 0, 0, [], [])
        keep = np.ones(n, dtype=bool)
        keep[positions] = False
        kept_rows = np.flatnonzero(keep)
        removed = self.frame.iloc[positions]
        remaining = self.frame.iloc[kept_rows].reset_index(drop=True)
        before = {b.name: _affine(self.trackers[b.name].transformer) for b in self.features.blocks}
        records, changed = self._update_encoders(removed, None, remaining)
        # the model forgets the removed rows first (as encoded when it learned them) ...
        records.append(self.unlearner.forget(positions))
        self.frame = remaining
        self.y = self.y[kept_rows]
        X = self.features.X[kept_rows]
        prov = self.features.prov.take(kept_rows)
        # ... then absorbs the blocks whose encoding changed for the remaining rows: an affine
        # change of a scaler's columns through the model's fast path, anything else by update()
        X, old_columns, blocks = self._reencode(X, changed, remaining, before, owned=True)
        records.extend(self._absorb_affine(changed, before, blocks, old_columns))
        if (old_columns < 0).any():
            records.append(
                self.unlearner.update(
                    X, self.y, changed_rows=np.zeros(0, dtype=np.intp), old_columns=old_columns
                )
            )
        self.features = FeatureMatrix(X, prov, blocks, self.features.resolve)
        return self._done(started, int(positions.size), 0, records, changed)

    # -- value deletion ------------------------------------------------------------------------
    def replace_rows(self, rows: npt.ArrayLike, new_values: pd.DataFrame) -> TrainingUpdate:
        """The prepared values of these rows became ``new_values`` (same columns, one row each,
        e.g. with a forgotten value now missing): update encoders, X, y and model."""
        started = time.perf_counter()
        positions = np.asarray(rows, dtype=np.intp)
        if len(np.unique(positions)) != len(positions) or len(new_values) != len(positions):
            raise PlanError("replace_rows needs distinct rows and one new row of values for each")
        dropped = list(self._dropped())
        missing = [c for c in [*self.frame.columns, *dropped] if c not in new_values.columns]
        if missing:
            raise PlanError(f"new_values lacks the prepared column(s) {missing}")
        if positions.size == 0:
            return self._done(started, 0, 0, [], [])
        old = self.frame.iloc[positions]
        new = new_values[list(self.frame.columns)].set_axis(old.index)
        differ = [c for c in self.frame.columns if not old[c].equals(new[c])]
        # only the columns that changed are written (and copied: the frame is copy-on-write)
        frame = self.frame.copy(deep=False)
        if differ:
            where = frame.columns.get_indexer(pd.Index(differ))
            types = {c: frame.dtypes[c] for c in differ}
            frame.iloc[positions, where] = new[differ].astype(types, errors="ignore")
        # a dropped column's old value is not kept: taken as changed (its stateless encoding
        # of these rows is redone from the new values, which gives the same X if it was not)
        touched = set(differ) | set(dropped)
        before = {b.name: _affine(self.trackers[b.name].transformer) for b in self.features.blocks}
        records, changed = self._update_encoders(old, new, frame, only_inputs=touched)
        self.frame = frame
        self.y = np.asarray(self._labels(frame))
        # changed scalers map every row's old value affinely (the replaced rows are encoded
        # anew below); other changed encoders re-encode every row from the new frame
        mapped = self._map_affine_blocks(self.features.X, changed, before, owned=False)
        if mapped is not None:
            X, old_columns, blocks = mapped, self._changed_columns(changed), self.features.blocks
        else:
            X, old_columns, blocks = self._reencode(self.features.X, changed, frame)
        # a scaler whose statistics moved changed its columns affinely for every row: the model
        # absorbs that through its fast path, so only the replaced rows remain a row update
        records.extend(self._absorb_affine(changed, before, blocks, old_columns))
        # blocks that read a changed column and were not re-encoded for every row (they kept
        # their state, or were mapped): re-encode just those rows
        wide = new_values[[*self.frame.columns, *dropped]].reset_index(drop=True)
        skip = [] if mapped is not None else changed
        X = self._reencode_rows(X, blocks, positions, wide, touched, skip=skip)
        records.append(
            self.unlearner.update(X, self.y, changed_rows=positions, old_columns=old_columns)
        )
        self.features = FeatureMatrix(X, self.features.prov, blocks, self.features.resolve)
        return self._done(started, 0, int(positions.size), records, changed)

    # -- matrices encoded with this state's encoding (X_test) ---------------------------------
    def reencode_matrix(
        self,
        matrix: FeatureMatrix,
        source_rows: npt.ArrayLike,
        frame: pd.DataFrame,
        prov: Prov,
        changed: Sequence[str],
        affine: Mapping[str, tuple[FloatArray, FloatArray]] | None = None,
    ) -> FeatureMatrix:
        """Bring another matrix encoded with this state's encoding (X_test) up to date after
        an update: row ``i`` of the result is row ``source_rows[i]`` of ``matrix`` (-1: a new
        or changed row, encoded from ``frame``), and the ``changed`` blocks (their fitted state
        changed) are re-encoded for every row of ``frame``, which holds the result's rows.

        A changed block with an ``affine`` map (``(ratio, shift)``, from
        :attr:`TrainingUpdate.affine`, composed over the updates since ``matrix`` was encoded)
        takes the kept rows' old values through the map instead of re-encoding them. Without
        other changed blocks, ``frame`` may hold only the new or changed rows (in order): the
        kept rows are not read, so their data need not be loaded."""
        maps = dict(affine or {})
        rows = np.asarray(source_rows, dtype=np.intp)
        fresh = np.flatnonzero(rows < 0)
        kept = np.flatnonzero(rows >= 0)
        old_blocks = {b.name: b for b in matrix.blocks}
        every_row = [
            b.name
            for b in self.features.blocks
            if (b.name in changed and b.name not in maps)
            or b.name not in old_blocks
            or old_blocks[b.name].width != b.width
        ]
        fresh_only = len(frame) == fresh.size != len(rows)
        if len(rows) != prov.n or (len(frame) != len(rows) and not fresh_only):
            raise PlanError(
                f"reencode_matrix needs one source row and one provenance row per result row "
                f"and a frame of every result row or of the {fresh.size} new ones, got "
                f"{len(rows)} source rows, {len(frame)} frame rows, {prov.n} provenance rows"
            )
        if fresh_only and every_row:
            raise PlanError(
                f"blocks {every_row} must be re-encoded for every row; pass a frame of all "
                f"{len(rows)} result rows, not only the {fresh.size} new ones"
            )
        sparse = sp.issparse(matrix.X)
        if sparse and not fresh.size and not every_row:
            mapped = self._map_kept_rows(matrix, rows, maps)
            if mapped is not None:
                return FeatureMatrix(mapped, prov, self.features.blocks, matrix.resolve)
        new_rows = frame if fresh_only else frame.iloc[fresh]
        order = np.argsort(np.concatenate([kept, fresh]), kind="stable")
        parts: list[Matrix] = []
        for block in self.features.blocks:
            transformer = self.trackers[block.name].transformer
            spec = self._spec(block.name)
            old = old_blocks.get(block.name)
            if block.name in every_row or old is None:
                parts.append(transformer.transform(_inputs(frame, spec, block.inputs)))
                continue
            taken = matrix.X[rows[kept]][:, old.start : old.stop]
            if block.name in maps:  # new = ratio * old + shift, column by column
                ratio, shift = maps[block.name]
                values = taken.toarray() if sp.issparse(taken) else np.asarray(taken)
                mapped = values * ratio + shift
                taken = sp.csr_matrix(mapped) if sparse else mapped
            if fresh.size == 0:
                parts.append(taken)
                continue
            new = transformer.transform(_inputs(new_rows, spec, block.inputs))
            if sparse or sp.issparse(new):
                stacked: Matrix = sp.vstack([sp.csr_matrix(taken), sp.csr_matrix(new)]).tocsr()
            else:
                stacked = np.vstack([np.asarray(taken), np.asarray(new)])
            parts.append(stacked[order])
        X = _hstack(parts, sparse, len(rows))
        return FeatureMatrix(X, prov, self.features.blocks, matrix.resolve)

    def _map_kept_rows(
        self,
        matrix: FeatureMatrix,
        rows: IntArray,
        maps: Mapping[str, tuple[FloatArray, FloatArray]],
    ) -> Matrix | None:
        """Sparse X of only kept rows (``rows`` of ``matrix``), the blocks in ``maps`` taken
        through their affine map in place of X's block-by-block copy and stacking; None where
        that does not apply (other column layout, a row without a stored value in a mapped
        column), for the caller's general way."""
        spans = [(b.name, b.start, b.stop) for b in matrix.blocks]
        if spans != [(b.name, b.start, b.stop) for b in self.features.blocks]:
            return None
        X = matrix.X
        if X.dtype != np.float64:
            return None
        same = len(rows) == X.shape[0] and bool((rows == np.arange(len(rows))).all())
        taken = X if same else sp.csr_matrix(X)[rows]
        mapped = [b for b in self.features.blocks if b.name in maps]
        if not mapped:
            return sp.csr_matrix(taken, copy=same)
        columns = np.concatenate([np.arange(b.start, b.stop, dtype=np.intp) for b in mapped])
        ratio = np.concatenate([np.asarray(maps[b.name][0], dtype=np.float64) for b in mapped])
        shift = np.concatenate([np.asarray(maps[b.name][1], dtype=np.float64) for b in mapped])
        if ratio.shape != columns.shape or shift.shape != columns.shape:
            return None
        return _map_columns(taken, columns, ratio, shift, owned=not same)

    # -- internals -----------------------------------------------------------------------------
    def _dropped(self) -> tuple[str, ...]:
        return tuple(getattr(self, "dropped", ()))  # states pickled before it existed

    def _reads_dropped(self, block: Block) -> bool:
        return bool(set(block.inputs) & set(self._dropped()))

    def values_differ(self, rows: npt.ArrayLike, new_values: pd.DataFrame) -> bool:
        """Whether ``new_values`` (one row per position in ``rows``, every prepared column)
        differ from what the state holds for those rows: the kept columns compared as values,
        the dropped ones through their (stateless) encoding against the rows of X."""
        positions = np.asarray(rows, dtype=np.intp)
        old = self.frame.iloc[positions].reset_index(drop=True)
        new = new_values.reset_index(drop=True)
        if not new[list(old.columns)].equals(old):
            return True
        for block in self.features.blocks:
            if not self._reads_dropped(block):
                continue
            transformer = self.trackers[block.name].transformer
            part = transformer.transform(_inputs(new, self._spec(block.name), block.inputs))
            stored = self.features.X[positions][:, block.start : block.stop]
            fresh = part.toarray() if sp.issparse(part) else np.asarray(part)
            held = stored.toarray() if sp.issparse(stored) else np.asarray(stored)
            if not np.array_equal(fresh, held, equal_nan=True):
                return True
        return False

    def _labels(self, frame: pd.DataFrame) -> Any:
        data = frame[list(self.label_inputs)] if self.label_inputs is not None else frame
        return self.label(data)

    def _update_encoders(
        self,
        old: pd.DataFrame,
        new: pd.DataFrame | None,
        after: pd.DataFrame,
        only_inputs: set[str] | None = None,
    ) -> tuple[list[UpdateRecord], list[str]]:
        """Forget ``old`` rows (``new`` is None) or replace them by ``new`` in every tracker
        whose block reads a column in ``only_inputs`` (default: all); ``after`` is the frame
        after the update, handed to trackers that refit."""
        records: list[UpdateRecord] = []
        changed: list[str] = []
        for block in self.features.blocks:
            if only_inputs is not None and not (set(block.inputs) & only_inputs):
                continue
            tracker = self.trackers[block.name]
            spec = self._spec(block.name)
            if self._reads_dropped(block):  # stateless: the values are not read, only counted
                after_inputs = _placeholder(spec, block.inputs, len(after))
                before = _placeholder(spec, block.inputs, len(old))
                added = _placeholder(spec, block.inputs, len(old))
            else:
                after_inputs = _inputs(after, spec, block.inputs)
                before = _inputs(old, spec, block.inputs)
                added = _inputs(new, spec, block.inputs) if new is not None else None
            remaining = _constant(after_inputs)
            if new is None:
                record = tracker.forget(before, remaining=remaining)
            else:
                record = tracker.replace(before, added, remaining=remaining)
            records.append(record)
            if record.changed:
                changed.append(block.name)
        return records, changed

    def _absorb_affine(
        self,
        changed: list[str],
        before: dict[str, tuple[Any, Any] | None],
        blocks: tuple[Block, ...],
        old_columns: IntArray,
    ) -> list[UpdateRecord]:
        """Hand the model the affine change of every re-encoded scaler block (``before``: the
        blocks' affine maps before the update) and mark those columns as held by the model
        (``old_columns`` is updated in place); returns the model's record, if any."""
        affine: dict[str, tuple[Block, Any, Any]] = {}
        for block in self.features.blocks:
            now = _affine(self.trackers[block.name].transformer)
            old = before[block.name]
            if block.name in changed and old is not None and now is not None:
                ratio = now[0] / old[0]
                affine[block.name] = (block, ratio, now[1] - old[1] * ratio)
        self._affine_maps = {
            name: (np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64))
            for name, (_, r, c) in affine.items()
        }
        if not affine:
            return []
        cols = np.concatenate([np.arange(b.start, b.stop) for b, _, _ in affine.values()])
        record = self.unlearner.affine_columns(
            cols.astype(np.intp),
            np.concatenate([a for _, a, _ in affine.values()]),
            np.concatenate([c for _, _, c in affine.values()]),
        )
        for new_block in blocks:  # the model already holds these columns' new values
            if new_block.name in affine:
                old_block = affine[new_block.name][0]
                old_columns[new_block.start : new_block.stop] = np.arange(
                    old_block.start, old_block.stop
                )
        return [record]

    def _spec(self, name: str) -> Any:
        for n, _, spec in self.encoding.transformers_:
            if n == name:
                return spec
        raise KeyError(name)  # pragma: no cover - blocks come from the same transformer list

    def _reencode(
        self,
        X: Matrix,
        changed: list[str],
        frame: pd.DataFrame,
        before: Mapping[str, tuple[Any, Any] | None] | None = None,
        *,
        owned: bool = False,
    ) -> tuple[Matrix, IntArray, tuple[Block, ...]]:
        """Re-encode the ``changed`` blocks for all rows of ``frame``. Returns the new X, per
        new column its old column index (-1 where the values are new) and the new blocks.

        A changed scaler block (affine before and after, ``before``: the maps before the
        update) whose columns hold a stored value in every row is mapped in place of a
        re-encoding (``owned``: ``X`` may be changed in place, else its values are copied);
        only for rows whose inputs did not change (forgetting rows, not replacing them)."""
        blocks = self.features.blocks
        if not changed:
            return X, np.arange(X.shape[1], dtype=np.intp), blocks
        mapped = self._map_affine_blocks(X, changed, before or {}, owned=owned)
        if mapped is not None:
            return mapped, self._changed_columns(changed), blocks
        parts: list[Matrix] = []
        old_columns: list[IntArray] = []
        new_blocks: list[Block] = []
        start = 0
        for block in blocks:
            if block.name in changed:
                transformer = self.trackers[block.name].transformer
                part = transformer.transform(_inputs(frame, self._spec(block.name), block.inputs))
                width = int(part.shape[1])
                old_columns.append(np.full(width, -1, dtype=np.intp))
            else:
                part = X[:, block.start : block.stop]
                width = block.width
                old_columns.append(np.arange(block.start, block.stop, dtype=np.intp))
            parts.append(part)
            new_blocks.append(Block(block.name, start, start + width, block.inputs, block.lineage))
            start += width
        # keep the ColumnTransformer's own offsets in step (a vocabulary may have grown/shrunk)
        self.encoding.output_indices_ = {
            **self.encoding.output_indices_,
            **{b.name: slice(b.start, b.stop) for b in new_blocks},
        }
        new_X = _hstack(parts, sp.issparse(X), X.shape[0])
        return new_X, np.concatenate(old_columns), tuple(new_blocks)

    def _changed_columns(self, changed: list[str]) -> IntArray:
        columns = np.arange(self.features.shape[1], dtype=np.intp)
        for block in self.features.blocks:
            if block.name in changed:
                columns[block.start : block.stop] = -1
        return columns

    def _map_affine_blocks(
        self,
        X: Matrix,
        changed: list[str],
        before: Mapping[str, tuple[Any, Any] | None],
        *,
        owned: bool,
    ) -> Matrix | None:
        """``X`` with every changed block mapped by its scaler's affine change, or ``None`` if
        some changed block is not such a scaler, or (sparse) a row holds no stored value in
        one of its columns (a zero the map would turn into a stored value)."""
        cols: list[IntArray] = []
        ratios: list[FloatArray] = []
        shifts: list[FloatArray] = []
        for block in self.features.blocks:
            if block.name not in changed:
                continue
            old, now = before.get(block.name), _affine(self.trackers[block.name].transformer)
            if old is None or now is None or len(now[0]) != block.width:
                return None
            ratio = np.asarray(now[0], dtype=np.float64) / np.asarray(old[0], dtype=np.float64)
            cols.append(np.arange(block.start, block.stop, dtype=np.intp))
            ratios.append(ratio)
            shifts.append(np.asarray(now[1], dtype=np.float64) - np.asarray(old[1]) * ratio)
        if not cols:
            return None
        columns = np.concatenate(cols)
        ratio, shift = np.concatenate(ratios), np.concatenate(shifts)
        if not sp.issparse(X):
            out = np.array(X, dtype=np.float64, copy=not owned)
            out[:, columns] = out[:, columns] * ratio + shift
            return out
        return _map_columns(X, columns, ratio, shift, owned=owned)

    def _reencode_rows(
        self,
        X: Matrix,
        blocks: tuple[Block, ...],
        rows: IntArray,
        subset: pd.DataFrame,
        touched: set[str],
        skip: list[str],
    ) -> Matrix:
        """Re-encode only ``rows`` in blocks that read a touched column but kept their state
        (``subset``: the new values of exactly those rows, in order)."""
        targets = [b for b in blocks if b.name not in skip and set(b.inputs) & touched]
        if not targets:
            return X
        # the changed rows, dense (few rows), with the targets' columns re-encoded
        fresh = X[rows].toarray() if sp.issparse(X) else np.array(X[rows], dtype=float)
        for block in targets:
            transformer = self.trackers[block.name].transformer
            part = transformer.transform(_inputs(subset, self._spec(block.name), block.inputs))
            dense = part.toarray() if sp.issparse(part) else np.asarray(part)
            fresh[:, block.start : block.stop] = dense
        if not sp.issparse(X):
            out = X.copy()
            out[rows] = fresh
            return out
        return _replace_rows(sp.csr_matrix(X), rows, fresh)

    def _done(
        self,
        started: float,
        removed: int,
        replaced: int,
        records: list[UpdateRecord],
        changed: list[str],
    ) -> TrainingUpdate:
        maps = getattr(self, "_affine_maps", {})  # states pickled before it existed
        update = TrainingUpdate(
            removed,
            replaced,
            tuple(records),
            tuple(changed),
            time.perf_counter() - started,
            {name: m for name, m in maps.items() if name in changed},
        )
        self._affine_maps = {}
        self.history.append(update)
        return update
