"""The ``lester-dagster`` command.

``demo``      generate the running example's data, prepare it with provenance, trace a customer
``generate``  write the running example's source files
``forget``    file a deletion request (whole records, or the values of some columns), checked
              against the source's records: ``lester-dagster forget customers 17 42``,
              ``lester-dagster forget customers a@example.org --by email``,
              ``lester-dagster forget mails 3 --columns subject``
``requests``  list the deletion requests of the ledger with their status
``trace``     every stored artifact row, X row and column, and the model that a key reaches,
              with its deletion status: ``lester-dagster trace customers 17``
``verify``    check every stored artifact against the deletions in effect (no row of a deleted
              record, deleted values missing and re-executed, with ``--model`` the model equal
              to a refit); exits 1 on a violation: ``lester-dagster verify --model``
``rewrite``   rewrite a messy script into a checked pipeline module with an LLM:
              ``lester-dagster rewrite messy.py --name NAME`` (exits 1 when the checks fail)
``bench``     the paper's Figure 4 on our system: recompute vs our IVM vs the prototype's way,
              to CSV, Markdown and a PNG plot: ``lester-dagster bench --quick``

Exit codes: 0 ok, 1 a check failed (``verify``), 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lester_dagster.errors import LesterError, RequestError
from lester_dagster.store.home import lester_home
from lester_dagster.store.requests import STATUSES, Request

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

    forget = sub.add_parser(
        "forget",
        help="file a deletion request (whole records, or only the values of some columns)",
        description="File a deletion request, checked against the source's records (the "
        "stored source asset if materialised, else the source file); prints its id. A bad "
        "request (unknown source or column, a key no record has, ...) exits 2 and files nothing.",
    )
    forget.add_argument("source", help="the source whose records to forget, e.g. customers")
    forget.add_argument(
        "keys",
        nargs="+",
        metavar="KEY",
        help="key values of the records (a composite key as a JSON list, e.g. '[\"us\", 42]'); "
        "with --by, values of that column",
    )
    forget.add_argument(
        "--columns",
        nargs="+",
        action="extend",
        default=[],
        metavar="COL",
        help="forget only the values of these columns (a value deletion); default: whole records",
    )
    forget.add_argument(
        "--by", metavar="COLUMN", help="the keys are values of this column (e.g. --by email)"
    )
    forget.add_argument("--pipeline", metavar="NAME", help="default: the only pipeline")
    forget.add_argument(
        "--package",
        default="definitions",
        help="package of the pipelines (default %(default)s)",
    )
    forget.add_argument("--ledger", metavar="URL", help="ledger database URL (default: SQLite)")
    forget.add_argument("--artifacts", metavar="DIR", help="artifact root of the stored sources")
    forget.add_argument(
        "--on-missing",
        choices=("reject", "noop"),
        default="reject",
        help="keys no record has: reject the request (default) or file the present ones "
        "(all missing: record a no-op)",
    )
    forget.add_argument("--reason", help="why the data must be forgotten (kept for the audit)")
    forget.add_argument("--requested-by", metavar="WHO", help="default: the OS user")
    forget.add_argument("--json", action="store_true", help="print the request as JSON")

    requests = sub.add_parser("requests", help="list the deletion requests and their status")
    requests.add_argument("--pipeline", metavar="NAME", help="only this pipeline's requests")
    requests.add_argument("--status", choices=STATUSES, help="only requests with this status")
    requests.add_argument("--ledger", metavar="URL", help="ledger database URL (default: SQLite)")
    requests.add_argument("--json", action="store_true", help="print the requests as JSON")

    trace = sub.add_parser(
        "trace",
        help="list every stored artifact row, X row and column, and the model a key reaches",
        description="Trace one record of a source through the stored artifacts (rows per asset "
        "and partition, X rows and the X columns holding the source's data, the model's "
        "training rows) and show its deletion status in the ledger; works before and after a "
        "deletion (after it, the record reaches nothing).",
    )
    trace.add_argument("source", help="the source of the record, e.g. customers")
    trace.add_argument(
        "key",
        metavar="KEY",
        help="the record's key (read as the key column's dtype; a composite key as a JSON list)",
    )
    verify = sub.add_parser(
        "verify",
        help="check that no stored artifact holds data of a deleted record or value",
        description="Check every stored artifact against the deletions in effect (applied and "
        "running requests): no row derives from a deleted record, deleted values are missing "
        "in the sources, rows and X rows of records with deleted values equal a re-execution; "
        "with --model also that the model equals a refit on its remaining training data. Exits "
        "0 if everything holds, 1 if anything is left behind, 2 on a usage or input error.",
    )
    verify.add_argument(
        "--model", action="store_true", help="also compare the model with a refit (expensive)"
    )
    from lester_dagster.rewrite.command import add_parser as add_rewrite_parser

    add_rewrite_parser(sub)
    from lester_dagster.bench.command import add_parser as add_bench_parser

    add_bench_parser(sub)
    for command in (trace, verify):
        command.add_argument("--pipeline", metavar="NAME", help="default: the only pipeline")
        command.add_argument(
            "--package",
            default="definitions",
            help="package of the pipelines (default %(default)s)",
        )
        command.add_argument(
            "--ledger", metavar="URL", help="ledger database URL (default: SQLite)"
        )
        command.add_argument("--artifacts", metavar="DIR", help="artifact root of the pipeline")
        command.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _generate(args: argparse.Namespace) -> int:
    from lester_dagster.examples.complaints_data import write_complaints

    started = time.perf_counter()
    paths = write_complaints(args.out, args.customers, seed=args.seed)
    took = time.perf_counter() - started
    print(f"wrote {', '.join(str(p) for p in paths)} in {took:.1f} s")
    return 0


def _parse_key(text: str) -> object:
    """A KEY argument: a JSON list for a composite key, else the text (coerced later to the
    key column's dtype)."""
    if not text.lstrip().startswith("["):
        return text
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RequestError(
            f"KEY {text!r} looks like a composite key but is not a JSON list ({exc}); write it "
            """as '["us", 42]' (one value per key column)"""
        ) from exc
    if not isinstance(value, list):
        raise RequestError(f"KEY {text!r} must be a JSON list of key values, e.g. '[\"us\", 42]'")
    return value


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        return None


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _request_json(request: Request, **extra: Any) -> dict[str, Any]:
    doc = {
        "id": request.id,
        "pipeline": request.pipeline,
        "source": request.source,
        "kind": request.kind,
        "columns": list(request.columns),
        "keys": [list(k) if isinstance(k, tuple) else k for k in request.keys],
        "requested_by": request.requested_by,
        "reason": request.reason,
        "created_at": request.created_at.isoformat(),
        "status": request.status,
        "status_reason": request.status_reason,
        "run_id": request.run_id,
        "applied_at": None if request.applied_at is None else request.applied_at.isoformat(),
        "timings": dict(request.timings),
        "verification": None if request.verification is None else dict(request.verification),
    }
    doc.update(extra)
    return doc


def _noop_reason(request: Request) -> str | None:
    check = request.verification or {}
    return str(check.get("reason", "")) if check.get("noop") else None


def _forget(args: argparse.Namespace) -> int:
    from lester_dagster.orchestration.submit import forget

    started = datetime.now(UTC)
    request = forget(
        args.source,
        [_parse_key(k) for k in args.keys],
        pipeline=args.pipeline,
        package=args.package,
        columns=args.columns,
        by=args.by,
        ledger_url=args.ledger,
        on_missing=args.on_missing,
        requested_by=args.requested_by if args.requested_by is not None else _os_user(),
        reason=args.reason,
        artifacts=args.artifacts,
    )
    duplicate = request.created_at < started
    noop = _noop_reason(request)
    if args.json:
        print(json.dumps(_request_json(request, duplicate=duplicate, noop=noop is not None)))
        return 0
    what = (
        f"forget the values of {', '.join(request.columns)} of"
        if request.kind == "value"
        else "forget"
    )
    records = f"{len(request.keys)} record(s) of {request.pipeline}.{request.source}"
    if duplicate:
        print(f"already filed as #{request.id} ({request.status}): {what} {records}")
    elif noop is not None:
        print(f"filed #{request.id} as a no-op ({request.status}): {noop}")
    else:
        print(f"filed #{request.id} ({request.status}): {what} {records}")
    return 0


def _requests(args: argparse.Namespace) -> int:
    from lester_dagster.store.ledger import Ledger, default_ledger_path

    if args.ledger is None and not default_ledger_path().exists():
        found: list[Request] = []
    else:
        with Ledger(args.ledger) as ledger:
            found = ledger.all(args.pipeline, args.status)
    if args.json:
        print(json.dumps([_request_json(r) for r in found]))
        return 0
    if not found:
        print("no deletion requests" + (f" with status {args.status}" if args.status else ""))
        return 0
    header = ("id", "pipeline", "source", "kind", "columns", "keys", "status", "created_at",
              "run", "applied_at", "reason")  # fmt: skip
    rows = []
    for r in found:
        noop = _noop_reason(r)
        rows.append((
            str(r.id), r.pipeline, r.source, r.kind, ",".join(r.columns) or "-",
            str(len(r.keys)), f"{r.status} (no-op)" if noop is not None else r.status,
            _when(r.created_at), r.run_id or "-", _when(r.applied_at),
            (noop if noop is not None else r.status_reason or "").replace("\n", " "),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0


def _located(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The pipeline, its translator and the IO manager that ``--pipeline``, ``--package`` and
    ``--artifacts`` name (default root: the package's IO manager, else the default one)."""
    from lester_dagster.orchestration.discovery import find_pipeline_and_translator
    from lester_dagster.orchestration.io_manager import LesterIOManager
    from lester_dagster.orchestration.submit import _io_manager_of

    pipeline, translator = find_pipeline_and_translator(args.pipeline, args.package)
    if args.artifacts is not None:
        manager = LesterIOManager(base_path=str(args.artifacts))
    else:
        manager = _io_manager_of(args.package) or LesterIOManager()
    return pipeline, translator, manager


def _ledger_of(args: argparse.Namespace) -> Any:
    """The ledger ``--ledger`` names; without it the default one if it exists (None: no
    ledger, so nothing is deleted; none is created)."""
    from lester_dagster.store.ledger import Ledger, default_ledger_path

    if args.ledger is None and not default_ledger_path().exists():
        return None
    return Ledger(args.ledger)


def _trace(args: argparse.Namespace) -> int:
    from lester_dagster.orchestration.trace import trace

    pipeline, translator, manager = _located(args)
    ledger = _ledger_of(args)
    try:
        report = trace(
            pipeline,
            manager,
            args.source,
            _parse_key(args.key),
            ledger=ledger,
            translator=translator,
        )
    finally:
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from lester_dagster.orchestration.verify import verify

    pipeline, translator, manager = _located(args)
    ledger = _ledger_of(args)
    try:
        report = verify(pipeline, manager, ledger, translator=translator, model=args.model)
    finally:
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 check failed, 2 usage or input error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from lester_dagster.demo import run_demo

            home = args.home if args.home is not None else lester_home() / "demo"
            return run_demo(home, customers=args.rows, seed=args.seed, out=sys.stdout)
        if args.command == "forget":
            return _forget(args)
        if args.command == "requests":
            return _requests(args)
        if args.command == "trace":
            return _trace(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "rewrite":
            from lester_dagster.rewrite.command import run as run_rewrite

            return run_rewrite(args)
        if args.command == "bench":
            from lester_dagster.bench.command import run as run_bench

            return run_bench(args)
        return _generate(args)
    except LesterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
