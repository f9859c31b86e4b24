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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lester_dagster.rewrite._align import (
    Alignment,
    align_rows,
    close,
    integral,
    match_columns,
    quantize,
    refine,
)
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
    kind = "integers" if integral(values) else "values"
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
    if integral(x) and integral(y) and (x > 0).all() and (y > 0).all():
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
) -> tuple[ArtifactDiff, Alignment]:
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
    qa, qb = quantize(a, quantum), quantize(b, quantum)
    alignment = align_rows(a, b, qa, qb, keys, labels)
    if not alignment.aligned:
        problems.append(
            f"the rows could not be matched by content: only {alignment.pairs_a.size} of {n} "
            f"original rows have a counterpart in the rewrite ({m} rows); the values differ "
            "almost everywhere (compare the preparation and every feature)"
        )
    if keys is None and alignment.pairs_a.size:
        alignment = refine(a, b, qa, qb, alignment, quantum, rtol, atol, labels)
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
    columns = match_columns(pa, pb, quantum, rtol, atol) if pa.shape[0] else {}
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
            differing = (~close(pa[:, [i]], pb[:, free_b], rtol, atol)).sum(axis=0)
            j = free_b[int(np.argmin(differing))]
            bad = np.flatnonzero(~close(pa[:, i], pb[:, j], rtol, atol))
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
    name: str, a_value: Any, b_value: Any, alignment: Alignment | None
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
    alignments: Mapping[str, Alignment],
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
    alignments: dict[str, Alignment] = {}
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
