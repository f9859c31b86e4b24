"""``lester-dagster rewrite``: the command line of the rewrite (wired into ``lester_dagster.cli``).

::

    lester-dagster rewrite messy.py --name NAME [--data DIR] [--model M] [--base-url URL]
        [--api-key-env VAR] [--attempts N] [--force] [--out DIR] [--report FILE]
        [--timeout S] [--memory-mb MB]

Progress lines go to stderr, the result line to stdout. ``--report FILE`` writes the rewrite
report (JSON if FILE ends in ``.json``, else Markdown), also when the rewrite failed.
Exit codes: 0 the module was written; 1 no attempt passed the checks (nothing written);
2 bad input (a missing script or data directory, a bad name, a hand-edited target without
``--force``, an original script that fails on its data, an LLM server that cannot be used).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "add_parser", "run"]

DEFAULT_MODEL = "gpt-4o-mini"
"""The model when neither ``--model`` nor ``$LESTER_REWRITE_MODEL`` names one."""
MODEL_ENV = "LESTER_REWRITE_MODEL"
"""The environment variable holding the default model name."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value:g}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``rewrite`` subcommand to ``sub`` (``parser.add_subparsers()``)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "rewrite",
        help="rewrite a messy script into a checked pipeline module with an LLM",
        description="Rewrite an imperative data-science script into definitions/NAME.py, a "
        "declarative pipeline module, with an OpenAI-compatible LLM. The code is checked "
        "before it is written: static allow-list, a sandboxed run on the sample data, and a "
        "differential check against the original script run on the same data; a failed "
        "check goes back to the model in a repair prompt. Exits 0 when the module was "
        "written, 1 when no attempt passed the checks, 2 on bad input.",
    )
    parser.add_argument("script", type=Path, help="the script to rewrite (run as SCRIPT DATA_DIR)")
    parser.add_argument(
        "--name", required=True, help="pipeline name: definitions/NAME.py, group, key prefix"
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="the sample data: the script's input files (default: data/NAME, where the module "
        "reads them)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"model name (default ${MODEL_ENV}, else {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), "
        "http://localhost:11434/v1 (Ollama) (default $OPENAI_BASE_URL, else OpenAI)",
    )
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default %(default)s; unset: none sent)",
    )
    parser.add_argument("--attempts", type=_positive, default=3, help="requests at most (3)")
    parser.add_argument(
        "--force", action="store_true", help="overwrite a hand-written or hand-edited module"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("definitions"), metavar="DIR", help="module folder"
    )
    parser.add_argument(
        "--report", type=Path, metavar="FILE", help="write the report (.json: JSON, else Markdown)"
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=300.0, help="seconds per sandboxed run (300)"
    )
    parser.add_argument(
        "--memory-mb", type=_positive, default=2048, help="memory per sandboxed run (2048)"
    )
    return parser


def _write_report(path: Path | None, report: Any) -> None:
    if path is None or report is None:
        return
    text = report.to_json() if path.suffix.lower() == ".json" else report.to_markdown()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"report: {path}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the ``rewrite`` subcommand; returns the exit code."""
    import pydantic

    from lester_dagster.errors import GeneratedCodeError, RewriteCheckError, RewriteError
    from lester_dagster.rewrite.client import LLMClient
    from lester_dagster.rewrite.rewrite import module_data_dir, rewrite_script

    model = args.model if args.model is not None else os.environ.get(MODEL_ENV, DEFAULT_MODEL)
    try:
        client = LLMClient(model=model, base_url=args.base_url, api_key_env=args.api_key_env)
    except pydantic.ValidationError as error:
        problems = "; ".join(e["msg"] for e in error.errors())
        print(f"error: {problems}", file=sys.stderr)
        return 2
    data = args.data if args.data is not None else Path(module_data_dir(args.name))

    def progress(line: str) -> None:
        print(f"[rewrite] {line}", file=sys.stderr, flush=True)

    try:
        report = rewrite_script(
            args.script,
            args.name,
            data_dir=data,
            client=client,
            out_dir=args.out,
            attempts=args.attempts,
            force=args.force,
            timeout=args.timeout,
            memory_mb=args.memory_mb,
            progress=progress,
        )
    except (GeneratedCodeError, RewriteCheckError) as error:
        _write_report(args.report, error.report)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except RewriteError as error:
        _write_report(args.report, error.report)
        print(f"error: {error}", file=sys.stderr)
        return 2
    _write_report(args.report, report)
    repairs = len(report.attempts) - 1
    print(
        f"wrote {report.module} ({len(report.attempts)} attempt(s), {repairs} repair(s), "
        f"{report.prompt_tokens} + {report.completion_tokens} tokens); "
        "reload the code location to see its assets"
    )
    for limitation in report.limitations:
        print(f"warning: {limitation}", file=sys.stderr)
    return 0
