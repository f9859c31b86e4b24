"""rewrite_script end to end over real HTTP to the scripted server (hand-written fixtures).

Expected numbers come from the data (pandas on the generated csv files), not from the code
under test; the scripted answers are the fixtures of tests/rewrite/fixtures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from lester_dagster.errors import GeneratedCodeError, LLMError, RewriteCheckError, RewriteError
from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.module import body_hash, read_header
from lester_dagster.rewrite.report import RewriteReport
from lester_dagster.rewrite.rewrite import rewrite_script
from tests.rewrite.conftest import EXAMPLES, MESSY
from tests.rewrite.fake_openai import FIXTURE_DIR, FakeOpenAI, Step, load_script

SENSORS_OK = load_script("rewrite_sensors")[0].content or ""


def _client(fake: FakeOpenAI) -> LLMClient:
    return LLMClient(model="fake-model", base_url=fake.base_url, max_retries=2, backoff=0.0)


def _rewrite(
    fake: FakeOpenAI, messy_data: Path, root: Path, name: str, **options: object
) -> RewriteReport:
    script, dataset, _ = EXAMPLES[name]
    return rewrite_script(
        MESSY / script,
        name,
        data_dir=messy_data / dataset,
        client=_client(fake),
        out_dir=root / "definitions",
        **options,  # type: ignore[arg-type]
    )


def _complaints_rows(directory: Path) -> int:
    """Prepared rows of complaints_loops.py, computed independently with pandas."""
    customers = pd.read_csv(directory / "customers.csv", keep_default_na=False)
    mails = pd.read_csv(directory / "mails.csv", keep_default_na=False)
    kept = customers[customers["country"].isin(["DE", "FR", "NL"])]
    text = mails["text"].str.lower()
    topical = mails[
        (mails["date"] >= "2022-01-01")
        & (
            text.str.contains("complaint", regex=False)
            | text.str.contains("bank account", regex=False)
        )
    ]
    return int(topical["email"].isin(set(kept["email"])).sum())


def test_a_wrong_rewrite_is_caught_by_the_diff_and_the_repair_is_accepted(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    fake_openai.play_file("rewrite_complaints_repair")
    report = _rewrite(fake_openai, messy_data, tmp_path, "complaint_mails")

    assert report.written and len(report.attempts) == 2
    failure = report.attempts[0].failure
    assert failure is not None and failure.stage == "differential"
    assert report.attempts[1].ok
    rows = _complaints_rows(messy_data / "complaints")
    assert f"on ALL {rows} prepared rows" in failure.details
    # the repair request carries the diff with its concrete numbers, after the wrong code
    repair = fake_openai.completions[1].messages
    assert ".str.len()" in repair[-2]["content"] and repair[-2]["role"] == "assistant"
    prompt = repair[-1]["content"]
    assert failure.details.splitlines()[-1] in prompt
    match = re.search(
        r"column (\d+) of the original .*? differs in (\d+) of (\d+) matched rows", prompt
    )
    assert match is not None, prompt
    assert int(match.group(3)) == rows and int(match.group(2)) > rows // 2
    assert re.search(r"max abs difference \d", prompt)

    module = tmp_path / "definitions" / "complaint_mails.py"
    parsed = read_header(module.read_text(encoding="utf-8"))
    assert parsed is not None
    fields, body = parsed
    assert fields["body-sha256"] == body_hash(body)
    assert fields["attempts"].startswith("2 ") and fields["model"] == "fake-model"
    assert fields["base-url"] == fake_openai.base_url
    assert "differential ok" in fields["checks"] and fields["prompt"].startswith("version ")
    assert "str.word_count()" in body and ".str.len()" not in body
    assert 'LesterTranslator(key_prefix="complaint_mails")' in body
    copied = tmp_path / "data" / "complaint_mails" / "mails.csv"
    assert copied.read_bytes() == (messy_data / "complaints" / "mails.csv").read_bytes()

    table = {row["stage"]: row for row in json.loads(report.to_json())["stage_table"]}
    assert table["differential"]["runs"] == 2 and table["original"]["runs"] == 1
    assert table["llm"]["tokens"]["prompt"] > 0
    markdown = report.to_markdown()
    assert "## Attempt 1: differential failed" in markdown
    assert "| differential check | 2 |" in markdown and "sentiment(text)" in markdown


def test_rate_limit_and_malformed_replies_are_retried_and_repaired(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    prose = "Sure! Here is the pipeline module you asked for, with every stage."
    fake_openai.play(
        [
            Step.error(429, retry_after=0),
            Step.reply(prose),
            Step.reply("```python\ndef prepare(readings:\n    return readings\n```"),
            Step.reply(SENSORS_OK),
        ]
    )
    report = _rewrite(fake_openai, messy_data, tmp_path, "machine_failures")

    assert report.written and len(report.attempts) == 3
    first, second = report.attempts[0], report.attempts[1]
    assert first.stages[0].requests == 2  # 429, then the answer
    assert first.failure is not None and first.failure.stage == "parse"
    assert second.failure is not None and second.failure.stage == "parse"
    requests = fake_openai.completions
    assert len(requests) == 4
    repair_1, repair_2 = requests[2].messages, requests[3].messages
    assert repair_1[-2] == {"role": "assistant", "content": prose}  # as it was, not fenced
    assert "no code block" in repair_1[-1]["content"]
    assert "does not parse" in repair_2[-1]["content"] and "line 1" in repair_2[-1]["content"]
    assert (tmp_path / "definitions" / "machine_failures.py").is_file()


def _with(code: str, lines: str) -> str:
    """SENSORS_OK with ``lines`` put at the start of prepare()'s body."""
    marker = '    """Readings with a valid pressure'
    return code.replace(marker, lines + "\n" + marker, 1)


def test_forbidden_calls_are_refused_before_they_run_and_sent_back(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    variants = [
        _with(SENSORS_OK, "    import os\n\n    os.system('touch /tmp/pwned')"),
        _with(SENSORS_OK, "    import subprocess\n\n    subprocess.run(['id'])"),
        _with(SENSORS_OK, "    import socket\n\n    socket.create_connection(('example.org', 80))"),
    ]
    fake_openai.play([Step.reply(v) for v in variants])
    with pytest.raises(GeneratedCodeError, match="static stage") as caught:
        _rewrite(fake_openai, messy_data, tmp_path, "machine_failures")

    report = caught.value.report
    assert isinstance(report, RewriteReport) and not report.written
    stages = [[s.stage for s in a.stages] for a in report.attempts]
    assert stages == [["llm", "parse", "static"]] * 3  # never executed
    requests = fake_openai.completions
    assert "import os" in requests[1].messages[-1]["content"]
    assert "import subprocess" in requests[2].messages[-1]["content"]
    assert "socket" in report.attempts[2].stages[-1].details
    assert not (tmp_path / "definitions").exists() and not (tmp_path / "data").exists()


def test_a_pipeline_that_runs_forever_is_killed_at_the_time_limit(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    fake_openai.play([Step.reply(_with(SENSORS_OK, "    while True:\n        pass"))])
    with pytest.raises(RewriteCheckError, match="execution stage") as caught:
        _rewrite(fake_openai, messy_data, tmp_path, "machine_failures", attempts=1, timeout=6.0)
    report = caught.value.report
    assert isinstance(report, RewriteReport)
    execution = report.attempts[0].stages[-1]
    assert execution.stage == "execution" and not execution.ok
    assert "time limit of 6 s" in execution.details
    assert 6.0 <= execution.seconds < 30
    assert not (tmp_path / "definitions" / "machine_failures.py").exists()


def test_a_hand_written_module_is_not_overwritten_and_no_request_is_made(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path
) -> None:
    target = tmp_path / "definitions" / "churn.py"
    target.parent.mkdir()
    target.write_text("# my own churn pipeline\n", encoding="utf-8")
    fake_openai.play_file("rewrite_churn")
    with pytest.raises(RewriteError, match="--force") as caught:
        _rewrite(fake_openai, messy_data, tmp_path, "churn")
    assert str(target) in str(caught.value)
    assert fake_openai.completions == []
    assert target.read_text(encoding="utf-8") == "# my own churn pipeline\n"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("9lives", "sensors", "'9lives'"),
        ("machine_failures", "nowhere", "nowhere"),
    ],
)
def test_bad_input_is_named(
    fake_openai: FakeOpenAI, messy_data: Path, tmp_path: Path, name: str, data: str, message: str
) -> None:
    with pytest.raises(RewriteError, match=message):
        rewrite_script(
            MESSY / "sensors_numpy.py",
            name,
            data_dir=messy_data / data,
            client=_client(fake_openai),
            out_dir=tmp_path / "definitions",
        )
    assert fake_openai.completions == []


def test_every_rewrite_fixture_is_labelled() -> None:
    for path in FIXTURE_DIR.glob("rewrite_*"):
        assert "SCRIPTED TEST FIXTURE" in path.read_text(encoding="utf-8")[:400], path


def test_an_unreachable_server_is_an_llm_error_with_the_report(
    messy_data: Path, tmp_path: Path
) -> None:
    client = LLMClient(model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=5)
    with pytest.raises(LLMError, match=r"127\.0\.0\.1:9") as caught:
        rewrite_script(
            MESSY / "sensors_numpy.py",
            "machine_failures",
            data_dir=messy_data / "sensors",
            client=client,
            out_dir=tmp_path / "definitions",
        )
    report = caught.value.report
    assert isinstance(report, RewriteReport) and report.outcome == "failed"
    assert "127.0.0.1:9" in report.to_markdown()
    assert not (tmp_path / "definitions").exists()
