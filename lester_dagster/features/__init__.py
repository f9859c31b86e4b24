"""Feature encoding with matrix provenance, and decremental (forgetting) encoders."""

from __future__ import annotations

from lester_dagster.features.record import STRATEGIES, Strategy, UpdateRecord

__all__ = ["STRATEGIES", "Strategy", "UpdateRecord"]
