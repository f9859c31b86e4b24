"""A declarative, provenance-tracking dataframe.

Build a plan with the :class:`Frame` API (sources, then filter/select/join/...), run it with
:meth:`Frame.execute`, and ask the :class:`Result` for data (``to_pandas``) and lineage
(``lineage.backward``, ``lineage.forward``, ``lineage.columns``).
"""

from __future__ import annotations

from lester_dagster.frame.api import (
    Frame,
    GroupBy,
    execute,
    from_pandas,
    read_csv,
    read_json,
    read_parquet,
)
from lester_dagster.frame.engine import split_mask
from lester_dagster.frame.expr import Expr, col, lit, when
from lester_dagster.frame.plan import AGGREGATIONS, RESERVED_PREFIX, ColumnRef
from lester_dagster.frame.provenance import Prov
from lester_dagster.frame.result import KeyResolver, Lineage, Result, restore_result

__all__ = [
    "AGGREGATIONS",
    "RESERVED_PREFIX",
    "ColumnRef",
    "Expr",
    "Frame",
    "GroupBy",
    "KeyResolver",
    "Lineage",
    "Prov",
    "Result",
    "col",
    "execute",
    "from_pandas",
    "lit",
    "read_csv",
    "read_json",
    "read_parquet",
    "restore_result",
    "split_mask",
    "when",
]
