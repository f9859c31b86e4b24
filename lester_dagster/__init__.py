"""lester-dagster: declarative ML pipelines with fine-grained provenance and fast forgetting."""

from __future__ import annotations

from lester_dagster.errors import LesterError

__all__ = ["LesterError", "__version__"]

__version__ = "0.1.0"
