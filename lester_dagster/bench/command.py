"""``lester-dagster bench``: the paper's Figure 4 on our system (and ``benchmarks/figure4.py``).

    lester-dagster bench [--customers 10000 100000 1000000] [--repeat 5] [--partitions 0]
        [--batch 100] [--quick] [--out benchmarks/results] [--data-cache DIR]

Per size, in one process: the full recompute (through Dagster, and in memory), our IVM of one
customer, a batch of customers and one mail subject (durably written) and through the Dagster
sensor path, the prototype-style baseline on the same requests, and the distances of both to a
recompute on the remaining data (:mod:`lester_dagster.bench.runner`). Writes ``figure4.csv``,
``figure4.md`` and ``figure4.png`` (``figure4_quick.*`` with ``--quick``) into ``--out``.
BLAS/OpenMP are pinned to one thread; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CUSTOMERS",
    "DESCRIPTION",
    "MIN_CUSTOMERS",
    "QUICK",
    "BenchConfig",
    "add_parser",
    "config_of",
    "main",
    "run",
    "run_benchmark",
]

DEFAULT_CUSTOMERS = (10_000, 100_000, 1_000_000)
MIN_CUSTOMERS = 300
QUICK = {"customers": (400, 800), "repeat": 1, "batch": 5}
DESCRIPTION = (
    "The paper's Figure 4 on our system. Per size, in one process: the full recompute "
    "(through Dagster, and in memory), our IVM of one customer, a batch of customers and one "
    "mail subject (durably written) and through the Dagster sensor path, the prototype-style "
    "baseline on the same requests (rows dropped / values zeroed, encoder statistics kept, one "
    "gradient step), and the distances of both to a recompute on the remaining data. Writes "
    "figure4.csv, figure4.md and figure4.png (figure4_quick.* with --quick) into --out; the "
    "PNG needs the bench extra (matplotlib). BLAS/OpenMP pinned to one thread; progress on "
    "stderr."
)


@dataclass(frozen=True)
class BenchConfig:
    customers: tuple[int, ...]
    repeat: int
    partitions: int
    batch: int
    out: Path
    data_cache: Path | None
    quick: bool

    @property
    def stem(self) -> str:
        return "figure4_quick" if self.quick else "figure4"


def _integer(text: str, what: str, minimum: int, hint: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} must be an integer >= {minimum}, got {text!r}{hint}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}{hint}")
    return value


def _customers(text: str) -> int:
    return _integer(
        text.replace("_", ""),
        "a size",
        MIN_CUSTOMERS,
        f" (valid: {MIN_CUSTOMERS} customers or more, e.g. --customers 10000 100000; fewer "
        "leave too few training customers to delete)",
    )


def _repeat(text: str) -> int:
    return _integer(text, "--repeat", 1, " (valid: 1 or more repetitions per measurement)")


def _partitions(text: str) -> int:
    return _integer(text, "--partitions", 0, " (valid: 0 = unpartitioned, or N >= 1 buckets)")


def _batch(text: str) -> int:
    return _integer(text, "--batch", 1, " (valid: 1 or more customers in the batch request)")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``bench`` sub-command on ``sub`` (an argparse sub-parsers object)."""
    bench = sub.add_parser(
        "bench",
        help="the IVM-vs-recompute benchmark (the paper's Figure 4), beside the prototype's way",
        description=DESCRIPTION,
    )
    add_arguments(bench)
    return bench  # type: ignore[no-any-return]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customers", type=_customers, nargs="+", default=list(DEFAULT_CUSTOMERS),
        metavar="N", help="sizes to run (customers, 3 mails each); default 10000 100000 1000000",
    )  # fmt: skip
    parser.add_argument("--repeat", type=_repeat, default=5, help="repetitions (default 5)")
    parser.add_argument(
        "--partitions", type=_partitions, default=0,
        help="0: unpartitioned store (default); N: N key-hash buckets",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=_batch, default=100, help="customers in the batch request (default 100)"
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"tiny run for CI: {QUICK['customers']} customers, one repetition, batch of "
        f"{QUICK['batch']} (seconds; the figures mean nothing)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks") / "results",
        help="directory for figure4.csv/.md/.png (default benchmarks/results)",
    )  # fmt: skip
    parser.add_argument(
        "--data-cache", type=Path, default=None, metavar="DIR",
        help="reuse generated csv files here (stamped with the generator's hash)",
    )  # fmt: skip


def config_of(args: argparse.Namespace) -> BenchConfig:
    """The run's configuration; raises ValueError naming a bad value and the valid ones."""
    customers = tuple(args.customers)
    repeat, batch = args.repeat, args.batch
    if args.quick:
        customers, repeat, batch = QUICK["customers"], QUICK["repeat"], QUICK["batch"]  # type: ignore[assignment]
    twice = sorted({c for c in customers if customers.count(c) > 1})
    if twice:
        raise ValueError(f"--customers lists {twice} more than once; give each size once")
    for name, path in (("--out", args.out), ("--data-cache", args.data_cache)):
        if path is not None and path.exists() and not path.is_dir():
            raise ValueError(f"{name} {path} is a file; give a directory (it is created if new)")
    return BenchConfig(
        tuple(sorted(customers)), repeat, args.partitions, batch, args.out, args.data_cache,
        args.quick,
    )  # fmt: skip


def run_benchmark(config: BenchConfig) -> list[Path]:
    """Measure every size of ``config`` and write the outputs; returns the files written."""
    from lester_dagster.bench.measure import code_version, machine, pinned_threads, progress
    from lester_dagster.bench.report import rows_of, write_outputs
    from lester_dagster.bench.runner import run_size

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "code": code_version()}
    saved = {k: os.environ.get(k) for k in ("LESTER_HOME", "DAGSTER_HOME")}
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="lester-bench-") as tmp, pinned_threads():
            root = Path(tmp)
            os.environ["LESTER_HOME"] = str(root / "lester_home")  # never the user's home
            os.environ.pop("DAGSTER_HOME", None)
            for customers in config.customers:
                run = run_size(
                    customers, repeat=config.repeat, batch=config.batch,
                    partitions=config.partitions, root=root, data_cache=config.data_cache,
                )  # fmt: skip
                rows.extend(rows_of(run, meta))
                written = write_outputs(rows, config.out, config.stem)  # after every size
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    progress("wrote " + ", ".join(str(p) for p in written))
    return written


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: exit 0 with the outputs written, 2 on a bad argument."""
    try:
        config = config_of(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        written = run_benchmark(config)
    except ValueError as exc:  # a size too small for the requests, found while running
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((config.out / f"{config.stem}.md").read_text())
    print("files: " + ", ".join(str(p) for p in written))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``benchmarks/figure4.py``: the same as ``lester-dagster bench``."""
    parser = argparse.ArgumentParser(prog="figure4.py", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
