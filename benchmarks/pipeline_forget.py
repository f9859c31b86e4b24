"""Forgetting customers in the running example's training side, against retraining it.

For each size (customers; 3 mails each) the benchmark prepares the running example once (the
frame, with provenance), splits it, and then times, in one process:

* ``retrain``: what a user does today after a deletion: fit the ColumnTransformer on the
  training rows, encode, compute labels and fit the model with scikit-learn defaults;
* ``fit for forgetting``: :meth:`TrainingState.fit` (tightly converged model plus the
  statistics forgetting needs), paid once;
* ``forget 1`` / ``forget 100``: :meth:`TrainingState.forget` of 1 / 100 random customers:
  encoder downdates, re-encoded blocks, X/y rows, model update. Every repetition forgets other
  customers from the same state.

BLAS/OpenMP pinned to one thread (threadpoolctl). Preparation (VADER dominates it) is not
part of either side: it is the frame's job and is benchmarked in frame_overhead.py.

    python benchmarks/pipeline_forget.py [--customers 10000 100000] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _retrain(train: Any) -> float:
    from sklearn.base import clone

    from lester_dagster.examples.complaints import feature_encoding, label, model
    from lester_dagster.features.matrix import encode_labels, fit_encode

    started = time.perf_counter()
    _, features = fit_encode(feature_encoding(), train)
    y = encode_labels(label, train).y
    clone(model()).fit(features.X, y)
    return time.perf_counter() - started


def _size(customers: int, repeat: int, data_root: Path) -> list[dict[str, Any]]:
    from lester_dagster.examples.complaints import feature_encoding, label, model, prepare
    from lester_dagster.examples.complaints_data import write_complaints
    from lester_dagster.ivm.training import TrainingState

    paths = write_complaints(data_root / f"c{customers}", customers)
    train_frame, _ = prepare(*paths).split(by="customers", test_fraction=0.2, seed=0)
    train = train_frame.execute()
    retrain = statistics.median(_retrain(train) for _ in range(max(1, repeat // 2)))
    started = time.perf_counter()
    state = TrainingState.fit(train, feature_encoding(), label, model())
    fit_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 100):
        times, strategies = [], set()
        for _ in range(repeat):
            pool = state.frame["customer_id"].drop_duplicates().to_numpy()
            chosen = rng.choice(pool, size=min(batch, len(pool) - 1), replace=False).tolist()
            began = time.perf_counter()  # wall time: key lookup + every update
            update = state.forget("customers", chosen)
            times.append(time.perf_counter() - began)
            strategies.add("/".join(sorted(set(update.strategies.values()))))
        med = statistics.median(times)
        rows.append({
            "customers": customers, "train_rows": len(train), "X_columns": state.X.shape[1],
            "forget_customers": batch, "forget_ms": round(med * 1000, 2),
            "min_ms": round(min(times) * 1000, 2), "max_ms": round(max(times) * 1000, 2),
            "retrain_s": round(retrain, 3), "speedup": round(retrain / med, 1),
            "fit_for_forgetting_s": round(fit_seconds, 2),
            "strategies": " | ".join(sorted(strategies)),
        })  # fmt: skip
        print(f"  {customers:>9,} customers, forget {batch:>3}: {med * 1000:8.2f} ms "
              f"(retrain {retrain:.2f} s, {retrain / med:,.0f}x)", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.repeat = [2_000], 2
    from threadpoolctl import threadpool_limits

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        for customers in args.customers:
            rows.extend(_size(customers, args.repeat, Path(tmp)))
    stem = "pipeline_forget_quick" if args.quick else "pipeline_forget"
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Running example, training side; python {sys.version.split()[0]}, 1 BLAS thread, "
        f"median of {args.repeat} forgets (min-max).",
        "",
        "| customers | train rows | X columns | forget | time ms (min-max) | retrain s "
        "| speedup | fit for forgetting s | strategies |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['customers']:,} | {r['train_rows']:,} | {r['X_columns']:,} "
            f"| {r['forget_customers']} | {r['forget_ms']} ({r['min_ms']}-{r['max_ms']}) "
            f"| {r['retrain_s']} | {r['speedup']:,}x | {r['fit_for_forgetting_s']} "
            f"| {r['strategies']} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
