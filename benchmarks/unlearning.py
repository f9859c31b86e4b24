"""What forgetting training rows costs, per model family, against a full refit.

For each size n, a synthetic sparse-ish training matrix with d ~ 1000 features (a few dense
non-negative columns, a one-hot categorical with Zipf-distributed levels, hashing-like token
counts), binary labels and a regression target. Per family (Ridge, MultinomialNB,
LogisticRegression) we time

* ``refit``: scikit-learn's ``fit`` with the estimator's default parameters (for logistic
  regression that is the loose default ``tol=1e-4``, a conservative baseline: the tightly
  converged fit the unlearner maintains costs more);
* ``forget 1`` / ``forget 100``: one :meth:`Unlearner.forget` call removing 1 / 100 random rows
  (every repetition removes different rows from the same unlearner);
* for logistic regression two variants: ``newton`` (``residual_check=False``: the Newton step
  with the downdated inverse Hessian only) and ``newton+check`` (the default: plus one pass over
  X for the residual gradient, and refinement if it exceeds ``tol``).

Medians of ``--repeat`` repetitions, with BLAS / OpenMP pinned to one thread (threadpoolctl):
on a 2-core machine, competing thread pools make timings swing by 20x (ANCHORS.md).

    python benchmarks/unlearning.py [--sizes 10000 100000 1000000] [--d 1000] [--quick]
    python benchmarks/unlearning.py --affine [--sizes 1000000] [--d 1000]

Writes benchmarks/results/unlearning.csv and .md. With ``--affine`` it writes a separate table
(``unlearning_affine.csv`` / ``.md``) instead: :meth:`Unlearner.affine_columns` on one dense
column (a scale / mean change of ~1-5%, what a StandardScaler refit after a deletion does to its
output), for Ridge and for LogisticRegression with and without the residual check, against the
same refit baseline. Targets (issue 4): forgetting 1 record
<= 10 ms for the exact families and the logistic Newton step at 1M rows; 100 records <= 60 ms.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from lester_dagster.models import (  # noqa: E402
    DiscreteNBUnlearner,
    LinearUnlearner,
    LogisticUnlearner,
    Unlearner,
)

DENSE_COLUMNS = 8
CATEGORIES = 192
TOKENS_PER_ROW = 20


def make_data(n: int, d: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """Sparse CSR X (n x d), binary labels, regression target."""
    rng = np.random.default_rng(seed)
    categories = min(CATEGORIES, max(2, (d - DENSE_COLUMNS) // 5))
    hashed = d - DENSE_COLUMNS - categories
    dense = rng.random((n, DENSE_COLUMNS))
    level = np.minimum(rng.zipf(1.3, size=n) - 1, categories - 1)
    tokens = rng.integers(0, hashed, size=(n, TOKENS_PER_ROW))
    rows = np.repeat(np.arange(n), DENSE_COLUMNS + 1 + TOKENS_PER_ROW)
    cols = np.hstack(
        [
            np.broadcast_to(np.arange(DENSE_COLUMNS), (n, DENSE_COLUMNS)),
            DENSE_COLUMNS + level[:, None],
            DENSE_COLUMNS + categories + tokens,
        ]
    ).ravel()
    vals = np.hstack([dense, np.ones((n, 1)), np.ones((n, TOKENS_PER_ROW))]).ravel()
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, d))  # duplicate tokens add up: counts
    X.sum_duplicates()
    w = rng.normal(size=d) / np.sqrt(TOKENS_PER_ROW)
    score = np.asarray(X @ w).ravel()
    score -= np.median(score)
    labels = (score + rng.logistic(size=n) > 0).astype(np.int64)
    target = score + rng.normal(size=n)
    return X, labels, target


def _median_seconds(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _forget_seconds(
    unlearner: Unlearner, k: int, repeat: int, rng: np.random.Generator
) -> tuple[float, list[str]]:
    times, strategies = [], []
    for _ in range(repeat):
        rows = rng.choice(unlearner.n_rows, size=k, replace=False)
        record = unlearner.forget(rows)
        times.append(record.seconds)
        strategies.append(record.strategy)
    return statistics.median(times), sorted(set(strategies))


def bench_size(n: int, d: int, repeat: int, refit_repeat: int) -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import MultinomialNB

    X, labels, target = make_data(n, d)
    rng = np.random.default_rng(1)
    print(f"\n## n = {n:,} rows, d = {X.shape[1]}, nnz/row = {X.nnz / n:.1f}", flush=True)
    results: list[dict[str, Any]] = []
    families: list[tuple[str, Any, np.ndarray, Callable[[], Unlearner]]] = [
        ("Ridge", Ridge(), target, lambda: LinearUnlearner.fit(Ridge(), X, target)),
        ("MultinomialNB", MultinomialNB(), labels,
         lambda: DiscreteNBUnlearner.fit(MultinomialNB(), X, labels)),
        ("LogisticRegression", LogisticRegression(), labels,
         lambda: LogisticUnlearner.fit(LogisticRegression(), X, labels)),
    ]  # fmt: skip
    for name, estimator, y, build in families:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = _median_seconds(lambda e=estimator, y=y: e.fit(X, y), refit_repeat)  # type: ignore[misc]
        started = time.perf_counter()
        unlearner = build()
        setup = time.perf_counter() - started
        variants = [("", None)]
        if name == "LogisticRegression":
            variants = [(" newton", False), (" newton+check", True)]
        for suffix, check in variants:
            if check is not None:
                unlearner.residual_check = check  # type: ignore[attr-defined]
            for k in (1, 100):
                seconds, strategies = _forget_seconds(unlearner, k, repeat, rng)
                row = {
                    "n": n,
                    "d": X.shape[1],
                    "family": name + suffix,
                    "rows_forgotten": k,
                    "forget_ms": seconds * 1e3,
                    "refit_s": refit,
                    "speedup": refit / seconds,
                    "setup_s": setup,
                    "strategy": "/".join(strategies),
                }
                results.append(row)
                print(
                    f"{row['family']:<32} forget {k:>3}: {row['forget_ms']:8.2f} ms   "
                    f"refit {refit:8.2f} s   x{row['speedup']:>9,.0f}   ({row['strategy']})",
                    flush=True,
                )
    return results


def bench_affine(n: int, d: int, repeat: int, refit_repeat: int) -> list[dict[str, Any]]:
    """``affine_columns`` on one dense column, per family (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    X, labels, target = make_data(n, d)
    rng = np.random.default_rng(2)
    print(f"\n## affine_columns, n = {n:,} rows, d = {X.shape[1]}", flush=True)
    results: list[dict[str, Any]] = []
    families: list[tuple[str, Any, np.ndarray, Callable[[], Unlearner], bool | None]] = [
        ("Ridge", Ridge(), target, lambda: LinearUnlearner.fit(Ridge(), X, target), None),
        ("LogisticRegression", LogisticRegression(), labels,
         lambda: LogisticUnlearner.fit(LogisticRegression(), X, labels), False),
    ]  # fmt: skip
    for name, estimator, y, build, _ in families:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = _median_seconds(lambda e=estimator, y=y: e.fit(X, y), refit_repeat)  # type: ignore[misc]
        started = time.perf_counter()
        unlearner = build()
        setup = time.perf_counter() - started
        variants: list[tuple[str, bool | None]] = [("", None)]
        if name == "LogisticRegression":
            variants = [(" newton", False), (" newton+check", True)]
        for suffix, check in variants:
            if check is not None:
                unlearner.residual_check = check  # type: ignore[attr-defined]
            times, strategies, hessians = [], set(), 0
            for _ in range(repeat):
                column = int(rng.integers(0, DENSE_COLUMNS))
                scale, shift = rng.uniform(0.95, 1.05), rng.uniform(-0.05, 0.05)
                record = unlearner.affine_columns([column], scale, shift)
                times.append(record.seconds)
                strategies.add(record.strategy)
                hessians += int(record.detail.get("hessians_recomputed", 0))
                hessians += int(bool(record.detail.get("hessian_recomputed")))
            seconds = statistics.median(times)
            row = {
                "n": n,
                "d": X.shape[1],
                "family": name + suffix,
                "affine_ms": seconds * 1e3,
                "refit_s": refit,
                "speedup": refit / seconds,
                "setup_s": setup,
                "hessians_recomputed": hessians,
                "strategy": "/".join(sorted(strategies)),
            }
            results.append(row)
            print(
                f"{row['family']:<32} affine 1 column: {row['affine_ms']:8.2f} ms   "
                f"refit {refit:8.2f} s   x{row['speedup']:>9,.0f}   ({row['strategy']}, "
                f"{hessians} Hessians recomputed)",
                flush=True,
            )
    return results


def affine_markdown(results: list[dict[str, Any]], note: str) -> str:
    lines = [
        note,
        "",
        "| n | d | family | affine_columns, 1 column (ms) | full refit (s) | speedup | "
        "Hessians recomputed | strategy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['n']:,} | {row['d']} | {row['family']} | {row['affine_ms']:.2f} | "
            f"{row['refit_s']:.2f} | {row['speedup']:,.0f}x | {row['hessians_recomputed']} | "
            f"{row['strategy']} |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(results: list[dict[str, Any]], note: str) -> str:
    lines = [
        note,
        "",
        "| n | family | forget 1 (ms) | forget 100 (ms) | full refit (s) | speedup 1 | "
        "speedup 100 | fit for forgetting (s) | strategy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}
    for row in results:
        by_key.setdefault((row["n"], row["family"]), {})[row["rows_forgotten"]] = row
    for (n, family), rows in by_key.items():
        one, hundred = rows[1], rows[100]
        lines.append(
            f"| {n:,} | {family} | {one['forget_ms']:.2f} | {hundred['forget_ms']:.2f} | "
            f"{one['refit_s']:.2f} | {one['speedup']:,.0f}x | {hundred['speedup']:,.0f}x | "
            f"{one['setup_s']:.1f} | {one['strategy']} / {hundred['strategy']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--d", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7, help="forget() repetitions")
    parser.add_argument("--refit-repeat", type=int, default=3, help="refit repetitions")
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--affine", action="store_true", help="time affine_columns instead (separate table)"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.d, args.repeat, args.refit_repeat = [5_000, 20_000], 300, 3, 1
    note = (
        f"Threads: BLAS/OpenMP pinned to 1 (threadpoolctl). Machine: {platform.machine()}, "
        f"Python {platform.python_version()}. Medians of {args.repeat} "
        f"{'affine_columns()' if args.affine else 'forget()'} calls and "
        f"{args.refit_repeat} refits; refit = scikit-learn fit with default parameters."
    )
    print(note)
    results: list[dict[str, Any]] = []
    bench = bench_affine if args.affine else bench_size
    with threadpool_limits(limits=1):
        for n in args.sizes:
            results.extend(bench(n, args.d, args.repeat, args.refit_repeat))
    table = (affine_markdown if args.affine else to_markdown)(results, note)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "unlearning_quick" if args.quick else "unlearning"
    if args.affine:
        stem += "_affine"
    with open(args.out / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    (args.out / f"{stem}.md").write_text(table)


if __name__ == "__main__":
    main()
