"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lester_dagster.store import links, segments


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> Iterator[None]:
    """Each test starts as a new process would: no remembered files to link (segments'
    catalogue, links' identity memo), so no test links a file another test wrote."""
    segments.CATALOGUE.clear()
    links.forget_all()
    yield
    segments.CATALOGUE.clear()
    links.forget_all()
