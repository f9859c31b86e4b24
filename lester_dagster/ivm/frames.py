"""Frame-level IVM: how a prepared frame follows a deletion in one of its sources.

A prepared row derives from one provenance monomial: one record of each source it joins.
For a plan of filters, projections, computed columns, inner joins, unions and sorts, in which
the source is never on the right side of a left join:

* **instance deletion** of records ``K`` of source ``S``: the new result is the old result
  without the rows whose monomial mentions a record of ``K`` (the property tests of the frame
  check this against re-execution);
* **value deletion** of columns of records ``K``: the rows whose monomial mentions ``K`` are
  exactly the rows that re-executing the plan on ``S`` restricted to ``K`` (with the values
  now missing) and the other sources in full produces, keeping the rows that mention ``K``;
  every other row is unchanged.

:func:`deletion_rule` says whether a plan qualifies (``"rows"``) or needs a full recompute
(``"recompute"``: an aggregation or ``drop_duplicates`` above the source merges rows, so a
deletion changes values instead of removing rows; the right side of a left join turns a
matched row into an unmatched one). The fallback is recorded, never silent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from lester_dagster.frame import ColumnRef, Prov
from lester_dagster.frame.expr import Expr
from lester_dagster.frame.plan import (
    Aggregate,
    Distinct,
    Filter,
    Join,
    Node,
    Schema,
    Sort,
    Source,
)
from lester_dagster.frame.provenance import Ids, mix64

__all__ = [
    "DeletionRule",
    "deletion_rule",
    "positions_in",
    "reads_source",
    "row_identity",
    "rows_decided_by",
    "rows_mentioning",
]

DeletionRule: TypeAlias = Literal["rows", "recompute"]

_IDENTITY_SALT = 0x6C65_7374_6572_5269  # "lesterRi"


def reads_source(node: Node, source: str) -> bool:
    """True if the plan under ``node`` reads ``source``."""
    if isinstance(node, Source):
        return bool(node.spec.name == source)
    return any(reads_source(child, source) for child in node.children)


def _blockers(node: Node, source: str) -> list[str]:
    if isinstance(node, Source):
        return []
    found: list[str] = []
    if isinstance(node, (Aggregate, Distinct)) and reads_source(node.parent, source):
        found.append(
            f"{node.describe()} merges rows of {source!r}, so a deletion changes values "
            "instead of removing rows"
        )
    if isinstance(node, Join) and node.how == "left" and reads_source(node.right, source):
        found.append(
            f"{source!r} is on the right side of the left join {node.describe()}: a deleted "
            "record turns its matched rows into unmatched ones"
        )
    for child in node.children:
        found.extend(_blockers(child, source))
    return found


def deletion_rule(node: Node, source: str) -> tuple[DeletionRule, str]:
    """``("rows", why)`` if deletions in ``source`` can be applied row by row to the plan's
    result (see the module docstring), else ``("recompute", why)``."""
    if not reads_source(node, source):
        return "rows", f"the plan does not read {source!r}"
    blockers = _blockers(node, source)
    if blockers:
        return "recompute", "; ".join(blockers)
    return "rows", f"every row derives from at most one record of {source!r}, kept or dropped"


def _refs(schema: Schema, names: Iterable[str]) -> frozenset[ColumnRef]:
    out: frozenset[ColumnRef] = frozenset()
    for name in names:
        out |= schema.lineage.get(name, frozenset())
    return out


def _deciding(node: Node) -> frozenset[ColumnRef]:
    """The source columns an operator reads to decide which rows it produces, or their order."""
    if isinstance(node, Filter):
        predicate = node.predicate
        names = predicate.columns() if isinstance(predicate, Expr) else predicate.inputs
        return _refs(node.parent.schema, names)
    if isinstance(node, Join):
        return _refs(node.left.schema, node.left_on) | _refs(node.right.schema, node.right_on)
    if isinstance(node, Sort):
        return _refs(node.parent.schema, node.by)
    if isinstance(node, Distinct):
        schema = node.parent.schema
        return _refs(schema, node.subset or schema.columns)
    if isinstance(node, Aggregate):
        schema = node.parent.schema
        return _refs(schema, [*node.by, *(agg.column for agg in node.aggs)])
    return frozenset()


def rows_decided_by(node: Node, columns: Iterable[ColumnRef]) -> str | None:
    """The first operator of the plan under ``node`` whose choice of rows (or their order)
    reads one of the source ``columns`` (a filter predicate, a join key, a sort key, a
    drop_duplicates subset, a group-by), described; None if there is none.

    None means a value deletion of those columns changes only the values of the affected
    records' rows: each keeps the records it joined, so re-executing the records with just
    the partner records their rows mention gives the same rows as with the sources in full."""
    deleted = frozenset(columns)
    hit = sorted(f"{r.source}.{r.column}" for r in _deciding(node) & deleted)
    if hit:
        return f"{node.describe()} reads {', '.join(hit)}"
    for child in node.children:
        found = rows_decided_by(child, deleted)
        if found is not None:
            return found
    return None


def rows_mentioning(prov: Prov, ids: Mapping[str, Ids]) -> npt.NDArray[np.intp]:
    """Positions of the rows whose provenance mentions any of ``ids`` (source -> key ids)."""
    hit = np.zeros(prov.n, dtype=bool)
    for source, wanted in ids.items():
        if source in prov.sources and len(wanted):
            hit[prov.rows_mentioning(source, wanted)] = True
    return np.flatnonzero(hit)


def row_identity(prov: Prov) -> npt.NDArray[np.uint64]:
    """One 64-bit identity per row from its monomial (the key id of each source, in source
    name order); rows of the same records get the same identity in every artifact. A row with
    several monomials (aggregated) gets the wrapping sum of its monomials' identities: the
    same set of records gives the same identity, and removing one changes it."""
    width = int(prov.lengths().sum())
    combined = np.full(width, _IDENTITY_SALT, dtype=np.uint64)
    for source in sorted(prov.sources):
        combined = mix64(combined ^ prov.keys[source], _IDENTITY_SALT)
    if prov.single:
        return combined
    out = np.zeros(prov.n, dtype=np.uint64)  # one monomial: the same identity as single
    np.add.at(out, prov.row_of_monomial(), combined)
    return out


def positions_in(
    identities: npt.NDArray[np.uint64], of: npt.NDArray[np.uint64]
) -> npt.NDArray[np.intp]:
    """For each identity in ``of``, its position in ``identities`` (-1 where absent)."""
    order = np.argsort(identities, kind="stable")
    ranked = identities[order]
    at = np.searchsorted(ranked, of)
    at[at == ranked.size] = 0
    found = ranked.size > 0
    hit = (ranked[at] == of) if found else np.zeros(len(of), dtype=bool)
    out = np.full(len(of), -1, dtype=np.intp)
    if found:
        out[hit] = order[at[hit]]
    return out
