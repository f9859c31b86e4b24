"""``rewrite_job`` (op ``llm_rewrite``) in process, with the ``llm`` resource pointing at the
scripted server; and the repository's code location holding it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.job import LLM_KEY, rewrite_job
from lester_dagster.rewrite.module import read_header
from tests.rewrite.conftest import EXAMPLES, MESSY
from tests.rewrite.fake_openai import FakeOpenAI, Step, load_script


def _run(fake: FakeOpenAI, name: str, data: Path, out: Path, **config: Any) -> Any:
    return rewrite_job.execute_in_process(
        run_config={
            "ops": {
                "llm_rewrite": {
                    "config": {
                        "script": str(MESSY / EXAMPLES[name][0]),
                        "name": name,
                        "data_dir": str(data),
                        "out_dir": str(out),
                        **config,
                    }
                }
            }
        },
        resources={LLM_KEY: LLMClient(model="fake-model", base_url=fake.base_url, backoff=0.0)},
        raise_on_error=False,
    )


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_job_writes_a_checked_module(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path, name: str
) -> None:
    fake_openai.play(load_script(EXAMPLES[name][2]))
    out = tmp_path / "definitions"
    result = _run(fake_openai, name, messy_data / EXAMPLES[name][1], out)
    assert result.success
    module = out / f"{name}.py"
    assert result.output_for_node("llm_rewrite") == str(module)
    parsed = read_header(module.read_text(encoding="utf-8"))
    assert parsed is not None and "differential ok" in parsed[0]["checks"]
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert "written** to" in metadata["report"].value
    assert metadata["module"].value == str(module.resolve())
    assert metadata["lester/attempts"].value == 1
    assert metadata["lester/completion_tokens"].value > 0
    assert len(fake_openai.completions) == 1


def test_a_failed_rewrite_fails_the_op_with_the_report(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    fake_openai.play([Step.reply("```python\nimport socket\npipeline = socket\n```")])
    out = tmp_path / "definitions"
    result = _run(fake_openai, "churn", messy_data / "churn", out, attempts=1)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.event_specific_data
    assert "static stage" in data.error.message
    assert "**failed**: nothing written" in data.user_failure_data.metadata["report"].value
    assert not out.exists()


def test_the_code_location_holds_the_rewrite_job() -> None:
    import definitions

    defs: dg.Definitions = definitions.defs
    job = defs.resolve_job_def("rewrite_job")
    assert "llm_rewrite" in {node.name for node in job.nodes}
    assert isinstance(defs.resources[LLM_KEY], LLMClient)
    assert defs.resolve_job_def("complaints_job") is not None
