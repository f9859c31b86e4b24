"""Dagster code location of this repository (``dagster dev`` loads it through workspace.yaml).

``defs`` holds every pipeline module of this folder: a module (name not starting with ``_``)
that defines ``pipeline`` (a ``LesterPipeline``) or ``pipelines`` (a list), optionally
``translator`` (a ``LesterTranslator``) and/or ``defs`` (a ``dagster.Definitions``) is picked
up; see :func:`lester_dagster.orchestration.discover_definitions`. ``complaints.py`` is the
running example (assets ``customers``, ``mails``, ``complaints``, ``train``, ``test``,
``X_train``, ``y_train``, ``X_test``, ``y_test``, ``model`` in group ``complaints``).
"""

from __future__ import annotations

from lester_dagster.orchestration import discover_definitions

defs = discover_definitions(__name__)
