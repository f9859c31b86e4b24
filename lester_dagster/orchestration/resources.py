"""Dagster resources of lester: the deletion ledger.

``LesterLedger`` (resource key :data:`LEDGER_KEY`) opens the :class:`~lester_dagster.store.Ledger`
at ``url`` (any SQLAlchemy URL: ``sqlite:////path/ledger.db``, ``postgresql://...``); by default
the SQLite file ``ledger.db`` in the lester home (``$DAGSTER_HOME/lester``), next to the
artifacts, so the UI, the sensor, runs and the ``lester-dagster`` command share one ledger.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from lester_dagster.store.ledger import Ledger, default_ledger_url

__all__ = ["LEDGER_KEY", "LesterLedger"]

LEDGER_KEY = "lester_ledger"
"""The resource key of the deletion ledger."""


class LesterLedger(dg.ConfigurableResource["LesterLedger"]):
    """The deletion ledger (see the module docstring)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger database. Default: sqlite:///"
        "$DAGSTER_HOME/lester/ledger.db.",
    )

    def resolved_url(self) -> str:
        return self.url or default_ledger_url()

    def open(self) -> Ledger:
        """A ledger connection; close it when done (``with resource.open() as ledger``)."""
        return Ledger(self.resolved_url())
