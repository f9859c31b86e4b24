"""Fixtures of the rewrite tests: a scripted OpenAI-compatible server on 127.0.0.1.

``fake_openai`` starts a :class:`~tests.rewrite.fake_openai.FakeOpenAI` (real HTTP, port chosen
by the OS) for one test and stops it afterwards; give it a script with ``fake_openai.play([...])``
or ``fake_openai.play_file("name")`` (a JSON script of ``tests/rewrite/fixtures``). Its answers
are hand-written fixtures, never model output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


MESSY = Path(__file__).resolve().parents[2] / "examples" / "messy"
"""The messy example scripts (examples/messy)."""

EXAMPLES = {
    "complaint_mails": ("complaints_loops.py", "complaints", "rewrite_complaints"),
    "churn": ("churn_pandas.py", "churn", "rewrite_churn"),
    "machine_failures": ("sensors_numpy.py", "sensors", "rewrite_sensors"),
}
"""Pipeline name -> (messy script, its dataset, the scripted server's fixture script)."""


@pytest.fixture(scope="session")
def messy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The messy scripts' generated sample data: ``<root>/<dataset>/`` (seeded, small)."""
    from examples.messy import data as messy_data_module

    root = tmp_path_factory.mktemp("messy-sample-data")
    messy_data_module.write_all(root)
    return root
