"""The LLM client of the rewrite: chat completions from any OpenAI-compatible server.

:class:`LLMClient` is a Dagster :class:`~dagster.ConfigurableResource` and, as well, a plain
object: ``LLMClient(model="qwen2.5-coder", base_url="http://localhost:8000/v1").complete(msgs)``
works in a CLI or a test as it does in an op. It uses the official ``openai`` package, so it talks
to OpenAI and to vLLM, Ollama (``http://localhost:11434/v1``), llama.cpp's server, LM Studio, ...

* **Key**: read from the environment variable named by ``api_key_env`` (``OPENAI_API_KEY``) when
  the request is made, never stored in the run config. If it is unset the client sends the
  placeholder :data:`NO_KEY` and logs that it does: local servers ignore keys; a server that needs
  one answers 401 and the error says which variable to set.
* **Base URL**: ``base_url``, else ``$OPENAI_BASE_URL``, else OpenAI's ``https://api.openai.com/v1``
  (the ``openai`` package's own rule). It usually ends in ``/v1``.
* **Retries**: the ``openai`` client's own retries are switched off (``max_retries=0``); this
  module retries, up to ``max_retries`` times, on HTTP 408/409/429/5xx, connection errors and
  timeouts, waiting ``backoff * 2**(n-1)`` seconds before retry ``n`` (capped at ``max_backoff``),
  or what the server's ``Retry-After`` / ``retry-after-ms`` header says (also capped). 400, 401,
  403, 404 and 422 fail at once: repeating them cannot help. After the last attempt it raises
  :class:`~lester_dagster.errors.LLMError` naming the base URL, the model, the attempts, the last
  error and what to check.
* **Accounting**: each :class:`Completion` carries the text, the token counts the server reported
  (``usage``; ``None`` if it reported none), the wall time including waits, and the attempts.
* **Streaming** (``stream=True``): the reply arrives as Server-Sent Events and is assembled here;
  usage is asked for with ``stream_options.include_usage``. Useful for servers or proxies that
  cut long silent requests; the result is the same :class:`Completion`.

Why not ``dagster-openai``'s ``OpenAIResource``? It was checked (0.29.27, the registry's current
release): it pins ``dagster==1.13.27`` exactly (this project runs 1.13.28, so installing it would
move Dagster), requires ``api_key`` as a config string (no placeholder for key-less local
servers), exposes neither timeout nor retry settings (only the ``openai`` client's defaults), and
hands out its client only inside an op/asset context (``get_client(context)``), with usage
metadata recorded only for assets, not ops. The rewrite needs its own retry/backoff policy and
per-call token accounting for its report, and a client the CLI can call outside any Dagster
context. So the resource is our own, thin, on top of the same ``openai`` package.
"""

from __future__ import annotations

import email.utils
import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import dagster as dg
import openai
from pydantic import Field, field_validator

from lester_dagster.errors import LLMError, RewriteError

__all__ = ["NO_KEY", "RETRY_STATUSES", "Completion", "LLMClient"]

_log = logging.getLogger(__name__)

NO_KEY = "no-key-set"
"""The key sent when the ``api_key_env`` variable is unset (local servers ignore it)."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried (any other 5xx is retried too)."""

_ROLES = ("system", "user", "assistant")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Completion:
    """One answer of the model.

    ``text``: the assistant message; ``prompt_tokens`` / ``completion_tokens``: as the server
    reported them (``None`` when it reported no usage); ``seconds``: wall time of the call,
    retries and waits included; ``waited``: the part of it spent waiting between attempts;
    ``attempts``: requests made (1 = no retry); ``model``: the model the server says answered;
    ``finish_reason``: ``"stop"``, or ``"length"`` when the reply was cut at the token limit.
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    attempts: int
    model: str
    finish_reason: str | None = None
    waited: float = 0.0

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fail(Exception):
    """An attempt failed in a way no retry can fix; ``hint`` says what to change."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class LLMClient(dg.ConfigurableResource["LLMClient"]):
    """Chat completions from an OpenAI-compatible server (see the module docstring)."""

    model: str = Field(description="Model name as the server knows it (GET <base_url>/models).")
    base_url: str | None = Field(
        default=None,
        description="Server URL ending in /v1, e.g. http://localhost:8000/v1 (vLLM) or "
        "http://localhost:11434/v1 (Ollama). None: $OPENAI_BASE_URL, else OpenAI.",
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable holding the API key; unset: a placeholder is sent "
        "(fine for local servers).",
    )
    timeout: float = Field(default=300.0, description="Seconds per request before giving up.")
    max_retries: int = Field(
        default=4, description="Retries after the first attempt (429, 5xx, timeouts, network)."
    )
    backoff: float = Field(
        default=1.0, description="Seconds before the first retry; doubles for each next one."
    )
    max_backoff: float = Field(
        default=60.0, description="Longest wait between attempts (Retry-After included)."
    )
    temperature: float = Field(default=0.0, description="Sampling temperature (0: greedy).")
    max_tokens: int | None = Field(
        default=None, description="Longest reply in tokens (None: the server's limit)."
    )
    stream: bool = Field(default=False, description="Receive the reply as a stream of chunks.")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("LLMClient model must name a model, e.g. 'gpt-4o-mini', got ''")
        return value

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"LLMClient timeout must be > 0 seconds, got {value!r}")
        return value

    @field_validator("max_retries")
    @classmethod
    def _check_retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"LLMClient max_retries must be >= 0 (0: no retry), got {value!r}")
        return value

    @field_validator("backoff", "max_backoff")
    @classmethod
    def _check_backoff(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"LLMClient backoff/max_backoff must be >= 0 seconds, got {value!r}")
        return value

    # -- public --------------------------------------------------------------------------------
    @property
    def resolved_base_url(self) -> str:
        """The URL requests go to (``base_url``, ``$OPENAI_BASE_URL`` or OpenAI's)."""
        with self._client() as client:
            return str(client.base_url).rstrip("/")

    def complete(self, messages: Sequence[Mapping[str, str]]) -> Completion:
        """The model's answer to ``messages`` (``[{"role": "system"|"user"|"assistant",
        "content": "..."}, ...]``), with retries; raises :class:`LLMError` when the server
        cannot give one."""
        checked = _check_messages(messages)
        started = time.monotonic()
        with self._client() as client:

            def attempt() -> tuple[str, int | None, int | None, str, str | None]:
                if self.stream:
                    return self._streamed(client, checked)
                return self._plain(client, checked)

            (text, prompt, done, model, finish), attempts, waited = self._retrying(client, attempt)
        return Completion(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=done,
            seconds=time.monotonic() - started,
            attempts=attempts,
            model=model,
            finish_reason=finish,
            waited=waited,
        )

    def list_models(self) -> list[str]:
        """The model names the server offers (``GET /models``), with the same retries."""
        with self._client() as client:
            names, _, _ = self._retrying(client, lambda: [m.id for m in client.models.list()])
        return names

    # -- internals -----------------------------------------------------------------------------
    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if not key:
            _log.info(
                "$%s is not set; sending a placeholder key (fine for local servers)",
                self.api_key_env,
            )
            return NO_KEY
        return key

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self._api_key(),
            base_url=self.base_url or None,
            timeout=self.timeout,
            max_retries=0,
        )

    def _request_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"model": self.model, "temperature": self.temperature}
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        return options

    def _plain(
        self, client: openai.OpenAI, messages: list[dict[str, str]]
    ) -> tuple[str, int | None, int | None, str, str | None]:
        response = client.chat.completions.create(
            messages=cast(Any, messages), stream=False, **self._request_options()
        )
        choices = getattr(response, "choices", None)
        if not choices:
            raise _Fail(
                f"the server answered without choices: {str(response)[:300]!r}",
                "the server does not speak the chat-completions format; check the base URL",
            )
        message = choices[0].message
        if message.content is None:
            refusal = getattr(message, "refusal", None)
            raise _Fail(
                "the reply has no text content" + (f" (refusal: {refusal!r})" if refusal else ""),
                "the model answered with something other than text; try another model",
            )
        usage = response.usage
        return (
            message.content,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            response.model or self.model,
            choices[0].finish_reason,
        )

    def _streamed(
        self, client: openai.OpenAI, messages: list[dict[str, str]]
    ) -> tuple[str, int | None, int | None, str, str | None]:
        stream = client.chat.completions.create(
            messages=cast(Any, messages),
            stream=True,
            stream_options={"include_usage": True},
            **self._request_options(),
        )
        parts: list[str] = []
        prompt: int | None = None
        done: int | None = None
        model = self.model
        finish: str | None = None
        with stream:
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    prompt, done = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index == 0 and choice.delta.content:
                        parts.append(choice.delta.content)
                    if choice.index == 0 and choice.finish_reason:
                        finish = choice.finish_reason
        if finish is None:
            raise _Retry("the stream ended before the reply was finished (no finish_reason)")
        return "".join(parts), prompt, done, model, finish

    def _retrying(self, client: openai.OpenAI, call: Callable[[], _T]) -> tuple[_T, int, float]:
        """``call()``'s result, the attempts it took and the seconds waited in between."""
        base_url = str(client.base_url).rstrip("/")
        attempts_allowed = 1 + self.max_retries
        waited = 0.0
        last = ""
        for attempt in range(1, attempts_allowed + 1):
            try:
                return call(), attempt, waited
            except Exception as exc:
                outcome = self._classify(exc)
                if isinstance(outcome, _Fail):
                    raise self._error(base_url, attempt, outcome.reason, outcome.hint) from exc
            last = outcome.reason
            if attempt == attempts_allowed:
                break
            wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            if outcome.retry_after is not None:
                wait = min(max(outcome.retry_after, 0.0), self.max_backoff)
            _log.warning(
                "LLM request to %s (model %r), attempt %d/%d failed: %s; retrying in %.2f s",
                base_url, self.model, attempt, attempts_allowed, last, wait,
            )  # fmt: skip
            time.sleep(wait)
            waited += wait
        raise self._error(base_url, attempts_allowed, last, self._hint_for(last))

    def _classify(self, exc: Exception) -> _Retry | _Fail:
        if isinstance(exc, (_Retry, _Fail)):
            return exc
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            reason = f"HTTP {status}: {_server_message(exc)}"
            if status in RETRY_STATUSES or status >= 500:
                return _Retry(reason, _retry_after(exc.response.headers))
            return _Fail(reason, self._hint_for_status(status))
        if isinstance(exc, openai.APITimeoutError) or _is_transport(exc, timeout=True):
            return _Retry(f"no answer within timeout={self.timeout:g} s")
        if isinstance(exc, openai.APIConnectionError) or _is_transport(exc, timeout=False):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__}: {cause})" if cause else f" ({exc})"
            return _Retry("cannot connect" + detail)
        if isinstance(exc, openai.APIResponseValidationError):
            return _Fail(
                f"the answer is not a chat completion: {exc}",
                "the server does not speak the chat-completions format; check the base URL",
            )
        if isinstance(exc, openai.APIError):  # an error event in a stream, ...
            return _Retry(f"{type(exc).__name__}: {exc}")
        raise exc

    def _hint_for_status(self, status: int) -> str:
        if status in (401, 403):
            where = (
                f"${self.api_key_env} is not set"
                if not os.environ.get(self.api_key_env)
                else f"check the key in ${self.api_key_env}"
            )
            return f"the server refused the key: {where} (LLMClient.api_key_env names the variable)"
        if status == 404:
            return (
                f"check the model name {self.model!r} (GET <base_url>/models lists the server's "
                "models) and that the base URL ends in /v1"
            )
        return "the server refused the request as malformed; see its message above"

    def _hint_for(self, reason: str) -> str:
        if reason.startswith("cannot connect"):
            return (
                "check that the server is running and reachable at that URL (e.g. `vllm serve`, "
                "`ollama serve`), or pass another --base-url / LLMClient.base_url"
            )
        if reason.startswith("no answer within"):
            return "raise LLMClient.timeout, or use a smaller/faster model"
        if reason.startswith("HTTP 429"):
            return "the server keeps rate-limiting; wait, or raise max_retries / backoff"
        return "the server keeps failing; check its logs, or raise max_retries / backoff"

    def _error(self, base_url: str, attempts: int, reason: str, hint: str) -> LLMError:
        return LLMError(
            f"LLM request to {base_url} (model {self.model!r}) failed after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {reason}. {hint}"
        )


def _check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not messages:
        raise RewriteError(
            "LLMClient.complete() needs a non-empty list of messages "
            f'({{"role": ..., "content": ...}}), got {messages!r:.80}'
        )
    checked = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise RewriteError(
                f"message {i} must have a role in {list(_ROLES)} and text content, got "
                f"role={role!r}, content of type {type(content).__name__}"
            )
        checked.append({"role": role, "content": content})
    return checked


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])[:500]
    text = exc.response.text if exc.response is not None else ""
    return (text or str(exc))[:500]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / scale
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, IndexError):
            return None
    return None


def _transport_classes(attribute: str) -> tuple[type[BaseException], ...]:
    """``attribute`` of the HTTP library under ``openai`` (``httpx2`` for openai 3, ``httpx``
    for 2): errors raised while a stream is read are not wrapped in openai's types."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        cls = getattr(module, attribute, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _is_transport(exc: BaseException, *, timeout: bool) -> bool:
    if timeout:
        return isinstance(exc, _transport_classes("TimeoutException"))
    return isinstance(exc, _transport_classes("TransportError"))
