"""Row and column alignment of the differential check (private to
:mod:`lester_dagster.rewrite.differential`).

Both sides arrive as float matrices (:func:`~lester_dagster.rewrite.differential.compare` codes
text through a shared vocabulary). Rows are paired by **fingerprints** that do not depend on
column order (:func:`row_views`: the sorted values of the columns whose value multisets agree,
all sorted values, the integer-valued columns only; the view pairing most rows wins), or by row
keys when given; ties inside a fingerprint group are broken by the label, then the values.
:func:`refine` re-pairs rows by the values of the tentatively paired columns (it tells apart
rows that tie under the order-free views). Columns are paired by equal content within the
tolerance (:func:`match_columns`), the same position preferred.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Alignment",
    "align_rows",
    "close",
    "digest",
    "integral",
    "match_columns",
    "pair_rows",
    "quantize",
    "refine",
    "row_views",
    "tentative_pairs",
    "ties",
]


@dataclass
class Alignment:
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    missing: np.ndarray  # original rows without a partner
    extra: np.ndarray  # rewrite rows without a partner
    columns: dict[int, int] = field(default_factory=dict)  # original column -> rewrite column
    aligned: bool = True


def quantize(matrix: np.ndarray, quantum: float) -> np.ndarray:
    q = np.round(np.nan_to_num(matrix, nan=np.inf) / quantum)
    q[~np.isfinite(q)] = np.iinfo(np.int64).max // 2
    result: np.ndarray = q.astype(np.int64)
    return result


def digest(data: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).digest()


# --- row alignment ----------------------------------------------------------------------------


def pair_rows(
    fp_a: list[bytes], fp_b: list[bytes], tie_a: list[bytes], tie_b: list[bytes]
) -> Alignment:
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
    return Alignment(
        np.asarray(pairs_a, dtype=np.int64)[order],
        np.asarray(pairs_b, dtype=np.int64)[order],
        np.asarray(sorted(missing), dtype=np.int64),
        np.asarray(extra, dtype=np.int64),
    )


def row_views(qa: np.ndarray, qb: np.ndarray) -> list[tuple[list[bytes], list[bytes]]]:
    """Column-order-independent row fingerprints, most informative view first."""
    views = []
    sig_a = [digest(np.sort(qa[:, i])) for i in range(qa.shape[1])]
    sig_b = [digest(np.sort(qb[:, j])) for j in range(qb.shape[1])]
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
            return [digest(row) for row in block]

        views.append((by_groups(qa, groups_a), by_groups(qb, groups_b)))
    views.append(
        ([digest(r) for r in np.sort(qa, axis=1)], [digest(r) for r in np.sort(qb, axis=1)])
    )
    return views


def ties(q: np.ndarray, labels: np.ndarray | None) -> list[bytes]:
    """Tie-breakers inside a fingerprint group: the row's label first (when known), then its
    sorted values."""
    rows = [digest(r) for r in np.sort(q, axis=1)]
    if labels is None or labels.size != q.shape[0]:
        return rows
    return [repr(label).encode() + b"|" + row for label, row in zip(labels.tolist(), rows)]


def align_rows(
    a: np.ndarray,
    b: np.ndarray,
    qa: np.ndarray,
    qb: np.ndarray,
    keys: tuple[Sequence[Hashable], Sequence[Hashable]] | None,
    labels: tuple[np.ndarray | None, np.ndarray | None],
) -> Alignment:
    tie_a, tie_b = ties(qa, labels[0]), ties(qb, labels[1])
    if keys is not None:
        key_a = [repr(k).encode() for k in keys[0]]
        key_b = [repr(k).encode() for k in keys[1]]
        return pair_rows(key_a, key_b, tie_a, tie_b)
    views = row_views(qa, qb)
    integral_a = [i for i in range(a.shape[1]) if integral(a[:, i])]
    integral_b = [j for j in range(b.shape[1]) if integral(b[:, j])]
    views.append(
        (
            [digest(r) for r in np.sort(qa[:, integral_a], axis=1)],
            [digest(r) for r in np.sort(qb[:, integral_b], axis=1)],
        )
    )
    best: Alignment | None = None
    for fp_a, fp_b in views:
        candidate = pair_rows(fp_a, fp_b, tie_a, tie_b)
        if best is None or candidate.pairs_a.size > best.pairs_a.size:
            best = candidate
    assert best is not None
    best.aligned = best.pairs_a.size >= 0.5 * min(a.shape[0], b.shape[0])
    return best


def integral(column: np.ndarray) -> bool:
    values = column[~np.isnan(column)]
    return bool(np.all(values == np.round(values)))


# --- column matching --------------------------------------------------------------------------


def close(x: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    result: np.ndarray = np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
    return result


def match_columns(
    pa: np.ndarray, pb: np.ndarray, quantum: float, rtol: float, atol: float
) -> dict[int, int]:
    """Original column -> rewrite column for columns equal on the aligned rows (same position
    preferred among equal candidates)."""
    qa, qb = quantize(pa, quantum), quantize(pb, quantum)
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for j in range(qb.shape[1]):
        by_digest[digest(qb[:, j])].append(j)
    used: set[int] = set()
    columns: dict[int, int] = {}
    for i in range(qa.shape[1]):
        candidates = [j for j in by_digest.get(digest(qa[:, i]), []) if j not in used]
        if i in candidates:
            candidates.remove(i)
            candidates.insert(0, i)
        for j in candidates:
            if np.all(close(pa[:, i], pb[:, j], rtol, atol)):
                columns[i] = j
                used.add(j)
                break
    # second pass: near-equal columns the quantisation split (values on a rounding boundary)
    free_b = [j for j in range(pb.shape[1]) if j not in used]
    for i in range(pa.shape[1]):
        if i in columns or not free_b:
            continue
        ok = np.all(close(pa[:, [i]], pb[:, free_b], rtol, atol), axis=0)
        if ok.any():
            j = free_b[int(np.argmax(ok))]
            columns[i] = j
            free_b.remove(j)
    return columns


def tentative_pairs(
    pa: np.ndarray, pb: np.ndarray, columns: dict[int, int], rtol: float, atol: float
) -> dict[int, int]:
    """``columns`` plus, for each unmatched original column, the free rewrite column it agrees
    with on most rows (if on at least half of them)."""
    pairs = dict(columns)
    free_b = [j for j in range(pb.shape[1]) if j not in pairs.values()]
    for i in range(pa.shape[1]):
        if i in pairs or not free_b:
            continue
        agree = close(pa[:, [i]], pb[:, free_b], rtol, atol).sum(axis=0)
        k = int(np.argmax(agree))
        if agree[k] >= 0.5 * pa.shape[0]:
            pairs[i] = free_b.pop(k)
    return pairs


def refine(
    a: np.ndarray,
    b: np.ndarray,
    qa: np.ndarray,
    qb: np.ndarray,
    alignment: Alignment,
    quantum: float,
    rtol: float,
    atol: float,
    labels: tuple[np.ndarray | None, np.ndarray | None],
) -> Alignment:
    """Re-pair rows by their values in the (tentatively) paired columns, in paired order: rows
    that tie under the order-free fingerprints (two one-hot columns with equal counts) are
    told apart. Kept only if it matches at least as many rows."""
    for _ in range(2):
        pa, pb = a[alignment.pairs_a], b[alignment.pairs_b]
        pairs = tentative_pairs(pa, pb, match_columns(pa, pb, quantum, rtol, atol), rtol, atol)
        if not pairs:
            return alignment
        cols_a = sorted(pairs)
        cols_b = [pairs[i] for i in cols_a]
        fp_a = [digest(r) for r in qa[:, cols_a]]
        fp_b = [digest(r) for r in qb[:, cols_b]]
        refined = pair_rows(fp_a, fp_b, ties(qa, labels[0]), ties(qb, labels[1]))
        if refined.pairs_a.size < alignment.pairs_a.size:
            return alignment
        if np.array_equal(refined.pairs_a, alignment.pairs_a) and np.array_equal(
            refined.pairs_b, alignment.pairs_b
        ):
            return alignment
        alignment = refined
    return alignment
