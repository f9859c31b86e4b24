"""LLM rewrite: an imperative data-science script becomes a checked, declarative pipeline
module (``definitions/<name>.py``).

The rewrite talks to any OpenAI-compatible server, refuses generated code that fails a static
allow-list check, runs it in a time- and memory-limited subprocess on sample data, and compares
its artifacts with the original script's (the differential check) before anything is written.
It depends only on the frame's public API (import-linter contract).

::

    from lester_dagster.rewrite import LLMClient, rewrite_script

    report = rewrite_script("messy.py", "complaint_mails", data_dir="data/complaint_mails",
                            client=LLMClient(model="qwen2.5-coder",
                                             base_url="http://localhost:8000/v1"))
    print(report.to_markdown())

The public names are imported on first use (``import lester_dagster.rewrite`` stays cheap for
the command line; the client pulls in ``openai``, the job ``dagster``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lester_dagster.rewrite.capture import Captured, capture_script
    from lester_dagster.rewrite.client import Completion, LLMClient
    from lester_dagster.rewrite.describe import DataDescription, describe_data
    from lester_dagster.rewrite.differential import Diff, compare
    from lester_dagster.rewrite.job import rewrite_definitions, rewrite_job
    from lester_dagster.rewrite.module import check_target, read_header
    from lester_dagster.rewrite.parse import extract_code
    from lester_dagster.rewrite.prompts import (
        PROMPT_VERSION,
        prompt_digest,
        repair_messages,
        rewrite_messages,
    )
    from lester_dagster.rewrite.report import RewriteReport, StageResult
    from lester_dagster.rewrite.rewrite import rewrite_script
    from lester_dagster.rewrite.sandbox import SandboxResult, run_python
    from lester_dagster.rewrite.validate import Violation, check_code, validate

__all__ = [
    "PROMPT_VERSION",
    "Captured",
    "Completion",
    "DataDescription",
    "Diff",
    "LLMClient",
    "RewriteReport",
    "SandboxResult",
    "StageResult",
    "Violation",
    "capture_script",
    "check_code",
    "check_target",
    "compare",
    "describe_data",
    "extract_code",
    "prompt_digest",
    "read_header",
    "repair_messages",
    "rewrite_definitions",
    "rewrite_job",
    "rewrite_messages",
    "rewrite_script",
    "run_python",
    "validate",
]

_WHERE = {
    "Captured": "capture",
    "capture_script": "capture",
    "Completion": "client",
    "LLMClient": "client",
    "DataDescription": "describe",
    "describe_data": "describe",
    "Diff": "differential",
    "compare": "differential",
    "rewrite_definitions": "job",
    "rewrite_job": "job",
    "check_target": "module",
    "read_header": "module",
    "extract_code": "parse",
    "PROMPT_VERSION": "prompts",
    "prompt_digest": "prompts",
    "repair_messages": "prompts",
    "rewrite_messages": "prompts",
    "RewriteReport": "report",
    "StageResult": "report",
    "rewrite_script": "rewrite",
    "SandboxResult": "sandbox",
    "run_python": "sandbox",
    "Violation": "validate",
    "check_code": "validate",
    "validate": "validate",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(
            f"module 'lester_dagster.rewrite' has no attribute {name!r}; its public names: "
            f"{', '.join(__all__)}"
        )
    value = getattr(importlib.import_module(f"lester_dagster.rewrite.{module}"), name)
    globals()[name] = value
    return value
