"""End-to-end tests start real processes (``dagster dev``, a browser); deselect them with
``pytest -m "not e2e"``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test starting real processes (deselect: -m 'not e2e')"
    )
