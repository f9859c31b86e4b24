"""``lester-dagster demo``: the running example end to end, with a lineage trace.

The demo generates the data, runs the preparation with provenance, traces one customer (which
prepared rows it reaches, which source columns feed each output column), trains the model,
forgets the customer through IVM and checks the result against a full recompute without it.
Later issues move this onto Dagster assets with a deletion ledger and sensor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import pandas as pd

from lester_dagster.examples.complaints import LABEL_INPUTS, feature_encoding, label, model, prepare
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.features.matrix import encode_labels, fit_encode
from lester_dagster.frame import Result, execute
from lester_dagster.ivm.oracle import compare_with_recompute
from lester_dagster.ivm.training import TrainingState

__all__ = ["pick_customer", "run_demo", "trace_lines"]


def pick_customer(result: Result) -> int:
    """The customer that reaches the most prepared rows (smallest id among ties)."""
    if len(result) == 0:
        raise ValueError("the prepared data is empty: generate more rows (--rows)")
    counts = result.to_pandas()["customer_id"].value_counts()
    best = counts[counts == counts.max()].index.min()
    return int(best)


def trace_lines(result: Result, source: str, key: object) -> list[str]:
    """A readable lineage trace of one source record through ``result``."""
    rows = result.lineage.forward(source, [key])
    data = result.to_pandas()
    lines = [f"{source} {key!r} reaches {len(rows)} prepared row(s):"]
    for r in rows:
        rec = data.iloc[r]
        title = str(rec["title"])[:38]
        lines.append(
            f"  row {r:>5}: mail {rec['mail_id']:>7}  {rec['date']}  {title!r:<42} "
            f"sentiment {float(rec['sentiment']):+.2f}"
        )
        lines.append(f"             provenance {result.lineage.polynomial(r)}")
    lines.append("output column <- source columns:")
    width = max(len(c) for c in result.columns)
    for column in result.columns:
        refs = sorted(str(ref) for ref in result.lineage.columns(column))
        lines.append(f"  {column:<{width}} <- {', '.join(refs) or '(constant)'}")
    return lines


def run_demo(home: Path, *, customers: int, seed: int, out: TextIO) -> int:
    """Run the demo in ``home``; returns the exit code (0 when every check passed)."""
    data_dir = Path(home) / "data"
    print(f"lester-dagster demo: running example with {customers:,} customers in {home}", file=out)
    started = time.perf_counter()
    customers_csv, mails_csv = write_complaints(data_dir, customers, seed=seed)
    print(f"  generated {customers_csv.name} and {mails_csv.name} in "
          f"{time.perf_counter() - started:.2f} s", file=out)  # fmt: skip

    started = time.perf_counter()
    prepared = prepare(customers_csv, mails_csv)
    train_frame, _ = prepared.split(by="customers", test_fraction=0.2, seed=seed)
    result, train = execute(prepared, train_frame)
    took = time.perf_counter() - started
    sizes = ", ".join(f"{name} {table.rows:,}" for name, table in result.sources.items())
    print(f"  prepared {len(result):,} rows from {sizes} records in {took:.2f} s", file=out)
    print("\nplan:", file=out)
    for line in prepared.explain().splitlines():
        print("  " + line, file=out)

    customer = pick_customer(train)
    print("\nlineage trace:", file=out)
    for line in trace_lines(result, "customers", customer):
        print("  " + line, file=out)

    # self-check: every row the customer reaches really derives from it, and no other row does
    reached = set(result.lineage.forward("customers", [customer]))
    from_customer = {
        r for r in range(len(result)) if customer in result.lineage.backward(r).get("customers", [])
    }
    ok = reached == from_customer and len(reached) > 0
    print(f"\nlineage check (forward == backward for customer {customer}): "
          f"{'ok' if ok else 'FAILED'}", file=out)  # fmt: skip
    ok = _forget(train, customer, customers_csv, mails_csv, Path(home), seed, out) and ok
    print(f"\nverification: {'ok' if ok else 'FAILED'}", file=out)
    return 0 if ok else 1


def _retrain_seconds(train: Result) -> float:
    started = time.perf_counter()
    _, features = fit_encode(feature_encoding(), train)
    model().fit(features.X, encode_labels(label, train).y)
    return time.perf_counter() - started


def _forget(
    train: Result, customer: int, customers_csv: Path, mails_csv: Path, home: Path, seed: int,
    out: TextIO,
) -> bool:  # fmt: skip
    """Train, forget ``customer`` through IVM, and compare with a recompute without it."""
    print(f"\ntraining on {len(train):,} rows (80% split by customer key) ...", file=out)
    state = TrainingState.fit(train, feature_encoding(), label, model(), label_inputs=LABEL_INPUTS)
    retrain = _retrain_seconds(train)
    old = {k: v.copy() for k, v in state.unlearner.parameters(state.model).items()}
    update = state.forget("customers", [customer])
    print(f"forgot customer {customer}: {update.rows_removed} training row(s) in "
          f"{update.seconds * 1000:.1f} ms (retraining takes {retrain * 1000:.0f} ms, "
          f"{retrain / update.seconds:,.0f}x)", file=out)  # fmt: skip
    for record in update.records:
        print(f"  {record.component:<32} {record.strategy:<14} {record.seconds * 1000:7.2f} ms",
              file=out)  # fmt: skip
    recompute_dir = home / "recompute"
    recompute_dir.mkdir(parents=True, exist_ok=True)
    customers = pd.read_csv(customers_csv)
    customers[customers["customer_id"] != customer].to_csv(
        recompute_dir / "customers.csv", index=False
    )
    recomputed_frame, _ = prepare(recompute_dir / "customers.csv", mails_csv).split(
        by="customers", test_fraction=0.2, seed=seed
    )
    report = compare_with_recompute(
        state, recomputed_frame.execute(), feature_encoding(), old_parameters=old
    )
    print("against a full recompute without the customer:", file=out)
    for line in report.lines():
        print("  " + line, file=out)
    gone = not state.frame["customer_id"].eq(customer).any() and not len(
        state.rows_of("customers", [customer])
    )
    print(f"  customer {customer} left in the training data: {'no' if gone else 'YES'}", file=out)
    return report.ok and gone
