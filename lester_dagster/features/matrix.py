"""Feature matrices with provenance: X rows map to prepared rows, X columns to source columns.

Feature encoding is an ordinary scikit-learn ``ColumnTransformer``. :func:`fit_encode` fits it on
an executed frame (a :class:`~lester_dagster.frame.Result`) and returns a :class:`FeatureMatrix`:

* row ``i`` of X is prepared row ``i``; X keeps the prepared rows' provenance polynomials
  (``prov``), so every X row maps back to source keys;
* X's columns are cut into :class:`Block` s, one per transformer, at the offsets sklearn itself
  reports (``output_indices_``), each knowing the prepared columns it reads and, through the
  frame's column lineage, the source columns it encodes.

``FeatureMatrix.forward("customers", [7])`` answers "which X rows and which X columns hold data
of customer 7": the rows whose provenance mentions the key, and the columns of the blocks that
encode a column of that source. :func:`encode_labels` does the same for y.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import PlanError, UnknownColumnError
from lester_dagster.frame import ColumnRef, KeyResolver, Prov, Result

__all__ = [
    "Block",
    "FeatureMatrix",
    "Labels",
    "XLineage",
    "encode",
    "encode_labels",
    "fit_encode",
    "transformer_inputs",
]

Matrix: TypeAlias = Any  # a dense numpy float64 array or a scipy.sparse CSR matrix (untyped)
ResolveKeys = Callable[[str, Iterable[Any]], npt.NDArray[np.uint64]]


@dataclass(frozen=True)
class Block:
    """The X columns ``[start, stop)`` that transformer ``name`` produces."""

    name: str
    start: int
    stop: int
    inputs: tuple[str, ...]  # prepared-frame columns the transformer reads
    lineage: frozenset[ColumnRef]  # source columns those inputs are computed from

    @property
    def width(self) -> int:
        return self.stop - self.start

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(ref.source for ref in self.lineage)


@dataclass(frozen=True)
class XLineage:
    """Where a source record's data sits in X: these rows, and in them these columns."""

    rows: npt.NDArray[np.intp]
    columns: npt.NDArray[np.intp]
    blocks: tuple[str, ...]


def _not_fitted_check(ct: Any) -> None:
    from sklearn.compose import ColumnTransformer

    if not isinstance(ct, ColumnTransformer):
        raise PlanError(
            "feature encoding must be a sklearn ColumnTransformer (got "
            f"{type(ct).__name__}); wrap your transformer, e.g. "
            "ColumnTransformer([('scale', StandardScaler(), ['age'])])"
        )


def transformer_inputs(ct: Any, name: str, spec: Any) -> tuple[str, ...]:
    """The prepared-frame columns a fitted ColumnTransformer's transformer ``name`` reads."""
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, (list, tuple)) and all(isinstance(c, str) for c in spec):
        return tuple(spec)
    indices = ct._transformer_to_input_indices.get(name, [])  # resolved by sklearn at fit time
    return tuple(str(ct.feature_names_in_[i]) for i in indices)


def _check_columns(ct: Any, columns: Sequence[str]) -> None:
    available = set(columns)
    for name, _, spec in ct.transformers:
        wanted = [spec] if isinstance(spec, str) else spec
        if isinstance(wanted, (list, tuple)):
            for column in wanted:
                if isinstance(column, str) and column not in available:
                    raise UnknownColumnError(column, columns, f"transformer {name!r}")


def _blocks(ct: Any, data: Result) -> tuple[Block, ...]:
    lineage = data.schema.lineage
    blocks = []
    for name, _, spec in ct.transformers_:
        part = ct.output_indices_.get(name, slice(0, 0))
        if part.stop == part.start:
            continue
        inputs = transformer_inputs(ct, name, spec)
        refs: frozenset[ColumnRef] = frozenset()
        for column in inputs:
            refs |= lineage.get(column, frozenset())
        blocks.append(Block(name, int(part.start), int(part.stop), inputs, refs))
    return tuple(sorted(blocks, key=lambda b: b.start))


def _as_matrix(out: Any, frame: pd.DataFrame) -> Matrix:
    try:
        if sp.issparse(out):
            return sp.csr_matrix(out, dtype=np.float64)
        return np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        text = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        raise PlanError(
            f"the feature matrix must be numeric, but the encoding passes non-numeric values "
            f"through ({exc}); encode or drop the text columns among {text} (check "
            "remainder='passthrough' and 'passthrough' transformers)"
        ) from exc


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """X with provenance: ``prov`` maps rows to source keys, ``blocks`` columns to sources."""

    X: Matrix
    prov: Prov
    blocks: tuple[Block, ...]
    # source keys -> key ids: a picklable KeyResolver over the prepared result's key indexes
    resolve: ResolveKeys

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.X.shape[0]), int(self.X.shape[1]))

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise UnknownColumnError(name, [b.name for b in self.blocks], "the feature blocks")

    def block_of(self, column: int) -> Block:
        """The block that produces X column ``column``."""
        for b in self.blocks:
            if b.start <= column < b.stop:
                return b
        raise IndexError(f"X has {self.shape[1]} columns; column {column} is out of range")

    def column_lineage(self, column: int) -> frozenset[ColumnRef]:
        """The source columns X column ``column`` encodes."""
        return self.block_of(column).lineage

    def backward(self, row: int) -> dict[str, npt.NDArray[np.uint64]]:
        """Key ids, per source, of the records X row ``row`` derives from."""
        return self.prov.ids_of_row(row)

    def forward(self, source: str, keys: Iterable[Any]) -> XLineage:
        """The X rows derived from these keys of ``source``, and the columns holding its data."""
        ids = self.resolve(source, keys)
        rows = self.prov.rows_mentioning(source, ids)
        hit = [b for b in self.blocks if source in b.sources]
        columns = (
            np.concatenate([np.arange(b.start, b.stop, dtype=np.intp) for b in hit])
            if hit
            else np.zeros(0, dtype=np.intp)
        )
        return XLineage(rows, columns, tuple(b.name for b in hit))


def fit_encode(ct: Any, data: Result) -> tuple[Any, FeatureMatrix]:
    """Fit the ColumnTransformer ``ct`` (in place, as sklearn does) on ``data`` and encode it."""
    _not_fitted_check(ct)
    frame = data.to_pandas()
    _check_columns(ct, list(frame.columns))
    X = _as_matrix(ct.fit_transform(frame), frame)
    return ct, FeatureMatrix(X, data.prov, _blocks(ct, data), KeyResolver.of_result(data))


def encode(ct: Any, data: Result) -> FeatureMatrix:
    """Encode ``data`` with an already fitted ColumnTransformer (the test set, new data)."""
    _not_fitted_check(ct)
    if not hasattr(ct, "transformers_"):
        raise PlanError(
            "the ColumnTransformer is not fitted yet; call fit_encode on the training data first"
        )
    frame = data.to_pandas()
    _check_columns(ct, list(frame.columns))
    X = _as_matrix(ct.transform(frame), frame)
    return FeatureMatrix(X, data.prov, _blocks(ct, data), KeyResolver.of_result(data))


@dataclass(frozen=True, eq=False)
class Labels:
    """y with the same row provenance as the prepared rows (and X) it was computed from."""

    y: npt.NDArray[Any]
    prov: Prov
    inputs: tuple[str, ...]
    lineage: frozenset[ColumnRef]


def encode_labels(
    label: Callable[[pd.DataFrame], Any], data: Result, *, inputs: Sequence[str] | None = None
) -> Labels:
    """y = ``label(prepared frame)``: one value per prepared row, in the same order.

    ``inputs`` declares the columns the label reads (for its lineage); if given, the function
    receives only those columns.
    """
    frame = data.to_pandas()
    if inputs is not None:
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise UnknownColumnError(missing[0], list(frame.columns), "the label inputs")
        frame = frame[list(inputs)]
    values = np.asarray(label(frame))
    if values.ndim != 1 or len(values) != len(data):
        raise PlanError(
            f"the label function must return one value per prepared row ({len(data)}), "
            f"got an array of shape {values.shape}"
        )
    names = tuple(inputs) if inputs is not None else tuple(data.columns)
    refs: frozenset[ColumnRef] = frozenset()
    for column in names:
        refs |= data.schema.lineage[column]
    return Labels(values, data.prov, names, refs)
