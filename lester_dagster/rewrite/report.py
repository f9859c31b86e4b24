"""The rewrite report: per stage its runs, time, tokens and check results; Markdown and JSON.

A rewrite goes through the stages of :data:`STAGES`. Those of the first row run once
(``data``: describe the sample data, ``original``: run the script on it, ``write``); the others
run once per attempt (``llm``: the request, ``parse``: the code block, ``static``: the
allow-list check, ``execution``: the module in the sandbox, ``differential``: its artifacts
against the original's). :class:`RewriteReport` collects a :class:`StageResult` for each run;
:meth:`RewriteReport.stage_table` sums them up per stage, :meth:`~RewriteReport.to_markdown`
and :meth:`~RewriteReport.to_json` render the whole report (the CLI's ``--report FILE``, the
Dagster op's metadata, the README's example).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ATTEMPT_STAGES", "STAGES", "AttemptReport", "RewriteReport", "StageResult"]

STAGES = ("data", "llm", "parse", "static", "execution", "original", "differential", "write")
"""Every stage, in the order the report lists them."""
ATTEMPT_STAGES = ("llm", "parse", "static", "execution", "differential")
"""The stages that run once per attempt."""

_TITLES = {
    "data": "sample data described",
    "llm": "LLM request",
    "parse": "code block parsed",
    "static": "static check",
    "execution": "execution (sandbox)",
    "original": "original script run",
    "differential": "differential check",
    "write": "module written",
}


@dataclass
class StageResult:
    """One run of a stage: ``ok``, ``seconds``, a one-line ``summary`` and, on a failure, the
    ``details`` that the repair prompt receives; the LLM stage also its tokens and requests."""

    stage: str
    ok: bool
    seconds: float
    summary: str
    details: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    requests: int | None = None


@dataclass
class AttemptReport:
    """One attempt: the stages it ran (it stops at the first failure)."""

    number: int
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            bool(self.stages)
            and all(s.ok for s in self.stages)
            and len(self.stages) == len(ATTEMPT_STAGES)
        )

    @property
    def failure(self) -> StageResult | None:
        """The stage that failed, if any."""
        return next((s for s in self.stages if not s.ok), None)


@dataclass
class RewriteReport:
    """Everything a rewrite did (see the module docstring)."""

    script: str
    name: str
    module: str
    model: str
    base_url: str
    prompt_version: str
    prompt_digest: str
    started: str
    data_dir: str = ""
    seconds: float = 0.0
    written: bool = False
    stages: list[StageResult] = field(default_factory=list)  # data, original, write
    attempts: list[AttemptReport] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    udfs: list[str] = field(default_factory=list)
    error: str = ""

    # -- totals --------------------------------------------------------------------------------
    def runs(self, stage: str) -> list[tuple[int | None, StageResult]]:
        """Every run of ``stage`` with its attempt number (``None`` for the once-only ones)."""
        found: list[tuple[int | None, StageResult]] = [
            (None, s) for s in self.stages if s.stage == stage
        ]
        for attempt in self.attempts:
            found += [(attempt.number, s) for s in attempt.stages if s.stage == stage]
        return found

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens or 0 for _, s in self.runs("llm"))

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens or 0 for _, s in self.runs("llm"))

    @property
    def outcome(self) -> str:
        if self.written:
            return "written"
        return "failed" if self.error else "running"

    def check_results(self) -> str:
        """One line: each check stage with its result in the last attempt."""
        last = self.attempts[-1] if self.attempts else None
        parts = []
        for stage in ("parse", "static", "execution", "differential"):
            result = next((s for s in last.stages if s.stage == stage), None) if last else None
            parts.append(f"{stage} {'not run' if result is None else result.summary}")
        return "; ".join(parts)

    def stage_table(self) -> list[dict[str, Any]]:
        """Per stage: runs, seconds, tokens (LLM only) and the results by attempt."""
        rows = []
        for stage in STAGES:
            runs = self.runs(stage)
            if not runs:
                rows.append({"stage": stage, "runs": 0, "seconds": 0.0, "tokens": None,
                             "result": "not run"})  # fmt: skip
                continue
            tokens = None
            if stage == "llm":
                prompt = sum(s.prompt_tokens or 0 for _, s in runs)
                done = sum(s.completion_tokens or 0 for _, s in runs)
                tokens = {"prompt": prompt, "completion": done}
            results = []
            for number, result in runs:
                where = (
                    f"attempt {number}: " if number is not None and len(self.attempts) > 1 else ""
                )
                results.append(where + ("" if result.ok else "FAILED: ") + result.summary)
            rows.append(
                {
                    "stage": stage,
                    "runs": len(runs),
                    "seconds": round(sum(s.seconds for _, s in runs), 3),
                    "tokens": tokens,
                    "result": " / ".join(results),
                }
            )
        return rows

    # -- rendering -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome
        data["tokens"] = {"prompt": self.prompt_tokens, "completion": self.completion_tokens}
        data["stage_table"] = self.stage_table()
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        verdict = {
            "written": f"**written** to `{self.module}`",
            "failed": "**failed**: nothing written",
            "running": "not finished",
        }[self.outcome]
        repairs = max(len(self.attempts) - 1, 0)
        lines = [
            f"# Rewrite of `{self.script}` into pipeline `{self.name}`",
            "",
            f"- result: {verdict}",
            f"- model: `{self.model}` at `{self.base_url}`",
            f"- prompt: version {self.prompt_version}, digest `{self.prompt_digest}`",
            f"- started: {self.started}, took {self.seconds:.1f} s",
            f"- sample data: `{self.data_dir}`",
            f"- attempts: {len(self.attempts)} ({repairs} repair{'s' if repairs != 1 else ''}), "
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion",
        ]
        if self.udfs:
            lines.append("- row UDFs kept (not declarative; provenance still flows through their "
                         "declared inputs): " + "; ".join(f"`{u}`" for u in self.udfs))  # fmt: skip
        for limitation in self.limitations:
            lines.append(f"- limitation: {limitation}")
        if self.error:
            lines.append(f"- error: {self.error}")
        lines += ["", "| stage | runs | time | tokens | result |", "|---|---|---|---|---|"]
        for row in self.stage_table():
            tokens = (
                f"{row['tokens']['prompt']} + {row['tokens']['completion']}"
                if row["tokens"]
                else "-"
            )
            result = str(row["result"]).replace("|", "\\|")
            lines.append(
                f"| {_TITLES[row['stage']]} | {row['runs']} | {row['seconds']:.2f} s | {tokens} "
                f"| {result} |"
            )
        for attempt in self.attempts:
            failure = attempt.failure
            if failure is None:
                continue
            lines += [
                "",
                f"## Attempt {attempt.number}: {failure.stage} failed",
                "",
                "The report sent back to the model:",
                "",
                "```text",
                failure.details.strip() or failure.summary,
                "```",
            ]
        return "\n".join(lines) + "\n"
