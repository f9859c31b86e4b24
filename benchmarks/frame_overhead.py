"""What provenance costs: the running example's preparation, plain pandas vs the frame.

Each measurement runs in a fresh subprocess (so its peak RSS is its own) with BLAS/OpenMP pinned
to one thread; repetitions alternate the two variants so machine noise hits both alike. We
report medians (min-max) and the ratios frame / pandas, for the full preparation (with VADER
sentiment, as in the paper) and for the relational part alone (without sentiment).

    python benchmarks/frame_overhead.py --mails 1000000 --repeat 3

Target (issue 3): provenance costs at most 1.5x the plain-pandas time and 1.5x its peak memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAILS_PER_CUSTOMER = 3


def _child(variant: str, data: Path, sentiment: bool) -> None:
    """Run one variant once and print its figures as JSON (called in a subprocess)."""
    import pandas as pd

    from lester_dagster.examples.complaints import prepare, prepare_pandas

    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if variant == "pandas":
        customers = pd.read_csv(data / "customers.csv")
        mails = pd.read_csv(data / "mails.csv")
        rows = len(prepare_pandas(customers, mails, with_sentiment=sentiment))
    else:
        result = prepare(
            data / "customers.csv", data / "mails.csv", with_sentiment=sentiment
        ).execute()
        rows = len(result)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_kib": peak, "import_kib": baseline_rss,
                      "rows": rows}))  # fmt: skip


def _measure(variant: str, data: Path, sentiment: bool) -> dict[str, float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", variant, "--data", str(data)]
    if not sentiment:
        cmd.append("--no-sentiment")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="reuse generated data")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", choices=["pandas", "frame"], help=argparse.SUPPRESS)
    parser.add_argument("--no-sentiment", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.data, not args.no_sentiment)
        return

    from lester_dagster.examples.complaints_data import write_complaints

    data = args.data or Path(tempfile.mkdtemp(prefix="lester-bench-"))
    if not (data / "mails.csv").exists():
        customers = max(1, args.mails // MAILS_PER_CUSTOMER)
        print(
            f"generating {customers:,} customers / {args.mails:,} mails in {data} ...", flush=True
        )
        write_complaints(data, customers, mails_per_customer=MAILS_PER_CUSTOMER)

    rows: list[dict[str, object]] = []
    for sentiment in (True, False):
        label = "with sentiment" if sentiment else "relational only"
        runs: dict[str, list[dict[str, float]]] = {"pandas": [], "frame": []}
        for i in range(args.repeat):
            for variant in ("pandas", "frame") if i % 2 == 0 else ("frame", "pandas"):
                fig = _measure(variant, data, sentiment)
                runs[variant].append(fig)
                print(f"  {label:<16} {variant:<6} run {i + 1}: {fig['seconds']:.2f} s, "
                      f"peak {fig['peak_kib'] / 2**20:.2f} GiB", flush=True)  # fmt: skip
        med = {v: statistics.median(r["seconds"] for r in runs[v]) for v in runs}
        mem = {v: statistics.median(r["peak_kib"] for r in runs[v]) for v in runs}
        for variant in ("pandas", "frame"):
            secs = [r["seconds"] for r in runs[variant]]
            rows.append({
                "preparation": label, "variant": variant, "output_rows": runs[variant][0]["rows"],
                "median_s": round(med[variant], 3), "min_s": round(min(secs), 3),
                "max_s": round(max(secs), 3), "peak_rss_gib": round(mem[variant] / 2**20, 3),
                "time_ratio": round(med[variant] / med["pandas"], 3),
                "memory_ratio": round(mem[variant] / mem["pandas"], 3),
            })  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "frame_overhead.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = ("| preparation | variant | output rows | median s (min-max) | peak RSS GiB "
              "| time ratio | memory ratio |")  # fmt: skip
    lines = [
        f"Running example preparation on {args.mails:,} mails, {args.repeat} runs each "
        f"(python {sys.version.split()[0]}, 1 BLAS thread):",
        "",
        header,
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preparation']} | {r['variant']} | {r['output_rows']:,} | {r['median_s']} "
            f"({r['min_s']}-{r['max_s']}) | {r['peak_rss_gib']} | {r['time_ratio']}x "
            f"| {r['memory_ratio']}x |"
        )
    table = "\n".join(lines)
    (args.out / "frame_overhead.md").write_text(table + "\n")
    print("\n" + table)


if __name__ == "__main__":
    main()
