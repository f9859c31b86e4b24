"""``lester-dagster demo``: the running example end to end, with a lineage trace.

For now (the frame issue) the demo generates the data, runs the preparation with provenance and
traces one customer: which prepared rows it reaches and which source columns feed each output
column. Later issues add features, model, Dagster assets and forgetting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from lester_dagster.examples.complaints import prepare
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.frame import Result

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
    result = prepared.execute()
    took = time.perf_counter() - started
    sizes = ", ".join(f"{name} {table.rows:,}" for name, table in result.sources.items())
    print(f"  prepared {len(result):,} rows from {sizes} records in {took:.2f} s", file=out)
    print("\nplan:", file=out)
    for line in prepared.explain().splitlines():
        print("  " + line, file=out)

    customer = pick_customer(result)
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
    return 0 if ok else 1
