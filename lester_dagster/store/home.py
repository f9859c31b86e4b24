"""Where lester keeps its files by default (artifacts, ledger, example data)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["lester_home"]


def lester_home() -> Path:
    """``$DAGSTER_HOME/lester`` when DAGSTER_HOME is set, else ``$LESTER_HOME`` or
    ``~/.lester-dagster``."""
    dagster_home = os.environ.get("DAGSTER_HOME")
    if dagster_home:
        return Path(dagster_home) / "lester"
    return Path(os.environ.get("LESTER_HOME") or Path.home() / ".lester-dagster")
