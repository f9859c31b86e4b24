"""The nightly rematerialisation of a partitioned pipeline, as Dagster declarative automation.

An unpartitioned pipeline gets a plain schedule running ``<name>_job``. A partitioned one
cannot: a schedule launches one run of the job without a partition key, which its partitioned
assets refuse ("Cannot access partition_key for a non-partitioned run"), and one run per
partition would refit X, y and the model once per partition, before the other partitions were
rebuilt. Instead every asset carries :func:`nightly_condition` and the automation sensor
``<name>_nightly`` (:func:`nightly_sensor`, created stopped like the schedule) evaluates it:
after each cron tick it requests every partition of the sources, the prepared rows, train and
test, and the unpartitioned assets, as one asset backfill (``emit_backfills``), which runs each
asset after the partitions it reads.

Dagster's ``AutomationCondition.on_cron`` waits for *one* partition of each dependency (its
``all_deps_match`` is true when any partition of every dependency matches): the model would be
refitted as soon as the first train partition was rebuilt. :func:`nightly_condition` waits for
*every* partition of every dependency: updated since the tick, or requested in the same
evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

__all__ = ["nightly_condition", "nightly_sensor"]


def nightly_condition(cron: str, timezone: str = "UTC") -> dg.AutomationCondition[Any]:
    """True for an asset partition once per tick of ``cron``, after every partition of every
    dependency it reads was updated since that tick (or is requested with it)."""
    tick: dg.AutomationCondition[Any] = dg.AutomationCondition.cron_tick_passed(cron, timezone)
    updated = dg.AutomationCondition.newly_updated().since(tick)
    ready = updated | dg.AutomationCondition.will_be_requested()
    return (tick.since_last_handled() & ~dg.AutomationCondition.any_deps_match(~ready)).with_label(
        f"nightly({cron}, {timezone}): every dependency partition updated since the tick"
    )


def nightly_sensor(
    name: str, assets: Iterable[dg.AssetKey], pipeline: str, cron: str
) -> dg.AutomationConditionSensorDefinition:
    """The automation sensor that runs :func:`nightly_condition` of a pipeline's ``assets``
    (created stopped: turn it on in the UI, as the schedule of an unpartitioned pipeline)."""
    return dg.AutomationConditionSensorDefinition(
        name,
        target=dg.AssetSelection.assets(*assets),
        default_status=dg.DefaultSensorStatus.STOPPED,
        emit_backfills=True,
        description=(
            f"Rematerialise every asset and partition of {pipeline!r} from its sources after "
            f"each tick of {cron!r} (the sources apply the deletion ledger), as one backfill."
        ),
    )
