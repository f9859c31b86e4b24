"""Dagster code location of this repository (``dagster dev`` loads it through workspace.yaml).

``defs`` holds every pipeline module of this folder: a module (name not starting with ``_``)
that defines ``pipeline`` (a ``LesterPipeline``) or ``pipelines`` (a list), optionally
``translator`` (a ``LesterTranslator``) and/or ``defs`` (a ``dagster.Definitions``) is picked
up; see :func:`lester_dagster.orchestration.discover_definitions`. ``complaints.py`` is the
running example (assets ``customers``, ``mails``, ``complaints``, ``train``, ``test``,
``X_train``, ``y_train``, ``X_test``, ``y_test``, ``model`` in group ``complaints``).
Modules written by ``lester-dagster rewrite`` land here too (their assets keyed under their
pipeline's name). ``rewrite_job`` (op ``llm_rewrite``, resource ``llm``) runs that rewrite
from the launchpad (:mod:`lester_dagster.rewrite.job`).
"""

from __future__ import annotations

import dagster as dg

from lester_dagster.orchestration import discover_definitions
from lester_dagster.rewrite.job import rewrite_definitions

defs = dg.Definitions.merge(discover_definitions(__name__), rewrite_definitions())
