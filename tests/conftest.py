"""Session-wide isolation: lester's default home (artifacts, ledger, example data) points at a
temporary directory, so no test reads or writes ``~/.lester-dagster`` or a real
``$DAGSTER_HOME``. Tests that need their own home set ``DAGSTER_HOME`` with monkeypatch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_lester_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAGSTER_HOME", raising=False)
        patch.setenv("LESTER_HOME", str(tmp_path_factory.mktemp("lester_home")))
        yield
