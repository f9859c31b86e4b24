"""The ``lester-dagster`` command.

``demo``      generate the running example's data, prepare it with provenance, trace a customer
``generate``  write the running example's source files
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lester_dagster.errors import LesterError
from lester_dagster.store.home import lester_home

__all__ = ["main"]

EXAMPLES = ("complaints",)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lester-dagster",
        description="Declarative ML pipelines with provenance and fast, provable forgetting.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the running example end to end and show its lineage")
    demo.add_argument("--rows", type=_positive, default=2000, help="customers to generate")
    demo.add_argument("--home", type=Path, default=None, help="working directory of the demo")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data generator")

    gen = sub.add_parser("generate", help="write an example's source files")
    gen.add_argument("example", choices=EXAMPLES)
    gen.add_argument("--customers", type=_positive, default=10_000)
    gen.add_argument("--out", type=Path, required=True, help="directory to write the csv files to")
    gen.add_argument("--seed", type=int, default=0)
    return parser


def _generate(args: argparse.Namespace) -> int:
    from lester_dagster.examples.complaints_data import write_complaints

    started = time.perf_counter()
    paths = write_complaints(args.out, args.customers, seed=args.seed)
    took = time.perf_counter() - started
    print(f"wrote {', '.join(str(p) for p in paths)} in {took:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 check failed, 2 usage or input error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from lester_dagster.demo import run_demo

            home = args.home if args.home is not None else lester_home() / "demo"
            return run_demo(home, customers=args.rows, seed=args.seed, out=sys.stdout)
        return _generate(args)
    except LesterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
