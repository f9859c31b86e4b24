"""What every incremental update reports: :class:`UpdateRecord`.

Encoders (``lester_dagster.features``) and models (``lester_dagster.models``) return one record
per update, so a run can say, per component, which strategy it used (never a silent refit), how
long it took and, for approximate strategies, how far the result is from a from-scratch fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["STRATEGIES", "Strategy", "UpdateRecord"]

Strategy = Literal["exact", "stateless", "newton", "newton+refine", "refit", "unchanged"]
STRATEGIES: tuple[str, ...] = (
    "exact",
    "stateless",
    "newton",
    "newton+refine",
    "refit",
    "unchanged",
)


@dataclass(frozen=True)
class UpdateRecord:
    """One component's update after rows were removed (or values replaced).

    * ``strategy``: ``exact`` (equal to a refit up to float rounding), ``stateless`` (nothing to
      update), ``newton`` / ``newton+refine`` (approximate, see ``residual_grad_norm``),
      ``refit`` (the component was refitted on the remaining rows, explicitly), ``unchanged``
      (nothing removed);
    * ``changed``: whether the fitted state changed (if so, dependent X columns must be redone);
    * ``residual_grad_norm``: for optimisation-based updates, the gradient norm of the new
      objective at the returned parameters;
    * ``distance_to_refit``: when a check was asked for, max abs difference of the parameters
      to a from-scratch fit on the remaining rows.
    """

    component: str
    strategy: Strategy
    seconds: float
    rows_removed: int
    changed: bool
    residual_grad_norm: float | None = None
    distance_to_refit: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-friendly dict (for Dagster metadata and the ledger)."""
        return asdict(self)
