"""A scripted, OpenAI-compatible chat-completions server for tests (real HTTP on 127.0.0.1).

It is a *test double*, not a model: every answer comes from a **script**, an ordered list of
:class:`Step` s written by hand (in the test, or in a fixture file of ``tests/rewrite/fixtures``).
Each request to ``POST /v1/chat/completions`` consumes the next step:

* a reply (``Step.reply(text)``): a chat completion whose ``choices[0].message.content`` is the
  text; non-streaming JSON, or Server-Sent Events when the request says ``"stream": true``
  (``chat.completion.chunk`` objects, usage in a last chunk when ``stream_options.include_usage``
  is set, then ``data: [DONE]``);
* an HTTP error (``Step.error(429, retry_after=0.2)``, 500, 503, 401, ...) with an OpenAI-style
  ``{"error": {...}}`` body and, for 429/503, a ``Retry-After`` header when given;
* either of them after a ``delay`` in seconds (to make a client time out).

When the script is exhausted the server answers 500 with a message saying so. ``GET /v1/models``
lists :attr:`FakeOpenAI.models`. If :attr:`FakeOpenAI.api_key` is set, requests without
``Authorization: Bearer <that key>`` get 401 (and consume no step).

Every request is recorded (:attr:`FakeOpenAI.requests`: path, headers, JSON body, arrival time)
so tests can assert on what the client sent and when.

Fixture files (see :func:`load_script`) are JSON::

    {"fixture": "SCRIPTED TEST FIXTURE: hand-written, not model output. ...",
     "steps": [{"status": 429, "retry_after": 0.2},
               {"reply_file": "rewrite_ok.md"},
               {"reply": "...", "delay": 1.5}]}

and reply files (``.md``) start with a line ``<!-- SCRIPTED TEST FIXTURE ... -->`` that the
loader checks and strips. Both markers are required, so no fixture can pass for model output.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "FIXTURE_DIR",
    "FIXTURE_MARKER",
    "FakeOpenAI",
    "RecordedRequest",
    "Step",
    "fixture_files",
    "load_script",
    "running_server",
]

FIXTURE_DIR = Path(__file__).parent / "fixtures"
FIXTURE_MARKER = "SCRIPTED TEST FIXTURE"
"""Every fixture file (JSON script or reply) must carry this text at its top."""

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("server_error", "timeout"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "overloaded"),
}


@dataclass(frozen=True)
class Step:
    """One scripted answer: ``status`` 200 with ``content``, or an error status with
    ``message``; after ``delay`` seconds. ``usage`` overrides the token counts the server reports
    (default: words of the prompt / of the reply); ``chunks`` the pieces of a streamed reply
    (default: pieces of 7 characters)."""

    content: str | None = None
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    usage: Mapping[str, int] | None = None
    chunks: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.chunks is not None and "".join(self.chunks) != (self.content or ""):
            raise ValueError("a step's chunks must join to its content")

    @classmethod
    def reply(cls, content: str, *, delay: float = 0.0, **kwargs: Any) -> Step:
        return cls(content=content, delay=delay, **kwargs)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> Step:
        if status < 400:
            raise ValueError(f"an error step needs a status >= 400, got {status}")
        return cls(status=status, message=message, retry_after=retry_after, delay=delay)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: Mapping[str, Any]
    received: float  # time.monotonic() on arrival

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


def _check_marker(text: str, where: Path) -> None:
    if FIXTURE_MARKER not in text[:500]:
        raise ValueError(
            f"{where} does not start with the {FIXTURE_MARKER!r} label; every scripted reply "
            "must say it is a hand-written fixture, not model output"
        )


def _read_reply(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    _check_marker(first, path)
    return rest


def load_script(name: str | Path, directory: Path = FIXTURE_DIR) -> list[Step]:
    """The steps of the JSON script ``name`` (a file of ``directory``, ``.json`` optional);
    ``reply_file`` entries are read from the same directory."""
    path = Path(name)
    if not path.is_absolute():
        path = directory / path
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    data = json.loads(path.read_text(encoding="utf-8"))
    _check_marker(str(data.get("fixture", "")), path)
    steps: list[Step] = []
    for i, raw in enumerate(data["steps"]):
        raw = dict(raw)
        if "reply_file" in raw:
            raw["content"] = _read_reply(path.parent / raw.pop("reply_file"))
        elif "reply" in raw:
            raw["content"] = raw.pop("reply")
        unknown = set(raw) - set(Step.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path} step {i}: unknown fields {sorted(unknown)}")
        steps.append(Step(**raw))
    return steps


def _words(text: str) -> int:
    return len(text.split())


class FakeOpenAI:
    """The server (see the module docstring). Start with :meth:`start` (or the ``fake_openai``
    fixture), give it a script with :meth:`play` / :meth:`play_file`."""

    def __init__(self, *, model_names: Iterable[str] = ("fake-model",)) -> None:
        self.models = list(model_names)
        self.api_key: str | None = None
        self.requests: list[RecordedRequest] = []
        self.responses: list[dict[str, Any]] = []  # usage etc. of each answered completion
        self._steps: list[Step] = []
        self._played = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay step
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what an OpenAI client takes as ``base_url``."""
        if self._server is None:
            raise RuntimeError("the fake server is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # -- script --------------------------------------------------------------------------------
    def play(self, steps: Iterable[Step]) -> FakeOpenAI:
        """Replace the script (and forget earlier requests)."""
        with self._lock:
            self._steps = list(steps)
            self._played = 0
            self.requests.clear()
            self.responses.clear()
        return self

    def play_file(self, name: str | Path) -> FakeOpenAI:
        return self.play(load_script(name))

    @property
    def remaining(self) -> int:
        """Steps not yet played."""
        return len(self._steps) - self._played

    @property
    def completions(self) -> list[RecordedRequest]:
        """The chat-completion requests received, in order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next_step(self) -> Step | None:
        with self._lock:
            if self._played >= len(self._steps):
                return None
            step = self._steps[self._played]
            self._played += 1
            return step

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_fake = fake

    return Handler


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _record(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            received=time.monotonic(),
        )
        self.server_fake._record(request)
        return request

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to tell it

    def _send_error(
        self, status: int, message: str, headers: Mapping[str, str] = {}, model: str | None = None
    ) -> None:
        kind, code = _ERROR_TYPES.get(status, ("server_error", "error"))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        if model is not None and status == 404:
            body["error"]["param"] = "model"
        self._send_json(status, body, headers)

    def _authorised(self, request: RecordedRequest) -> bool:
        key = self.server_fake.api_key
        if key is None or request.authorization == f"Bearer {key}":
            return True
        self._send_error(
            401,
            "Incorrect API key provided (fake server). Set the key the test configured.",
        )
        return False

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        request = self._record()
        if not self._authorised(request):
            return
        if self.path.rstrip("/") == "/v1/models":
            now = int(time.time())
            data = [
                {"id": m, "object": "model", "created": now, "owned_by": "fake-openai"}
                for m in self.server_fake.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"fake server: no route GET {self.path}")

    def do_POST(self) -> None:
        request = self._record()
        if not self._authorised(request):
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(404, f"fake server: no route POST {self.path}")
            return
        fake = self.server_fake
        step = fake._next_step()
        if step is None:
            self._send_error(
                500,
                f"fake server: the script is exhausted ({fake._played} steps played, request "
                f"{len(fake.completions)}); add steps to the test's script",
            )
            return
        fake._wait(step.delay)
        if step.status != 200:
            headers = {}
            if step.retry_after is not None:
                headers["Retry-After"] = f"{step.retry_after:g}"
            message = step.message or f"fake server: scripted HTTP {step.status}"
            self._send_error(step.status, message, headers, request.model)
            return
        content = step.content or ""
        prompt = sum(_words(str(m.get("content", ""))) for m in request.messages)
        usage = dict(step.usage or {"prompt_tokens": prompt, "completion_tokens": _words(content)})
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        model = request.model or "fake-model"
        ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        # recorded before the reply goes out: the client may read it as soon as it has the reply
        with fake._lock:
            fake.responses.append({"id": ident, "usage": usage, "stream": request.stream})
        if request.stream:
            include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
            chunks = list(step.chunks) if step.chunks is not None else _pieces(content, 7)
            self._stream(ident, created, model, chunks, usage if include_usage else None)
        else:
            self._send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                },
            )

    def _stream(
        self,
        ident: str,
        created: int,
        model: str,
        chunks: list[str],
        usage: Mapping[str, int] | None,
    ) -> None:
        def chunk(delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
            }

        events: list[Any] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in chunks]
        events.append(chunk({}, "stop"))
        if usage is not None:
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = dict(usage)
            events.append(final)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@contextlib.contextmanager
def running_server(**kwargs: Any) -> Iterator[FakeOpenAI]:
    """A started :class:`FakeOpenAI` (``kwargs`` go to it), stopped on exit."""
    fake = FakeOpenAI(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()


def fixture_files(directory: Path = FIXTURE_DIR) -> Iterator[Path]:
    """Every fixture file (``.json`` scripts, ``.md`` replies) under ``directory``."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md"):
            yield path
