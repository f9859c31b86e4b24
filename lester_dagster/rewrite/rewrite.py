"""The rewrite, stage by stage: a messy script becomes a checked ``definitions/<name>.py``.

:func:`rewrite_script` runs

1. **data**: :func:`~lester_dagster.rewrite.describe.describe_data` on the sample data (files,
   columns, types, rows, keys confirmed on every row);
2. per attempt (up to ``attempts``): **llm** (the rewrite prompt, later a repair prompt),
   **parse** (:func:`~lester_dagster.rewrite.parse.extract_code`), **static**
   (:func:`~lester_dagster.rewrite.validate.check_code`: allow-list, ``pipeline`` defined),
   **execution** (the module, as it would be written, run by the orchestration's harness
   ``python -m lester_dagster.orchestration.harness`` in the sandbox, with the time and memory
   limits, on the sample data) and **differential** (its ``X_train`` / ``y_train`` / ``model``
   against the original's, :func:`~lester_dagster.rewrite.differential.compare`). The first
   failing stage ends the attempt; its report (the parse error, the refused lines, the
   traceback, the diff with its numbers) goes back to the model in a repair prompt;
3. **original** (once, in parallel with the first execution): the script run in the sandbox
   on the same data, ``python SCRIPT DATA_DIR``, with ``train_test_split`` replaced by an
   identity split (:func:`~lester_dagster.rewrite.capture.capture_script` with ``unsplit``);
4. **write**: the sample data copied to ``<root>/data/<name>/`` (``root``: the folder that
   holds ``out_dir``, the code location's working directory) unless it is there already, then
   the module with its header (:mod:`lester_dagster.rewrite.module`).

**Why unsplit.** The module splits by a hash of a source key (``SplitSpec``: deleting records
never moves others between train and test), the script by ``train_test_split``: their training
rows never coincide. So both sides are compared on *all* prepared rows: the script with an
identity split, the module's features, labels and model fitted on every prepared row by the
harness (which also runs the real split, as the assets will).

**Where the module reads its data.** Generated modules may not use ``os`` or absolute paths
(static check), so they read ``DATA_DIR = Path("data/<name>")``, relative to the working
directory: the repository root for ``dagster dev`` (``workspace.yaml``), a temporary directory
holding ``data/<name>`` for the checks.

After the last failed attempt :class:`~lester_dagster.errors.RewriteCheckError` (execution or
differential) or :class:`~lester_dagster.errors.GeneratedCodeError` (parse or static) is raised
with the report as ``error.report``, and nothing is written.
"""

from __future__ import annotations

import concurrent.futures
import filecmp
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lester_dagster.errors import GeneratedCodeError, RewriteCheckError, RewriteError
from lester_dagster.rewrite.capture import Captured, capture_script, load_captured
from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.describe import DataDescription, describe_data
from lester_dagster.rewrite.differential import compare
from lester_dagster.rewrite.module import assemble_body, check_target, render_module, write_module
from lester_dagster.rewrite.parse import extract_code
from lester_dagster.rewrite.prompts import (
    PROMPT_VERSION,
    prompt_digest,
    repair_messages,
    rewrite_messages,
)
from lester_dagster.rewrite.report import AttemptReport, RewriteReport, StageResult
from lester_dagster.rewrite.sandbox import DEFAULT_MEMORY_MB, run_python
from lester_dagster.rewrite.validate import check_code

__all__ = ["COMPARED", "HARNESS_MODULE", "Progress", "module_data_dir", "rewrite_script"]

HARNESS_MODULE = "lester_dagster.orchestration.harness"
"""The child entry point that runs a generated module (a name, not an import: the rewrite and
orchestration packages are independent, see .importlinter)."""
COMPARED = ("X_train", "y_train", "model")
"""The artifacts the differential check compares (on all prepared rows)."""

Progress = Callable[[str], None]


def module_data_dir(name: str) -> str:
    """Where a generated module reads its sources: ``data/<name>`` (relative to the code
    location's working directory)."""
    return f"data/{name}"


def _check_inputs(script: Path, name: str, data_dir: Path, attempts: int) -> None:
    if not script.is_file():
        raise RewriteError(f"script {os.fspath(script)!r} does not exist or is not a file")
    if not name.isidentifier() or name.startswith("_"):
        raise RewriteError(
            f"--name must be letters, digits and underscores, not starting with a digit or '_' "
            f"(it becomes definitions/<name>.py, a Dagster group and an asset key prefix), "
            f"got {name!r}"
        )
    if not data_dir.is_dir():
        raise RewriteError(
            f"sample data directory {os.fspath(data_dir)!r} does not exist; pass the directory "
            "holding the script's input files (--data DIR)"
        )
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise RewriteError(f"attempts must be a positive integer, got {attempts!r}")


class _Run:
    """The state of one rewrite (see :func:`rewrite_script`)."""

    def __init__(
        self,
        script: Path,
        name: str,
        data_dir: Path,
        description: DataDescription,
        report: RewriteReport,
        *,
        timeout: float,
        memory_mb: int,
        script_args: list[str],
        progress: Progress,
    ) -> None:
        self.script, self.name, self.data_dir = script, name, data_dir
        self.description, self.report = description, report
        self.timeout, self.memory_mb = timeout, memory_mb
        self.script_args, self.say = script_args, progress
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._original: concurrent.futures.Future[Captured] | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- the original script ---------------------------------------------------------------------
    def start_original(self) -> None:
        if self._original is None:
            self.say(f"running the original {self.script.name} on the sample data (unsplit)")
            self._original = self._pool.submit(
                capture_script,
                self.script,
                self.script_args,
                names=COMPARED,
                required=COMPARED,
                timeout=self.timeout,
                memory_mb=self.memory_mb,
                unsplit=True,
            )

    def original(self) -> Captured:
        self.start_original()
        assert self._original is not None
        started = time.perf_counter()
        if any(s.stage == "original" for s in self.report.stages):
            return self._original.result()
        try:
            captured = self._original.result()
        except RewriteError as error:
            self.report.stages.append(
                StageResult("original", False, time.perf_counter() - started, str(error))
            )
            raise RewriteError(
                f"the original script fails on the sample data, so there is nothing to compare "
                f"the rewrite with: {error}. Fix the script or the data (--data) first"
            ) from error
        shapes = ", ".join(
            f"{n} {'x'.join(str(d) for d in getattr(captured.values[n], 'shape', ()))}"
            for n in ("X_train", "y_train")
        )
        model = getattr(captured.values["model"], "class_name", "?").rsplit(".", 1)[-1]
        self.report.stages.append(
            StageResult("original", True, captured.seconds, f"ok: {shapes}, model {model}")
        )
        return captured

    # -- one attempt -------------------------------------------------------------------------------
    def static(self, code: str, attempt: AttemptReport) -> bool:
        started = time.perf_counter()
        violations = check_code(code, allowed_paths=(), required_names=("pipeline",))
        seconds = time.perf_counter() - started
        if violations:
            details = (
                f"the static check refused the module ({len(violations)} violation"
                f"{'s' if len(violations) != 1 else ''} of the allow-list):\n"
                + "\n".join(str(v) for v in violations)
            )
            rules = sorted({v.rule for v in violations})
            attempt.stages.append(
                StageResult("static", False, seconds, f"refused: {', '.join(rules)}", details)
            )
            return False
        attempt.stages.append(StageResult("static", True, seconds, "ok"))
        return True

    def execute(self, body: str, attempt: AttemptReport, work: Path) -> Captured | None:
        module_file = work / "module" / f"{self.name}.py"
        module_file.parent.mkdir(parents=True)
        module_file.write_text(body, encoding="utf-8")
        data_link = work / "cwd" / module_data_dir(self.name)
        data_link.parent.mkdir(parents=True)
        try:
            data_link.symlink_to(self.data_dir.resolve(), target_is_directory=True)
        except OSError:
            shutil.copytree(self.data_dir, data_link)
        out = work / "out"
        spec = work / "spec.json"
        spec.write_text(
            json.dumps({"module": str(module_file), "name": self.name, "out_dir": str(out)}),
            encoding="utf-8",
        )
        self.start_original()  # runs while the module runs
        run = run_python(
            ["-m", HARNESS_MODULE, str(spec)],
            cwd=work / "cwd",
            timeout=self.timeout,
            memory_mb=self.memory_mb,
        )
        if not run.ok:
            if run.killed_for is not None:
                summary = f"killed at the {run.killed_for} limit"
            else:
                summary = "failed: " + (run.stderr.strip().splitlines() or ["?"])[0][:160]
            details = f"running the module on the sample data {run.describe()}"
            attempt.stages.append(StageResult("execution", False, run.seconds, summary, details))
            return None
        summary = json.loads((out / "harness.json").read_text(encoding="utf-8"))
        self.report.udfs = list(summary.get("udfs", []))
        split = summary.get("split", {})
        limitation = split.get("limitation")
        self.report.limitations = (
            [f"the materialised train/test assets will fail on these prepared rows: {limitation}"]
            if limitation
            else []
        )
        sources = ", ".join(f"{s} {v['rows']} rows" for s, v in summary["sources"].items())
        split_text = (
            f"split {split['train']}/{split['test']}" if "train" in split and not limitation
            else "split not possible (see limitation)"
        )  # fmt: skip
        text = (
            f"ok: {sources}; {summary['prepared']['rows']} prepared rows; X "
            f"{summary['X'][0]}x{summary['X'][1]}; {split_text}"
        )
        attempt.stages.append(StageResult("execution", True, run.seconds, text))
        return load_captured(out, run=run)

    def differ(self, rewritten: Captured, attempt: AttemptReport) -> bool:
        original = self.original()
        started = time.perf_counter()
        diff = compare(original, rewritten, names=COMPARED)
        seconds = time.perf_counter() - started
        rows = getattr(original.values["X_train"], "shape", ("?",))[0]
        if diff.ok:
            attempt.stages.append(
                StageResult(
                    "differential", True, seconds, f"ok: {', '.join(COMPARED)} agree on {rows} rows"
                )
            )
            return True
        first = next((a for a in diff.artifacts if not a.ok), None)
        summary = f"{first.name} differs" if first else "differs"
        if first and first.problems:
            summary += f": {_clip(first.problems[0], 150)}"
        details = (
            f"The differential check ran the original script `{self.script.name}` and your module "
            f"on the same sample data and compared X_train, y_train and the model's predictions "
            f"on ALL {rows} prepared rows of the original (the split is left out on both sides: "
            "the script's train_test_split is replaced by an identity split, and your module's "
            "features, label and model are fitted on all of its prepared rows). Row and column "
            "order may differ; values must agree within the tolerance.\n\n" + diff.report
        )
        attempt.stages.append(StageResult("differential", False, seconds, summary, details))
        return False


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _install_data(description: DataDescription, target: Path) -> str:
    """Copy the sample data files to ``target`` (the module's ``DATA_DIR``) where missing."""
    if target.exists() and target.resolve() == description.directory.resolve():
        return f"data already in {_shown(target)}"
    target.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for info in description.files:
        source, destination = description.directory / info.name, target / info.name
        if destination.exists():
            if not filecmp.cmp(source, destination, shallow=False):
                kept.append(info.name)
            continue
        shutil.copy2(source, destination)
        copied.append(info.name)
    shown = _shown(target)
    text = f"copied {', '.join(copied)} to {shown}" if copied else f"data already in {shown}"
    if kept:
        text += f"; kept the existing {', '.join(kept)} there (they differ from the sample)"
    return text


def rewrite_script(
    script: str | os.PathLike[str],
    name: str,
    *,
    data_dir: str | os.PathLike[str],
    client: LLMClient,
    out_dir: str | os.PathLike[str] = "definitions",
    attempts: int = 3,
    force: bool = False,
    timeout: float = 300.0,
    memory_mb: int = DEFAULT_MEMORY_MB,
    script_args: list[str] | None = None,
    progress: Progress | None = None,
) -> RewriteReport:
    """Rewrite ``script`` into ``out_dir/<name>.py`` (see the module docstring) and return the
    report.

    ``data_dir``: the sample data (the script's input files); the script runs as
    ``python SCRIPT DATA_DIR`` unless ``script_args`` says otherwise. ``client``: the LLM.
    ``attempts``: requests at most (the first, then repairs). ``force``: overwrite a hand-written
    or hand-edited module. ``timeout`` / ``memory_mb``: limits of each sandboxed run (the
    module, the original script). ``progress``: called with one line per step.

    Raises :class:`RewriteError` for bad input (missing script or data, a bad name, a
    hand-edited target without ``force``, an original script that fails on the data),
    :class:`~lester_dagster.errors.LLMError` when the server cannot be used, and
    :class:`RewriteCheckError` / :class:`GeneratedCodeError` when no attempt passed every
    check; the last two (and LLMError) carry the report as ``error.report``.
    """
    say: Progress = progress or (lambda _line: None)
    script_path, data_path = Path(script), Path(data_dir)
    _check_inputs(script_path, name, data_path, attempts)
    target = Path(out_dir) / f"{name}.py"
    check_target(target, force=force)  # fail before spending tokens
    began = time.perf_counter()
    report = RewriteReport(
        script=os.fspath(script),
        name=name,
        module=os.fspath(target),
        model=client.model,
        base_url=client.resolved_base_url,
        prompt_version=PROMPT_VERSION,
        prompt_digest=prompt_digest(),
        started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        data_dir=os.fspath(data_dir),
    )
    say(f"describing the sample data in {data_path}")
    started = time.perf_counter()
    description = describe_data(data_path)
    report.stages.append(
        StageResult("data", True, time.perf_counter() - started, description.summary())
    )
    messages = rewrite_messages(
        script_path.read_text(encoding="utf-8"),
        name,
        description.markdown(module_data_dir(name)),
        script_name=script_path.name,
        data_dir=module_data_dir(name),
    )
    run = _Run(
        script_path.resolve(),
        name,
        data_path,
        description,
        report,
        timeout=timeout,
        memory_mb=memory_mb,
        script_args=[str(data_path.resolve())] if script_args is None else list(script_args),
        progress=say,
    )
    accepted: str | None = None
    try:
        for number in range(1, attempts + 1):
            attempt = AttemptReport(number)
            report.attempts.append(attempt)
            code = _attempt(run, client, messages, attempt, number, attempts)
            if attempt.ok and code is not None:
                accepted = code
                break
            failure = attempt.failure
            assert failure is not None
            say(f"attempt {number}: {failure.stage} failed: {failure.summary}")
            if number < attempts:
                messages = _repair(messages, code, attempt, failure)
    except RewriteError as error:  # the LLM server, or the original script on its data
        report.error = str(error)
        report.seconds = time.perf_counter() - began
        if error.report is None:
            error.report = report
        raise
    finally:
        run.close()
    report.seconds = time.perf_counter() - began
    if accepted is None:
        failure = report.attempts[-1].failure
        assert failure is not None
        report.error = (
            f"no attempt passed every check ({attempts} attempt{'s' if attempts != 1 else ''}); "
            f"the last failed at the {failure.stage} stage: {failure.summary}"
        )
        kind = GeneratedCodeError if failure.stage in ("parse", "static") else RewriteCheckError
        error_out = kind(f"{report.error}; nothing was written to {target}")
        error_out.report = report
        raise error_out
    _write(report, accepted, description, target, force, say)
    report.seconds = time.perf_counter() - began
    return report


def _attempt(
    run: _Run,
    client: LLMClient,
    messages: list[dict[str, str]],
    attempt: AttemptReport,
    number: int,
    attempts: int,
) -> str | None:
    """One attempt; returns the code (``None`` when there was no usable code block)."""
    kind = "rewrite" if number == 1 else "repair"
    run.say(f"attempt {number}/{attempts}: {kind} request to {client.model}")
    completion = client.complete(messages)
    attempt.stages.append(
        StageResult(
            "llm",
            True,
            completion.seconds,
            f"{len(completion.text)} characters in {completion.attempts} request"
            f"{'s' if completion.attempts != 1 else ''}",
            details=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            requests=completion.attempts,
        )
    )
    started = time.perf_counter()
    try:
        code = extract_code(completion.text)
    except GeneratedCodeError as error:
        attempt.stages.append(
            StageResult(
                "parse", False, time.perf_counter() - started, _first_line(error), str(error)
            )
        )
        return None
    lines = len(code.splitlines())
    attempt.stages.append(
        StageResult("parse", True, time.perf_counter() - started, f"ok: {lines} lines")
    )
    if not run.static(code, attempt):
        return code
    run.say(f"attempt {number}: running the module in the sandbox")
    with tempfile.TemporaryDirectory(prefix="lester-rewrite-") as temp:
        rewritten = run.execute(assemble_body(code, run.name), attempt, Path(temp))
        if rewritten is None:
            return code
        run.say(f"attempt {number}: comparing with the original script")
        run.differ(rewritten, attempt)
    return code


def _clip(text: str, limit: int) -> str:
    """``text`` cut after its last ``;`` before ``limit`` characters (whole clauses)."""
    if len(text) <= limit:
        return text
    cut = text.rfind(";", 0, limit)
    return (text[:cut] if cut > 0 else text[:limit]) + " ..."


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__


def _repair(
    messages: list[dict[str, str]],
    code: str | None,
    attempt: AttemptReport,
    failure: StageResult,
) -> list[dict[str, str]]:
    reply = next(s.details for s in attempt.stages if s.stage == "llm")
    repaired = repair_messages(messages, code or reply, failure.details or failure.summary,
                               attempt=attempt.number)  # fmt: skip
    if code is None:  # the reply had no usable code: show it as it was
        repaired[-2] = {"role": "assistant", "content": reply}
    return repaired


def _write(
    report: RewriteReport,
    code: str,
    description: DataDescription,
    target: Path,
    force: bool,
    say: Progress,
) -> None:
    started = time.perf_counter()
    root = Path(target).resolve().parent.parent
    data_text = _install_data(description, root / module_data_dir(report.name))
    attempts = len(report.attempts)
    fields: dict[str, Any] = {
        "script": report.script,
        "model": report.model,
        "base-url": report.base_url,
        "prompt": f"version {report.prompt_version}, digest {report.prompt_digest}",
        "date": report.started,
        "checks": report.check_results(),
        "attempts": f"{attempts} ({attempts - 1} repair{'s' if attempts != 2 else ''})",
        "tokens": f"{report.prompt_tokens} prompt + {report.completion_tokens} completion",
        "data": f"{module_data_dir(report.name)} (relative to the code location's working "
        "directory)",
    }
    for index, udf in enumerate(report.udfs, start=1):
        fields[f"udf-{index}"] = udf
    for index, limitation in enumerate(report.limitations, start=1):
        fields[f"limitation-{index}"] = limitation
    text = render_module(assemble_body(code, report.name), {k: str(v) for k, v in fields.items()})
    write_module(target, text, force=force)
    report.written = True
    report.stages.append(
        StageResult("write", True, time.perf_counter() - started, f"{target}; {data_text}")
    )
    say(f"wrote {target} ({data_text})")
