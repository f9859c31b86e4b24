"""LLMClient against the scripted OpenAI-compatible server, over real HTTP on 127.0.0.1.

Replies, errors and delays come from hand-written scripts (``Step`` lists or fixture files in
``tests/rewrite/fixtures``); expectations are taken from what the server recorded and sent, not
from the client's own output.
"""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path

import dagster as dg
import pydantic
import pytest

from lester_dagster.errors import LLMError, RewriteError
from lester_dagster.rewrite.client import NO_KEY, Completion, LLMClient
from tests.rewrite.fake_openai import (
    FIXTURE_MARKER,
    FakeOpenAI,
    Step,
    fixture_files,
    load_script,
)

MESSAGES = [
    {"role": "system", "content": "You rewrite scripts."},
    {"role": "user", "content": "Rewrite this script, please."},
]


def client_for(fake: FakeOpenAI, **overrides: object) -> LLMClient:
    settings: dict[str, object] = {
        "model": "fake-model",
        "base_url": fake.base_url,
        "timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
    }
    settings.update(overrides)
    return LLMClient(**settings)  # type: ignore[arg-type]


def gaps(fake: FakeOpenAI) -> list[float]:
    """Seconds between consecutive chat-completion requests' arrivals."""
    times = [r.received for r in fake.completions]
    return [b - a for a, b in itertools.pairwise(times)]


# -- replies -----------------------------------------------------------------------------------
def test_plain_reply_text_tokens_and_what_the_server_received(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    reply = "```python\nx = 1\n```"
    fake_openai.play([Step.reply(reply)])
    completion = client_for(fake_openai, model="my-model", temperature=0.3).complete(MESSAGES)

    assert isinstance(completion, Completion)
    assert completion.text == reply
    assert completion.attempts == 1
    assert completion.finish_reason == "stop"
    assert completion.model == "my-model"
    (sent,) = fake_openai.completions
    usage = fake_openai.responses[0]["usage"]
    assert (completion.prompt_tokens, completion.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert completion.total_tokens == usage["total_tokens"]
    assert sent.model == "my-model"
    assert sent.messages == MESSAGES
    assert sent.stream is False
    assert sent.body["temperature"] == pytest.approx(0.3)
    assert sent.authorization == "Bearer sk-test-123"
    assert sent.headers.get("x-stainless-retry-count", "0") == "0"  # openai's retries are off
    assert fake_openai.remaining == 0


def test_streamed_reply_is_assembled_and_usage_taken_from_the_last_chunk(
    fake_openai: FakeOpenAI,
) -> None:
    chunks = ["Here ", "is ```py", "thon\nprint('hi')\n", "```", ""]
    fake_openai.play(
        [
            Step.reply(
                "".join(chunks), chunks=chunks, usage={"prompt_tokens": 17, "completion_tokens": 9}
            )
        ]
    )
    completion = client_for(fake_openai, stream=True).complete(MESSAGES)

    assert completion.text == "".join(chunks)
    assert (completion.prompt_tokens, completion.completion_tokens) == (17, 9)
    assert completion.finish_reason == "stop"
    (sent,) = fake_openai.completions
    assert sent.stream is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.messages == MESSAGES


def test_max_tokens_is_sent_only_when_set(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply("a"), Step.reply("b")])
    client_for(fake_openai).complete(MESSAGES)
    client_for(fake_openai, max_tokens=64).complete(MESSAGES)
    first, second = fake_openai.completions
    assert "max_tokens" not in first.body
    assert second.body["max_tokens"] == 64


def test_script_from_a_fixture_file(fake_openai: FakeOpenAI) -> None:
    steps = load_script("client_rate_limited")
    fake_openai.play_file("client_rate_limited")
    completion = client_for(fake_openai, backoff=0.01).complete(MESSAGES)
    assert completion.text == steps[1].content
    assert FIXTURE_MARKER not in completion.text  # the label line is not part of the reply
    assert completion.attempts == 2
    assert (completion.prompt_tokens, completion.completion_tokens) == (321, 54)


# -- retries -----------------------------------------------------------------------------------
def test_429_waits_as_long_as_retry_after_says(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.error(429, retry_after=0.4), Step.reply("done")])
    completion = client_for(fake_openai, backoff=0.01).complete(MESSAGES)
    assert completion.text == "done"
    assert completion.attempts == 2
    assert len(fake_openai.completions) == 2
    (gap,) = gaps(fake_openai)
    assert gap >= 0.4  # the server's Retry-After, not the 0.01 s backoff
    assert completion.waited == pytest.approx(0.4)
    assert completion.seconds >= gap


def test_retry_after_is_capped_by_max_backoff(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.error(429, retry_after=30), Step.reply("done")])
    started = time.monotonic()
    completion = client_for(fake_openai, max_backoff=0.2).complete(MESSAGES)
    assert completion.attempts == 2
    assert time.monotonic() - started < 5
    assert gaps(fake_openai)[0] >= 0.2


def test_backoff_doubles_without_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.error(503), Step.error(502), Step.reply("ok")])
    completion = client_for(fake_openai, backoff=0.15, max_retries=3).complete(MESSAGES)
    assert completion.attempts == 3
    first, second = gaps(fake_openai)
    assert first >= 0.15
    assert second >= 0.3
    assert completion.waited == pytest.approx(0.45)


def test_500_every_time_raises_llm_error_naming_url_model_attempts(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.play([Step.error(500, "the GPU caught fire (scripted)")] * 3)
    with pytest.raises(LLMError) as caught:
        client_for(fake_openai, model="big-model", max_retries=2).complete(MESSAGES)
    message = str(caught.value)
    assert fake_openai.base_url in message
    assert "'big-model'" in message
    assert "3 attempts" in message
    assert "the GPU caught fire (scripted)" in message
    assert "HTTP 500" in message
    assert len(fake_openai.completions) == 3
    assert isinstance(caught.value, ConnectionError)


def test_401_fails_at_once_and_names_the_key_variable(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    fake_openai.api_key = "sekret"  # the server wants a key the client does not have
    with pytest.raises(LLMError) as caught:
        client_for(fake_openai, api_key_env="MY_LLM_KEY", max_retries=3).complete(MESSAGES)
    assert len(fake_openai.requests) == 1  # no retry
    assert fake_openai.requests[0].authorization == f"Bearer {NO_KEY}"
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "1 attempt:" in message
    assert "$MY_LLM_KEY is not set" in message


def test_key_is_read_from_the_named_variable(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sekret")
    fake_openai.api_key = "sekret"
    fake_openai.play([Step.reply("welcome")])
    completion = client_for(fake_openai, api_key_env="MY_LLM_KEY").complete(MESSAGES)
    assert completion.text == "welcome"
    assert fake_openai.requests[0].authorization == "Bearer sekret"


@pytest.mark.parametrize("status", [400, 404])
def test_client_errors_are_not_retried(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.play([Step.error(status, "The model `nope` does not exist"), Step.reply("x")])
    with pytest.raises(LLMError) as caught:
        client_for(fake_openai, model="nope").complete(MESSAGES)
    assert len(fake_openai.completions) == 1
    assert fake_openai.remaining == 1
    assert "The model `nope` does not exist" in str(caught.value)
    if status == 404:
        assert "check the model name 'nope'" in str(caught.value)


def test_timeout_is_retried_then_fails(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply("too late", delay=1.5)] * 3)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client_for(fake_openai, timeout=0.25, max_retries=2).complete(MESSAGES)
    elapsed = time.monotonic() - started
    assert len(fake_openai.completions) == 3
    assert elapsed < 1.5  # gave up on each request long before the server answered
    message = str(caught.value)
    assert "timeout=0.25 s" in message
    assert "3 attempts" in message
    assert "raise LLMClient.timeout" in message


def test_timeout_then_success(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply("too late", delay=1.5), Step.reply("in time")])
    completion = client_for(fake_openai, timeout=0.25).complete(MESSAGES)
    assert completion.text == "in time"
    assert completion.attempts == 2


def test_streamed_timeout_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply("slow", delay=1.5), Step.reply("fast")])
    completion = client_for(fake_openai, timeout=0.25, stream=True).complete(MESSAGES)
    assert completion.text == "fast"
    assert completion.attempts == 2


def test_an_exhausted_script_is_an_error_the_client_reports(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([])
    with pytest.raises(LLMError, match="script is exhausted"):
        client_for(fake_openai, max_retries=0).complete(MESSAGES)


def test_no_server_at_the_url() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    client = LLMClient(model="m", base_url=url, max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError) as caught:
        client.complete(MESSAGES)
    message = str(caught.value)
    assert url in message
    assert "cannot connect" in message
    assert "server is running" in message


# -- configuration -----------------------------------------------------------------------------
def test_base_url_defaults_to_openai_base_url_env(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.play([Step.reply("from env")])
    client = LLMClient(model="fake-model")
    assert client.resolved_base_url == fake_openai.base_url
    assert client.complete(MESSAGES).text == "from env"


def test_list_models(fake_openai: FakeOpenAI) -> None:
    fake_openai.models = ["a-model", "b-model"]
    assert client_for(fake_openai).list_models() == ["a-model", "b-model"]
    assert fake_openai.requests[-1].path == "/v1/models"


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout", 0), ("max_retries", -1), ("backoff", -0.5), ("model", " ")],
)
def test_bad_settings_are_refused(field: str, value: object) -> None:
    settings: dict[str, object] = {"model": "m", field: value}
    with pytest.raises(pydantic.ValidationError, match=f"LLMClient {field}"):
        LLMClient(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "messages",
    [[], "hello", [{"role": "robot", "content": "x"}], [{"role": "user", "content": None}]],
)
def test_bad_messages_are_refused_before_any_request(
    fake_openai: FakeOpenAI, messages: object
) -> None:
    with pytest.raises(RewriteError):
        client_for(fake_openai).complete(messages)  # type: ignore[arg-type]
    assert fake_openai.requests == []


def test_as_a_dagster_resource(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply("from an asset")])
    seen: list[Completion] = []

    @dg.asset
    def rewritten(llm: LLMClient) -> str:
        completion = llm.complete(MESSAGES)
        seen.append(completion)
        return completion.text

    result = dg.materialize([rewritten], resources={"llm": client_for(fake_openai)})
    assert result.success
    assert result.output_for_node("rewritten") == "from an asset"
    assert seen[0].attempts == 1


# -- the fixtures themselves -------------------------------------------------------------------
def test_every_fixture_file_is_labelled_as_a_scripted_fixture() -> None:
    files = list(fixture_files())
    assert files
    for path in files:
        assert FIXTURE_MARKER in path.read_text(encoding="utf-8")[:500], path


def test_unlabelled_fixtures_are_refused(tmp_path: Path) -> None:
    (tmp_path / "reply.md").write_text("```python\nx = 1\n```\n")
    (tmp_path / "script.json").write_text(
        '{"fixture": "SCRIPTED TEST FIXTURE", "steps": [{"reply_file": "reply.md"}]}'
    )
    with pytest.raises(ValueError, match="SCRIPTED TEST FIXTURE"):
        load_script("script", tmp_path)
    (tmp_path / "bare.json").write_text('{"steps": [{"reply": "x"}]}')
    with pytest.raises(ValueError, match="SCRIPTED TEST FIXTURE"):
        load_script("bare", tmp_path)
