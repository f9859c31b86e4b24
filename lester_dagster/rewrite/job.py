"""The rewrite as a Dagster job: ``rewrite_job``, one op ``llm_rewrite``.

Launch it from the launchpad with the run config ::

    ops:
      llm_rewrite:
        config:
          script: examples/messy/complaints_loops.py
          name: complaint_mails
          data_dir: examples/messy/data/complaints    # default: data/<name>
          attempts: 3
          force: false

and the resource ``llm`` (an :class:`~lester_dagster.rewrite.client.LLMClient`: model,
base URL, the variable holding the key; :func:`default_llm` reads ``$LESTER_REWRITE_MODEL`` and
``$LESTER_REWRITE_BASE_URL``). The op runs :func:`~lester_dagster.rewrite.rewrite.rewrite_script`
in the run's working directory (the repository root under ``dagster dev``), logs each step, and
returns the module's path with the report as output metadata (Markdown), the attempts, tokens
and limitations. A failed rewrite fails the op with the report in the failure's metadata;
nothing is written. Reload the code location afterwards to see the new pipeline's assets.
"""

# No ``from __future__ import annotations`` here: Dagster reads the annotations of the op's
# parameters (context, config, the llm resource) at definition time and needs them as classes.
import os
from typing import Any

import dagster as dg
from pydantic import Field

from lester_dagster.errors import RewriteError
from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.command import DEFAULT_MODEL, MODEL_ENV
from lester_dagster.rewrite.report import RewriteReport
from lester_dagster.rewrite.rewrite import module_data_dir, rewrite_script

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_MODEL",
    "LLM_KEY",
    "MODEL_ENV",
    "RewriteConfig",
    "default_llm",
    "llm_rewrite",
    "rewrite_definitions",
    "rewrite_job",
]

LLM_KEY = "llm"
"""The resource key of the LLM client."""
BASE_URL_ENV = "LESTER_REWRITE_BASE_URL"
"""The environment variable holding the ``llm`` resource's base URL in the code location."""


class RewriteConfig(dg.Config):
    """Run config of ``llm_rewrite``."""

    script: str = Field(description="Path of the script to rewrite (run as SCRIPT DATA_DIR).")
    name: str = Field(description="Pipeline name: definitions/<name>.py, its group and prefix.")
    data_dir: str = Field(
        default="", description="The sample data (the script's input files); '' = data/<name>."
    )
    attempts: int = Field(default=3, description="LLM requests at most (the first + repairs).")
    force: bool = Field(default=False, description="Overwrite a hand-written or edited module.")
    out_dir: str = Field(default="definitions", description="Folder of the pipeline modules.")
    timeout: float = Field(default=300.0, description="Seconds per sandboxed run.")
    memory_mb: int = Field(default=2048, description="Memory limit per sandboxed run (MB).")


def _metadata(report: RewriteReport) -> dict[str, Any]:
    return {
        "report": dg.MetadataValue.md(report.to_markdown()),
        "lester/attempts": len(report.attempts),
        "lester/prompt_tokens": report.prompt_tokens,
        "lester/completion_tokens": report.completion_tokens,
        "lester/checks": report.check_results(),
        "lester/limitations": dg.MetadataValue.json(list(report.limitations)),
        "lester/prompt": f"version {report.prompt_version}, digest {report.prompt_digest}",
    }


@dg.op(
    name="llm_rewrite",
    out=dg.Out(str, description="Path of the written pipeline module."),
    description="Rewrite a messy script into a checked pipeline module with the LLM resource "
    "(static check, sandboxed run, differential check against the original, repairs).",
    tags={"kind": "openai"},
)
def llm_rewrite(
    context: dg.OpExecutionContext, config: RewriteConfig, llm: LLMClient
) -> dg.Output[str]:
    """See the module docstring."""
    data_dir = config.data_dir or module_data_dir(config.name)
    try:
        report = rewrite_script(
            config.script,
            config.name,
            data_dir=data_dir,
            client=llm,
            out_dir=config.out_dir,
            attempts=config.attempts,
            force=config.force,
            timeout=config.timeout,
            memory_mb=config.memory_mb,
            progress=context.log.info,
        )
    except RewriteError as error:
        failed = error.report if isinstance(error.report, RewriteReport) else None
        raise dg.Failure(
            description=str(error),
            metadata=_metadata(failed) if failed is not None else {},
        ) from error
    context.log.info(report.to_markdown())
    for limitation in report.limitations:
        context.log.warning(limitation)
    metadata = _metadata(report)
    metadata["module"] = dg.MetadataValue.path(os.path.abspath(report.module))
    return dg.Output(report.module, metadata=metadata)


@dg.job(
    name="rewrite_job",
    description="LLM rewrite of a messy script into definitions/<name>.py, checked before it "
    "is written. Configure ops.llm_rewrite.config (script, name, data_dir) and the llm "
    "resource; reload the code location afterwards to see the new assets.",
    tags={"lester/job": "rewrite"},
)
def rewrite_job() -> None:
    llm_rewrite()


def default_llm() -> LLMClient:
    """The ``llm`` resource of the code location: model ``$LESTER_REWRITE_MODEL`` (default
    ``gpt-4o-mini``), base URL ``$LESTER_REWRITE_BASE_URL`` (default ``$OPENAI_BASE_URL``, else
    OpenAI), key in ``$OPENAI_API_KEY``."""
    return LLMClient(
        model=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        base_url=os.environ.get(BASE_URL_ENV) or None,
    )


def rewrite_definitions(llm: LLMClient | None = None) -> dg.Definitions:
    """``rewrite_job`` with its ``llm`` resource (default: :func:`default_llm`), to merge into a
    code location's definitions."""
    return dg.Definitions(jobs=[rewrite_job], resources={LLM_KEY: llm or default_llm()})
