"""The paper's running example as a pipeline: customer complaint mails -> logistic regression.

Sources are the csv files of the example's data generator, in ``$LESTER_COMPLAINTS_DATA``
(default ``$DAGSTER_HOME/lester/data/complaints``, or ``~/.lester-dagster/data/complaints``
without DAGSTER_HOME). If they are missing, the source assets generate them (deterministically,
seed 0) with ``$LESTER_COMPLAINTS_CUSTOMERS`` customers (default 2,000) and say so in their
metadata (``lester/generated``) and log.

Preparation, features, label and model are those of
:mod:`lester_dagster.examples.complaints`.
"""

from __future__ import annotations

import os
from pathlib import Path

from lester_dagster.errors import PlanError
from lester_dagster.examples.complaints_pipeline import DEFAULT_CUSTOMERS, make_pipeline
from lester_dagster.orchestration import lester_home

__all__ = ["DEFAULT_CUSTOMERS", "data_dir", "make_pipeline", "pipeline"]


def data_dir() -> Path:
    """``$LESTER_COMPLAINTS_DATA``, else ``<lester home>/data/complaints``."""
    configured = os.environ.get("LESTER_COMPLAINTS_DATA")
    return Path(configured) if configured else lester_home() / "data" / "complaints"


def _customers() -> int:
    text = os.environ.get("LESTER_COMPLAINTS_CUSTOMERS", str(DEFAULT_CUSTOMERS))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise PlanError(
            f"LESTER_COMPLAINTS_CUSTOMERS must be a positive integer (customers to generate), "
            f"got {text!r}; unset it for the default {DEFAULT_CUSTOMERS}"
        )
    return value


pipeline = make_pipeline(data_dir(), _customers())
