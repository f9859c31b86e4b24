"""Paired comparison of two versions of the code on the same store: deletion requests applied
by an older commit (``--base``) and by this checkout, alternating, on fresh copies of one
materialised store.

On a shared machine the time of one request moves by 10-30% from one hour to the next, more
than most single changes gain; runs of the two versions side by side, in the same minutes,
on the same data and the same keys, show the change itself. Each round runs every request
of ``--requests`` with one version, then with the other, each in a process of its own on its
own copy of the store. The first request of a process (cold: what a deletion run's own
process does) is reported apart from the others. Both
versions must read the store this checkout materialises (same artifact format).

    OPENBLAS_NUM_THREADS=1 python benchmarks/forget_paired.py --base 91e1d5d \\
        --customers 1000000 --partitions 16 --rounds 3 --requests 1 1 1 1 b v v

Requests: ``1`` one training customer, ``b`` a batch of 100 customers, ``v`` one mail subject
(value deletion). Prints (and writes to ``--out``) the medians of both versions per request
and their ratio (base / this checkout: > 1 means this checkout is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = {"1": "1 customer", "b": "100 customers, one batch", "v": "1 mail subject (value)"}


# -- worker (runs inside one version's checkout) --------------------------------------------------
def _bench(code: Path, customers: int, partitions: int, data_cache: Path, work: Path) -> Any:
    sys.path.insert(0, str(code / "benchmarks"))
    import forget_durable  # the version's own benchmark module (and its lester_dagster)

    data = forget_durable.data_directory(customers, work.parent, data_cache)
    return forget_durable.Bench(customers, partitions, data, work)


def _worker(args: argparse.Namespace) -> None:
    store = Path(args.store)
    if args.worker == "materialise":
        bench = _bench(HERE.parent, args.customers, args.partitions, args.data_cache, store)
        seconds = bench.materialise()
        import numpy as np

        pool, mails = bench.keys(np.random.default_rng(0))
        (store / "keys.json").write_text(json.dumps({"pool": pool, "mails": mails}))
        print(json.dumps({"materialise_s": seconds}), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="paired-", dir=store.parent))
    try:
        shutil.copytree(store, work, dirs_exist_ok=True)
        bench = _bench(Path(args.code), args.customers, args.partitions, args.data_cache, work)
        from lester_dagster.orchestration.io_manager import LesterIOManager

        bench.io = LesterIOManager(base_path=str(bench.store))
        keys = json.loads((work / "keys.json").read_text())
        pool, mails = iter(keys["pool"]), iter(keys["mails"])
        for kind in args.requests:
            if kind == "v":
                sample = bench.apply(kind, "mails", [[next(mails)]], value=True)
            else:
                size = 100 if kind == "b" else 1
                sample = bench.apply(kind, "customers", [[next(pool)] for _ in range(size)],
                                     value=False)  # fmt: skip
            print(json.dumps({"kind": kind, "ms": sample.seconds * 1000}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- driver ---------------------------------------------------------------------------------------
def _run(args: list[str], code: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    done = subprocess.run(
        [sys.executable, str(HERE / "forget_paired.py"), *args, "--code", str(code)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({code}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _checkout(rev: str, root: Path) -> Path:
    target = root / f"base-{rev}"
    subprocess.run(
        ["git", "-C", str(HERE.parent), "worktree", "add", "--detach", "-f", str(target), rev],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the older commit to compare with (git revision)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", nargs="+", default=["1", "1", "1", "1", "b", "v", "v"])
    parser.add_argument("--data-cache", type=Path, default=Path(tempfile.gettempdir()) / "lester")
    parser.add_argument("--out", type=Path, help="write the Markdown table here too")
    parser.add_argument("--worker", choices=["materialise", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if not args.base:
        parser.error("--base REV is required (the commit to compare this checkout with)")
    bad = [k for k in args.requests if k not in KINDS]
    if bad:
        parser.error(f"unknown request kind(s) {bad}; use {sorted(KINDS)}")
    root = Path(tempfile.mkdtemp(prefix="forget-paired-"))
    try:
        base = _checkout(args.base, root)
        store = root / "store"
        common = ["--customers", str(args.customers), "--partitions", str(args.partitions),
                  "--data-cache", str(args.data_cache), "--store", str(store)]  # fmt: skip
        print(f"materialising {args.customers:,} customers, partitions={args.partitions} ...",
              flush=True)  # fmt: skip
        _run(["--worker", "materialise", *common], HERE.parent)
        sides = {args.base: base, "this checkout": HERE.parent}
        times: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
        for r in range(args.rounds):
            for side, code in sides.items():
                lines = _run(["--worker", "run", *common, "--requests", *args.requests], code)
                for i, line in enumerate(lines):  # the first request of a process is cold
                    kind = f"cold {line['kind']}" if i == 0 else line["kind"]
                    times[side].setdefault(kind, []).append(line["ms"])
                shown = ", ".join(f"{x['kind']} {x['ms']:.0f}" for x in lines)
                print(f"round {r + 1} {side}: {shown} ms", flush=True)
        table = _table(args, times)
        print(table)
        if args.out:
            args.out.write_text(table)
    finally:
        checkout = str(root / f"base-{args.base}")
        subprocess.run(
            ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", checkout],
            capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _table(args: argparse.Namespace, times: dict[str, dict[str, list[float]]]) -> str:
    sys.path.insert(0, str(HERE.parent))
    from lester_dagster.bench.measure import code_version

    old, new = times[args.base], times["this checkout"]
    rows = [
        f"Paired runs, {time.strftime('%Y-%m-%d')}, this checkout = {code_version()}: "
        f"{args.customers:,} customers, "
        f"partitions={args.partitions}, {args.rounds} round(s); medians in ms (the first "
        "request of each process, which a Dagster run's process makes, apart); ratio = base / "
        "this checkout.",
        "",
        f"| request | {args.base} | this checkout | ratio | samples |",
        "|---|---|---|---|---|",
    ]
    labels = {**KINDS, **{f"cold {k}": f"{v}, first in a fresh process" for k, v in KINDS.items()}}
    for kind, label in labels.items():
        if not old.get(kind) or not new.get(kind):
            continue
        a, b = statistics.median(old[kind]), statistics.median(new[kind])
        rows.append(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {len(old[kind])} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
