"""The paper's Figure 4 on our system: recompute vs our IVM vs the prototype's approach.

``lester-dagster bench`` (and ``benchmarks/figure4.py``) run :func:`run_benchmark`; see
:mod:`lester_dagster.bench.command` for the options, :mod:`~lester_dagster.bench.runner` for what
is measured, :mod:`~lester_dagster.bench.baseline` for the prototype-style baseline and
:mod:`~lester_dagster.bench.report` for the CSV, Markdown and plot.
"""

from __future__ import annotations

from lester_dagster.bench.command import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "run_benchmark"]
