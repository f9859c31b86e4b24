"""The differential check: does the rewritten pipeline compute what the original script did?

:func:`compare` takes the original's captured artifacts (a
:class:`~lester_dagster.rewrite.capture.Captured` or a mapping) and the rewrite's, and compares
``X_train`` / ``X_test`` (dense, sparse or DataFrame), ``y_train`` / ``y_test`` and ``model``
(plus any other table both hold, e.g. a prepared output table):

* **up to row order**: rows are matched by content (or by row keys when given): each row gets a
  fingerprint that does not depend on column order (its sorted values, or its values in the
  columns whose value multisets agree, or its integer-valued columns only; the view matching
  most rows wins); unmatched rows are *missing* (original only) or *extra* (rewrite only);
* **up to column order**: on the matched rows, columns are paired by equal content, within
  ``rtol`` / ``atol``; a column left over is reported with its closest counterpart (in how
  many rows they differ, an example row, the largest difference, value ranges and a hint);
* ``y`` through the same row pairing; the model by its predictions (``predict_proba`` within
  ``model_atol``, labels agreeing on at least ``min_agreement`` of the rows) and its class.

The :class:`Diff` report is plain text meant for people and for the LLM's repair prompt: it
names the artifact, the shapes, the columns (index in the original) and rows that differ, with
concrete numbers.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lester_dagster.rewrite.capture import Captured, ModelSummary

__all__ = ["ArtifactDiff", "Diff", "compare"]

_MAX_LISTED = 5
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class ArtifactDiff:
    """The comparison of one artifact: ``ok`` and the report lines (problems, then notes)."""

    name: str
    ok: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diff:
    """The result of :func:`compare`: ``ok`` when every artifact agrees, and ``report``, a
    concrete, human- and LLM-readable account of every difference."""

    ok: bool
    artifacts: tuple[ArtifactDiff, ...] = field(default=())

    @property
    def report(self) -> str:
        if not self.artifacts:
            return "nothing to compare"
        head = (
            "the rewrite computes the same artifacts as the original"
            if self.ok
            else "the rewrite differs from the original script:"
        )
        lines = [head]
        for artifact in self.artifacts:
            status = "ok" if artifact.ok else "DIFFERS"
            lines.append(f"- {artifact.name}: {status}")
            lines.extend(f"    {line}" for line in artifact.problems)
            lines.extend(f"    (note) {line}" for line in artifact.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report


@dataclass
class _Alignment:
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    missing: np.ndarray  # original rows without a partner
    extra: np.ndarray  # rewrite rows without a partner
    columns: dict[int, int] = field(default_factory=dict)  # original column -> rewrite column
    aligned: bool = True


# --- conversion -------------------------------------------------------------------------------


def _values(source: Captured | Mapping[str, Any]) -> Mapping[str, Any]:
    return source.values if isinstance(source, Captured) else source


def _matrices(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Both sides as float matrices (text columns coded through one shared vocabulary)."""
    import pandas as pd
    import scipy.sparse

    def frame(value: Any) -> pd.DataFrame:
        if scipy.sparse.issparse(value):
            value = value.toarray()
        if isinstance(value, pd.Series):
            value = value.to_frame()
        if not isinstance(value, pd.DataFrame):
            array = np.asarray(value)
            value = pd.DataFrame(array.reshape(len(array), -1) if array.ndim != 2 else array)
        result: pd.DataFrame = value.reset_index(drop=True)
        return result

    fa, fb = frame(a), frame(b)
    texts = [s for f in (fa, fb) for c in f.columns if not _numeric(f[c]) for s in f[c].astype(str)]
    vocabulary = {text: float(i) for i, text in enumerate(sorted(set(texts)))}

    def matrix(f: pd.DataFrame) -> np.ndarray:
        columns = [
            f[c].to_numpy(dtype=float, na_value=np.nan)
            if _numeric(f[c])
            else f[c].astype(str).map(vocabulary).to_numpy(dtype=float)
            for c in f.columns
        ]
        return np.column_stack(columns) if columns else np.zeros((len(f), 0))

    return matrix(fa), matrix(fb), [str(c) for c in fa.columns], [str(c) for c in fb.columns]


def _numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _quantize(matrix: np.ndarray, quantum: float) -> np.ndarray:
    q = np.round(np.nan_to_num(matrix, nan=np.inf) / quantum)
    q[~np.isfinite(q)] = np.iinfo(np.int64).max // 2
    result: np.ndarray = q.astype(np.int64)
    return result


def _digest(data: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).digest()


# --- row alignment ----------------------------------------------------------------------------


def _pair(
    fp_a: list[bytes], fp_b: list[bytes], tie_a: list[bytes], tie_b: list[bytes]
) -> _Alignment:
    groups_b: dict[bytes, list[int]] = defaultdict(list)
    for index, fp in enumerate(fp_b):
        groups_b[fp].append(index)
    groups_a: dict[bytes, list[int]] = defaultdict(list)
    for index, fp in enumerate(fp_a):
        groups_a[fp].append(index)
    pairs_a, pairs_b, missing = [], [], []
    for fp, rows_a in groups_a.items():
        rows_b = sorted(groups_b.pop(fp, []), key=lambda r: (tie_b[r], r))
        rows_a = sorted(rows_a, key=lambda r: (tie_a[r], r))
        pairs_a.extend(rows_a[: len(rows_b)])
        pairs_b.extend(rows_b[: len(rows_a)])
        missing.extend(rows_a[len(rows_b) :])
        groups_b[fp] = rows_b[len(rows_a) :]
    extra = sorted(r for rows in groups_b.values() for r in rows)
    order = np.argsort(pairs_a, kind="stable")
    return _Alignment(
        np.asarray(pairs_a, dtype=np.int64)[order],
        np.asarray(pairs_b, dtype=np.int64)[order],
        np.asarray(sorted(missing), dtype=np.int64),
        np.asarray(extra, dtype=np.int64),
    )


def _row_views(qa: np.ndarray, qb: np.ndarray) -> list[tuple[list[bytes], list[bytes]]]:
    """Column-order-independent row fingerprints, most informative view first."""
    views = []
    sig_a = [_digest(np.sort(qa[:, i])) for i in range(qa.shape[1])]
    sig_b = [_digest(np.sort(qb[:, j])) for j in range(qb.shape[1])]
    groups_a: dict[bytes, list[int]] = defaultdict(list)
    groups_b: dict[bytes, list[int]] = defaultdict(list)
    for i, s in enumerate(sig_a):
        groups_a[s].append(i)
    for j, s in enumerate(sig_b):
        groups_b[s].append(j)
    shared = sorted(s for s in groups_a if len(groups_b.get(s, ())) == len(groups_a[s]))
    if shared:

        def by_groups(q: np.ndarray, groups: Mapping[bytes, list[int]]) -> list[bytes]:
            parts = [np.sort(q[:, groups[s]], axis=1) for s in shared]
            block = np.hstack(parts)
            return [_digest(row) for row in block]

        views.append((by_groups(qa, groups_a), by_groups(qb, groups_b)))
    views.append(
        ([_digest(r) for r in np.sort(qa, axis=1)], [_digest(r) for r in np.sort(qb, axis=1)])
    )
    return views


def _ties(q: np.ndarray, labels: np.ndarray | None) -> list[bytes]:
    """Tie-breakers inside a fingerprint group: the row's label first (when known), then its
    sorted values."""
    rows = [_digest(r) for r in np.sort(q, axis=1)]
    if labels is None or labels.size != q.shape[0]:
        return rows
    return [repr(label).encode() + b"|" + row for label, row in zip(labels.tolist(), rows)]


def _align_rows(
    a: np.ndarray,
    b: np.ndarray,
    qa: np.ndarray,
    qb: np.ndarray,
    keys: tuple[Sequence[Hashable], Sequence[Hashable]] | None,
    labels: tuple[np.ndarray | None, np.ndarray | None],
) -> _Alignment:
    tie_a, tie_b = _ties(qa, labels[0]), _ties(qb, labels[1])
    if keys is not None:
        key_a = [repr(k).encode() for k in keys[0]]
        key_b = [repr(k).encode() for k in keys[1]]
        return _pair(key_a, key_b, tie_a, tie_b)
    views = _row_views(qa, qb)
    integral_a = [i for i in range(a.shape[1]) if _integral(a[:, i])]
    integral_b = [j for j in range(b.shape[1]) if _integral(b[:, j])]
    views.append(
        (
            [_digest(r) for r in np.sort(qa[:, integral_a], axis=1)],
            [_digest(r) for r in np.sort(qb[:, integral_b], axis=1)],
        )
    )
    best: _Alignment | None = None
    for fp_a, fp_b in views:
        candidate = _pair(fp_a, fp_b, tie_a, tie_b)
        if best is None or candidate.pairs_a.size > best.pairs_a.size:
            best = candidate
    assert best is not None
    best.aligned = best.pairs_a.size >= 0.5 * min(a.shape[0], b.shape[0])
    return best


def _integral(column: np.ndarray) -> bool:
    values = column[~np.isnan(column)]
    return bool(np.all(values == np.round(values)))


# --- column matching --------------------------------------------------------------------------


def _close(x: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    result: np.ndarray = np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
    return result


def _match_columns(
    pa: np.ndarray, pb: np.ndarray, quantum: float, rtol: float, atol: float
) -> dict[int, int]:
    """Original column -> rewrite column for columns equal on the aligned rows (same position
    preferred among equal candidates)."""
    qa, qb = _quantize(pa, quantum), _quantize(pb, quantum)
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for j in range(qb.shape[1]):
        by_digest[_digest(qb[:, j])].append(j)
    used: set[int] = set()
    columns: dict[int, int] = {}
    for i in range(qa.shape[1]):
        candidates = [j for j in by_digest.get(_digest(qa[:, i]), []) if j not in used]
        if i in candidates:
            candidates.remove(i)
            candidates.insert(0, i)
        for j in candidates:
            if np.all(_close(pa[:, i], pb[:, j], rtol, atol)):
                columns[i] = j
                used.add(j)
                break
    # second pass: near-equal columns the quantisation split (values on a rounding boundary)
    free_b = [j for j in range(pb.shape[1]) if j not in used]
    for i in range(pa.shape[1]):
        if i in columns or not free_b:
            continue
        ok = np.all(_close(pa[:, [i]], pb[:, free_b], rtol, atol), axis=0)
        if ok.any():
            j = free_b[int(np.argmax(ok))]
            columns[i] = j
            free_b.remove(j)
    return columns


def _tentative_pairs(
    pa: np.ndarray, pb: np.ndarray, columns: dict[int, int], rtol: float, atol: float
) -> dict[int, int]:
    """``columns`` plus, for each unmatched original column, the free rewrite column it agrees
    with on most rows (if on at least half of them)."""
    pairs = dict(columns)
    free_b = [j for j in range(pb.shape[1]) if j not in pairs.values()]
    for i in range(pa.shape[1]):
        if i in pairs or not free_b:
            continue
        agree = _close(pa[:, [i]], pb[:, free_b], rtol, atol).sum(axis=0)
        k = int(np.argmax(agree))
        if agree[k] >= 0.5 * pa.shape[0]:
            pairs[i] = free_b.pop(k)
    return pairs


def _refine(
    a: np.ndarray,
    b: np.ndarray,
    qa: np.ndarray,
    qb: np.ndarray,
    alignment: _Alignment,
    quantum: float,
    rtol: float,
    atol: float,
    labels: tuple[np.ndarray | None, np.ndarray | None],
) -> _Alignment:
    """Re-pair rows by their values in the (tentatively) paired columns, in paired order: rows
    that tie under the order-free fingerprints (two one-hot columns with equal counts) are
    told apart. Kept only if it matches at least as many rows."""
    for _ in range(2):
        pa, pb = a[alignment.pairs_a], b[alignment.pairs_b]
        pairs = _tentative_pairs(pa, pb, _match_columns(pa, pb, quantum, rtol, atol), rtol, atol)
        if not pairs:
            return alignment
        cols_a = sorted(pairs)
        cols_b = [pairs[i] for i in cols_a]
        fp_a = [_digest(r) for r in qa[:, cols_a]]
        fp_b = [_digest(r) for r in qb[:, cols_b]]
        refined = _pair(fp_a, fp_b, _ties(qa, labels[0]), _ties(qb, labels[1]))
        if refined.pairs_a.size < alignment.pairs_a.size:
            return alignment
        if np.array_equal(refined.pairs_a, alignment.pairs_a) and np.array_equal(
            refined.pairs_b, alignment.pairs_b
        ):
            return alignment
        alignment = refined
    return alignment


# --- describing values ------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if np.isnan(value):
        return "nan"
    if value == round(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _describe_column(column: np.ndarray) -> str:
    values = column[~np.isnan(column)]
    if values.size == 0:
        return "all missing"
    distinct = np.unique(values)
    if distinct.size <= 2 and set(distinct.tolist()) <= {0.0, 1.0}:
        return f"0/1 indicator, {int(values.sum())} ones"
    kind = "integers" if _integral(values) else "values"
    return f"{kind} {_fmt(values.min())}..{_fmt(values.max())}, mean {_fmt(values.mean())}"


def _hint(x: np.ndarray, y: np.ndarray) -> str:
    """A guess at how two differing columns relate (affine, a constant factor, ...)."""
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return ""
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.abs(y - (slope * x + intercept)).max()
    if residual <= 1e-6 * max(1.0, np.abs(y).max()):
        return (
            f"the rewrite is an exact linear function of the original (rewrite = "
            f"{_fmt(slope)} * original + {_fmt(intercept)}): the same feature, scaled or "
            "standardised with other statistics (other rows? another formula?)"
        )
    correlation = float(np.corrcoef(x, y)[0, 1])
    text = f"correlation {correlation:.2f}"
    if _integral(x) and _integral(y) and (x > 0).all() and (y > 0).all():
        ratio = float(np.median(y / x))
        text += f"; the rewrite is typically {_fmt(ratio)} times the original"
        if ratio > 3:
            text += " (counting characters instead of words?)"
        elif ratio < 1 / 3:
            text += " (counting words instead of characters?)"
    return text


def _rows_text(rows: np.ndarray, side: str, matrix: np.ndarray) -> str:
    tail = ", ..." if matrix.shape[1] > 8 else ""
    shown = ", ".join(
        f"row {int(r)} [{', '.join(_fmt(v) for v in matrix[r, :8])}{tail}]"
        for r in rows[:_MAX_LISTED]
    )
    more = f" (and {rows.size - _MAX_LISTED} more)" if rows.size > _MAX_LISTED else ""
    return f"{side} {shown}{more}"


# --- artifacts --------------------------------------------------------------------------------


def _compare_matrix(
    name: str,
    a_value: Any,
    b_value: Any,
    rtol: float,
    atol: float,
    keys: tuple[Sequence[Hashable], Sequence[Hashable]] | None,
    labels: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> tuple[ArtifactDiff, _Alignment]:
    a, b, names_a, _ = _matrices(a_value, b_value)
    problems: list[str] = []
    notes: list[str] = []
    (n, d), (m, e) = a.shape, b.shape
    if (n, d) != (m, e):
        problems.append(
            f"shape differs: the original has {n} rows x {d} columns, the rewrite {m} x {e}"
        )
    scale = max(np.nanmax(np.abs(a), initial=0.0), np.nanmax(np.abs(b), initial=0.0), 1.0)
    quantum = max(10 * atol, 1e-7 * scale)
    qa, qb = _quantize(a, quantum), _quantize(b, quantum)
    alignment = _align_rows(a, b, qa, qb, keys, labels)
    if not alignment.aligned:
        problems.append(
            f"the rows could not be matched by content: only {alignment.pairs_a.size} of {n} "
            f"original rows have a counterpart in the rewrite ({m} rows); the values differ "
            "almost everywhere (compare the preparation and every feature)"
        )
    if keys is None and alignment.pairs_a.size:
        alignment = _refine(a, b, qa, qb, alignment, quantum, rtol, atol, labels)
    if alignment.missing.size:
        problems.append(
            f"{alignment.missing.size} of {n} original rows have no equal row in the rewrite "
            "(missing; rows filtered out or changed): "
            + _rows_text(alignment.missing, "original", a)
        )
    if alignment.extra.size:
        problems.append(
            f"{alignment.extra.size} of {m} rewrite rows match no original row (extra; rows "
            f"the original drops, or changed): {_rows_text(alignment.extra, 'rewrite', b)}"
        )
    pa, pb = a[alignment.pairs_a], b[alignment.pairs_b]
    columns = _match_columns(pa, pb, quantum, rtol, atol) if pa.shape[0] else {}
    alignment.columns = columns
    free_b = [j for j in range(e) if j not in columns.values()]
    listed = 0
    for i in range(d):
        if i in columns:
            continue
        listed += 1
        if listed > 10:
            continue
        label = f" ({names_a[i]!r})" if names_a[i] != str(i) else ""
        text = (
            f"column {i}{label} of the original ({_describe_column(a[:, i])}) matches no column "
            "of the rewrite"
        )
        if free_b and pa.shape[0]:
            differing = (~_close(pa[:, [i]], pb[:, free_b], rtol, atol)).sum(axis=0)
            j = free_b[int(np.argmin(differing))]
            bad = np.flatnonzero(~_close(pa[:, i], pb[:, j], rtol, atol))
            row = bad[0]
            delta = np.abs(pa[:, i] - pb[:, j])
            text += (
                f"; the closest rewrite column {j} ({_describe_column(b[:, j])}) differs in "
                f"{bad.size} of {pa.shape[0]} matched rows, e.g. original row "
                f"{int(alignment.pairs_a[row])}: {_fmt(pa[row, i])} vs {_fmt(pb[row, j])} "
                f"(rewrite row {int(alignment.pairs_b[row])}); max abs difference "
                f"{_fmt(float(np.nanmax(delta, initial=0.0)))}"
            )
            hint = _hint(pa[:, i], pb[:, j])
            if hint:
                text += f"; {hint}"
        problems.append(text)
    if listed > 10:
        problems.append(f"... and {listed - 10} more original columns match no rewrite column")
    extra_columns = free_b
    if len(extra_columns) > d - len(columns):
        shown = ", ".join(f"{j} ({_describe_column(b[:, j])})" for j in extra_columns[:_MAX_LISTED])
        problems.append(
            f"{len(extra_columns)} rewrite columns match no original column, e.g. {shown}"
        )
    if columns:
        moved = sum(1 for i, j in columns.items() if i != j)
        deltas = [
            float(np.nanmax(np.abs(pa[:, i] - pb[:, j]), initial=0.0)) for i, j in columns.items()
        ]
        notes.append(
            f"{len(columns)} of {d} columns equal on {pa.shape[0]} matched rows "
            f"({moved} at another position), max abs difference {_fmt(max(deltas))}"
        )
    if alignment.pairs_a.size and np.any(alignment.pairs_a != alignment.pairs_b):
        notes.append("the rows are in another order (allowed)")
    return ArtifactDiff(name, not problems, tuple(problems), tuple(notes)), alignment


def _compare_labels(
    name: str, a_value: Any, b_value: Any, alignment: _Alignment | None
) -> ArtifactDiff:
    ya, yb = np.asarray(a_value).ravel(), np.asarray(b_value).ravel()
    problems: list[str] = []
    if ya.size != yb.size:
        problems.append(f"length differs: the original has {ya.size} labels, the rewrite {yb.size}")
    classes_a, classes_b = set(np.unique(ya).tolist()), set(np.unique(yb).tolist())
    if classes_a != classes_b:
        problems.append(
            f"label values differ: original {sorted(classes_a, key=str)}, rewrite "
            f"{sorted(classes_b, key=str)}"
        )
    if alignment is not None:
        rows_a, rows_b = alignment.pairs_a, alignment.pairs_b
    else:
        rows_a = rows_b = np.arange(min(ya.size, yb.size))
    inside = (rows_a < ya.size) & (rows_b < yb.size)
    rows_a, rows_b = rows_a[inside], rows_b[inside]
    same = ya[rows_a] == yb[rows_b]
    if (~same).any():
        bad = np.flatnonzero(~same)
        examples = "; ".join(
            f"original row {int(rows_a[k])}: {ya[rows_a[k]]} vs {yb[rows_b[k]]}"
            for k in bad[:_MAX_LISTED]
        )
        problems.append(
            f"{bad.size} of {same.size} matched rows have another label ({examples}); "
            f"positives: original {int(np.sum(ya[rows_a] == 1))}, "
            f"rewrite {int(np.sum(yb[rows_b] == 1))}"
        )
    return ArtifactDiff(name, not problems, tuple(problems))


def _model_output(
    model: Any, method: str, matrix_name: str, values: Mapping[str, Any]
) -> np.ndarray | None:
    if isinstance(model, ModelSummary):
        return model.arrays.get(f"{method}.{matrix_name}")
    function = getattr(model, method, None)
    if callable(function) and matrix_name in values:
        try:
            return np.asarray(function(values[matrix_name]))
        except Exception:
            return None
    return None


def _class_name(model: Any) -> str:
    if isinstance(model, ModelSummary):
        return model.class_name.rsplit(".", 1)[-1]
    return type(model).__name__


def _compare_model(
    a_values: Mapping[str, Any],
    b_values: Mapping[str, Any],
    alignments: Mapping[str, _Alignment],
    model_atol: float,
    min_agreement: float,
) -> ArtifactDiff:
    a_model, b_model = a_values["model"], b_values["model"]
    problems: list[str] = []
    notes: list[str] = []
    if _class_name(a_model) != _class_name(b_model):
        problems.append(
            f"another estimator: the original fits {_class_name(a_model)}, the "
            f"rewrite {_class_name(b_model)}"
        )
    if isinstance(b_model, ModelSummary) and not b_model.fitted:
        problems.append("the rewrite's model is not fitted")
    for matrix_name, alignment in alignments.items():
        rows_a, rows_b = alignment.pairs_a, alignment.pairs_b
        proba_a = _model_output(a_model, "predict_proba", matrix_name, a_values)
        proba_b = _model_output(b_model, "predict_proba", matrix_name, b_values)
        if proba_a is not None and proba_b is not None and proba_a.shape[1:] == proba_b.shape[1:]:
            delta = np.abs(proba_a[rows_a] - proba_b[rows_b])
            worst = float(delta.max(initial=0.0))
            if worst > model_atol:
                k = int(np.argmax(delta.max(axis=1)))
                problems.append(
                    f"predicted probabilities on {matrix_name} differ by up to {_fmt(worst)} "
                    f"(tolerance {model_atol:g}), e.g. original row {int(rows_a[k])}: "
                    f"{_fmt(proba_a[rows_a[k]].max())} vs {_fmt(proba_b[rows_b[k]].max())}"
                )
            else:
                notes.append(f"probabilities on {matrix_name} agree within {_fmt(worst)}")
        pred_a = _model_output(a_model, "predict", matrix_name, a_values)
        pred_b = _model_output(b_model, "predict", matrix_name, b_values)
        if pred_a is None or pred_b is None:
            notes.append(f"no predictions on {matrix_name} to compare")
            continue
        if rows_a.size:
            agree = float(np.mean(pred_a[rows_a] == pred_b[rows_b]))
            if agree < min_agreement:
                problems.append(
                    f"predictions on {matrix_name} agree on only {agree:.1%} of "
                    f"{rows_a.size} matched rows (need {min_agreement:.0%})"
                )
    return ArtifactDiff("model", not problems, tuple(problems), tuple(notes))


def compare(
    original: Captured | Mapping[str, Any],
    rewritten: Captured | Mapping[str, Any],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    model_atol: float = 1e-3,
    min_agreement: float = 0.98,
    row_keys: Mapping[str, tuple[Sequence[Hashable], Sequence[Hashable]]] | None = None,
    names: Sequence[str] | None = None,
) -> Diff:
    """Compare the original script's artifacts with the rewrite's (see the module docstring).

    ``original`` / ``rewritten``: name -> value (``X_train``, ``y_train``, ``model``,
    ``X_test``, ``y_test``; other names both hold are compared as tables). ``rtol`` / ``atol``:
    the float tolerance of matrix values; ``model_atol``: of predicted probabilities;
    ``min_agreement``: the share of matched rows on which predicted labels must agree.
    ``row_keys``: optional row keys per split (``{"train": (original keys, rewrite keys)}``)
    used instead of content to match rows of ``X_<split>`` / ``y_<split>``. ``names``: compare
    only these artifacts (default: every name the original holds). Every artifact of the
    original missing from the rewrite is a difference.
    """
    for label, value in (("rtol", rtol), ("atol", atol), ("model_atol", model_atol)):
        if not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{label} must be a non-negative number, got {value!r}")
    if not 0 <= min_agreement <= 1:
        raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
    a_values, b_values = _values(original), _values(rewritten)
    wanted = list(names) if names is not None else list(a_values)
    artifacts: list[ArtifactDiff] = []
    alignments: dict[str, _Alignment] = {}
    for name in wanted:
        if name not in a_values:
            raise KeyError(f"{name!r} is not among the original's artifacts {sorted(a_values)}")
        if name not in b_values:
            artifacts.append(
                ArtifactDiff(
                    name,
                    False,
                    (f"the rewrite does not produce {name!r}; it produces {sorted(b_values)}",),
                )
            )
    present = [n for n in wanted if n in b_values]
    for name in present:
        if name == "model" or (name.startswith("y_") and f"X_{name[2:]}" in present):
            continue
        if name.startswith("y_"):
            artifacts.append(_compare_labels(name, a_values[name], b_values[name], None))
            continue
        split = name[2:] if name.startswith("X_") else ""
        keys = (row_keys or {}).get(split)
        y_name = f"y_{split}"
        labels = (
            (np.asarray(a_values[y_name]).ravel(), np.asarray(b_values[y_name]).ravel())
            if split and y_name in present
            else (None, None)
        )
        artifact, alignment = _compare_matrix(
            name, a_values[name], b_values[name], rtol, atol, keys, labels
        )
        artifacts.append(artifact)
        if name.startswith("X_"):
            alignments[name] = alignment
            if y_name in present:
                artifacts.append(
                    _compare_labels(y_name, a_values[y_name], b_values[y_name], alignment)
                )
    if "model" in present:
        artifacts.append(_compare_model(a_values, b_values, alignments, model_atol, min_agreement))
    return Diff(all(a.ok for a in artifacts), tuple(artifacts))
