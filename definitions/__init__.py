"""Dagster code location of this repository (``dagster dev`` loads it through workspace.yaml).

The running example's assets (customers, mails, complaints, train/test, X/y, model) are added
by the Dagster-integration issue; until then the code location is empty, so ``dagster dev``
starts and shows no assets.
"""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions()
