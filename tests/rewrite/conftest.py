"""Fixtures of the rewrite tests: a scripted OpenAI-compatible server on 127.0.0.1.

``fake_openai`` starts a :class:`~tests.rewrite.fake_openai.FakeOpenAI` (real HTTP, port chosen
by the OS) for one test and stops it afterwards; give it a script with ``fake_openai.play([...])``
or ``fake_openai.play_file("name")`` (a JSON script of ``tests/rewrite/fixtures``). Its answers
are hand-written fixtures, never model output.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rewrite.fake_openai import FakeOpenAI, running_server


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A running scripted server; ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` of the environment are
    removed so nothing reaches a real service by accident."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with running_server() as fake:
        yield fake
