"""Exact trackers for text vectorizers: CountVectorizer, TfidfVectorizer, TfidfTransformer.

Sufficient statistics: for **every term ever seen** (after the vectorizer's own analysis:
preprocessing, tokenisation, stop words, n-grams), its document frequency and total count, plus
the number of documents. From these the fit is replayed as scikit-learn does it:

* the vocabulary is the sorted set of terms that occur, pruned by ``max_df`` / ``min_df``
  (fractions are relative to the current number of documents, so a removal can add or drop
  terms that were not in the removed rows) and limited to the ``max_features`` most frequent
  (ties broken by the same ``argsort`` on the same array as scikit-learn, so the chosen terms are
  identical); ``vocabulary_`` indexes the kept terms in sorted order, as a refit's;
* ``idf_`` (TfidfVectorizer / TfidfTransformer with ``use_idf``) is recomputed from the document
  frequencies with scikit-learn's formula and dtype. The idf depends on the number of documents,
  so every removal changes it and every remaining row's tf-idf values: ``changed`` is True and
  the caller re-transforms the block.

Missing text: scikit-learn rejects NaN/None documents, so a forgotten text value must be given
to :meth:`replace` as the empty string ``""`` (an empty document: it counts as a document for
``idf_`` and ``max_df``/``min_df`` fractions, and contributes no terms). NaN/None raise
:class:`DecrementalError`. Vectorizers that read files (``input='filename'``/``'file'``) are
refitted.
"""

from __future__ import annotations

import math
from collections import Counter
from numbers import Integral
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import DecrementalError, preview
from lester_dagster.features.decremental_base import (
    Decremental,
    ExactTracker,
    RefitTracker,
    StatelessTracker,
    n_rows_of,
)

__all__ = [
    "TfidfTransformerTracker",
    "VectorizerTracker",
    "track_tfidf_transformer",
    "track_vectorizer",
]

Array = npt.NDArray[Any]


def _sum_dtype(dtype: Any) -> np.dtype[Any]:
    """The dtype of ``X.sum(axis=0)`` for a sparse ``X`` of ``dtype`` (scipy's rule)."""
    given: np.dtype[Any] = np.dtype(dtype)
    if given.kind == "u" and np.can_cast(given, np.uint):
        return np.dtype(np.uint)
    if np.can_cast(given, np.int_):
        return np.dtype(np.int_)
    return given


def _idf(df: Array, n_docs: int, smooth: bool, dtype: Any) -> Array:
    """``TfidfTransformer.fit``'s idf, operation for operation."""
    df = df.astype(dtype, copy=True)
    df += float(smooth)
    n = n_docs + int(smooth)
    idf = np.full_like(df, fill_value=n, dtype=dtype)
    idf /= df
    np.log(idf, out=idf)
    idf += 1.0
    return idf


def _documents(data: Any, name: str) -> list[Any]:
    docs = data.tolist() if isinstance(data, pd.Series | np.ndarray) else list(data)
    bad = [d for d in docs if d is None or (isinstance(d, float) and math.isnan(d))]
    if bad:
        raise DecrementalError(
            f"{name!r} got {len(bad)} missing documents (NaN/None), which scikit-learn's "
            "vectorizers reject; represent missing or forgotten text as the empty string ''"
        )
    return docs


class VectorizerTracker(ExactTracker):
    """CountVectorizer / TfidfVectorizer: document frequencies of all terms ever seen."""

    _bookkeeping = frozenset()

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        self._fixed = bool(transformer.fixed_vocabulary_)
        vocabulary = transformer.vocabulary_
        self._terms: list[str] = sorted(vocabulary, key=vocabulary.__getitem__)
        self._index = {term: i for i, term in enumerate(self._terms)}
        self._df = np.zeros(len(self._terms), dtype=np.int64)
        self._tf = np.zeros(len(self._terms), dtype=np.int64)
        self._order: Array | None = None
        self.name = name or type(transformer).__name__
        self.transformer = transformer
        self._apply(X, 1)
        # vocabulary_ columns (in output order) as indices into self._terms
        self._kept = np.arange(len(vocabulary), dtype=np.intp)
        super().__init__(transformer, n_rows_of(X), name=name)

    def _count(self, data: Any) -> tuple[Counter[str], Counter[str]]:
        analyze = self.transformer.build_analyzer()
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        for doc in _documents(data, self.name):
            features = analyze(doc)
            tf.update(features)
            df.update(set(features))
        return df, tf

    def _apply(self, data: Any, sign: int) -> None:
        df, tf = self._count(data)
        if self._fixed:
            df = Counter({t: n for t, n in df.items() if t in self._index})
        unknown = [t for t in df if t not in self._index]
        if sign < 0:
            idx = np.array([self._index.get(t, -1) for t in df], dtype=np.intp)
            dfs = np.array(list(df.values()), dtype=np.int64)
            tfs = np.array([tf[t] for t in df], dtype=np.int64)
            if unknown or (self._df[idx] < dfs).any() or (self._tf[idx] < tfs).any():
                raise DecrementalError(
                    f"{self.name!r}: the removed documents hold terms that were not fitted (that "
                    f"often), e.g. {preview(unknown or list(df), 5)}; remove only documents the "
                    "vectorizer was fitted on, with their text as fitted"
                )
        elif unknown:
            self._terms.extend(unknown)
            self._index.update({t: len(self._index) + i for i, t in enumerate(unknown)})
            grow = np.zeros(len(unknown), dtype=np.int64)
            self._df = np.concatenate([self._df, grow])
            self._tf = np.concatenate([self._tf, grow])
            self._order = None
        if df:
            idx = np.array([self._index[t] for t in df], dtype=np.intp)
            self._df[idx] += sign * np.array(list(df.values()), dtype=np.int64)
            self._tf[idx] += sign * np.array([tf[t] for t in df], dtype=np.int64)

    def _sorted(self) -> Array:
        if self._order is None:
            terms = np.empty(len(self._terms), dtype=object)
            terms[:] = self._terms
            self._order = np.argsort(terms, kind="stable")
        return self._order

    def _vocabulary(self, n_docs: int) -> Array:
        """Indices (into ``_terms``) of the vocabulary a refit would choose, in column order."""
        t = self.transformer
        order = self._sorted()
        present = order[self._df[order] > 0]
        if len(present) == 0:
            raise DecrementalError(
                f"{self.name!r}: no terms would be left (a refit raises 'empty vocabulary'); "
                "keep some documents with words, or drop this feature"
            )
        high = float(t.max_df if isinstance(t.max_df, Integral) else t.max_df * n_docs)
        low = float(t.min_df if isinstance(t.min_df, Integral) else t.min_df * n_docs)
        if high < low:
            raise DecrementalError(
                f"{self.name!r}: with {n_docs} documents, max_df={t.max_df!r} allows fewer "
                f"documents than min_df={t.min_df!r} (a refit raises); lower min_df"
            )
        dfs = self._df[present]
        mask = (dfs <= high) & (dfs >= low)
        if t.max_features is not None and mask.sum() > t.max_features:
            counts = dfs if t.binary else self._tf[present]
            tfs = counts.astype(_sum_dtype(t.dtype))
            mask_inds = (-tfs[mask]).argsort()[: t.max_features]
            limited = np.zeros(len(dfs), dtype=bool)
            limited[np.where(mask)[0][mask_inds]] = True
            mask = limited
        kept: Array = present[mask]
        if len(kept) == 0:
            raise DecrementalError(
                f"{self.name!r}: after pruning no terms would remain (min_df={t.min_df!r}, "
                f"max_df={t.max_df!r}); a refit raises too: lower min_df or raise max_df"
            )
        return kept

    def _state(self, n_after: int) -> dict[str, Any]:
        t = self.transformer
        kept = self._kept if self._fixed else self._vocabulary(n_after)
        state: dict[str, Any] = {"kept": kept}
        if not np.array_equal(kept, self._kept):
            terms = np.empty(len(self._terms), dtype=object)
            terms[:] = self._terms
            positions: Any = range(len(kept)) if t.max_features is None else np.arange(len(kept))
            state["vocabulary_"] = dict(zip(terms[kept].tolist(), positions, strict=True))
        if getattr(t, "use_idf", False) and hasattr(t, "_tfidf"):
            dtype = t.dtype if t.dtype in (np.float64, np.float32) else np.float64
            state["idf_"] = _idf(self._df[kept], n_after, t.smooth_idf, dtype)
        return state

    def _commit(self, state: dict[str, Any]) -> list[str]:
        changed = []
        kept = state.pop("kept")
        if "vocabulary_" in state:
            self.transformer.vocabulary_ = state["vocabulary_"]
            changed.append("vocabulary_")
        self._kept = kept
        self._prune()
        tfidf = getattr(self.transformer, "_tfidf", None)
        if tfidf is not None:
            tfidf.n_features_in_ = len(kept)
            if "idf_" in state and not np.array_equal(tfidf.idf_, state["idf_"]):
                tfidf.idf_ = state["idf_"]
                changed.append("idf_")
        return changed

    def _prune(self) -> None:
        """Forget the terms no document holds any more: a forgotten document's words must not
        survive in the tracker's state (it is stored with the model)."""
        if self._fixed:
            return
        alive = self._df > 0
        if alive.all():
            return
        position = np.cumsum(alive) - 1
        self._terms = [t for t, a in zip(self._terms, alive.tolist(), strict=True) if a]
        self._index = {term: i for i, term in enumerate(self._terms)}
        self._df, self._tf = self._df[alive], self._tf[alive]
        self._kept = position[self._kept].astype(np.intp)
        self._order = None

    def _layout(self) -> list[str] | None:
        return [self._terms[i] for i in self._kept]


def _document_frequency(X: Any) -> Array:
    X = X if sp.issparse(X) else sp.csr_array(np.asarray(X))
    if X.format == "csr":
        out: Array = np.bincount(X.indices, minlength=X.shape[1])
    else:
        out = np.diff(sp.csc_array(X).indptr)
    return out.astype(np.int64)


class TfidfTransformerTracker(ExactTracker):
    """TfidfTransformer (``use_idf``): document frequency per column and the document count."""

    _bookkeeping = frozenset()

    def __init__(self, transformer: Any, X: Any, name: str | None = None) -> None:
        dtype = X.dtype if hasattr(X, "dtype") else np.dtype(np.float64)
        self._dtype = dtype if dtype in (np.float64, np.float32) else np.dtype(np.float64)
        self._df = _document_frequency(X)
        super().__init__(transformer, n_rows_of(X), name=name)

    def _apply(self, data: Any, sign: int) -> None:
        df = self._df + sign * _document_frequency(data)
        if (df < 0).any():
            raise DecrementalError(
                f"{self.name!r}: removed rows have non-zero counts in columns that were not "
                "fitted that often; remove only rows the transformer was fitted on"
            )
        self._df = df

    def _state(self, n_after: int) -> dict[str, Any]:
        t = self.transformer
        return {"idf_": _idf(self._df, n_after, t.smooth_idf, self._dtype)}


def track_vectorizer(transformer: Any, X: Any, name: str | None) -> Decremental:
    """CountVectorizer / TfidfVectorizer: exact, stateless (fixed vocabulary) or refit."""
    n = n_rows_of(X)
    if transformer.input != "content":
        reason = f"input={transformer.input!r} (documents are read from files)"
        return RefitTracker(transformer, n, name=name, reason=reason)
    if isinstance(X, pd.DataFrame) or getattr(X, "ndim", 1) != 1:
        reason = "documents are not a 1-d column (select the text column with a string)"
        return RefitTracker(transformer, n, name=name, reason=reason)
    uses_idf = getattr(transformer, "use_idf", False)
    if transformer.fixed_vocabulary_ and not uses_idf:
        return StatelessTracker(transformer, n, name=name, reason="fixed vocabulary")
    return VectorizerTracker(transformer, X, name)


def track_tfidf_transformer(transformer: Any, X: Any, name: str | None) -> Decremental:
    n = n_rows_of(X)
    if not transformer.use_idf:
        return StatelessTracker(transformer, n, name=name, reason="use_idf=False")
    return TfidfTransformerTracker(transformer, X, name)
