"""Proof that deletions took effect: every stored artifact checked against the ledger.

:func:`verify` takes the deletions in effect (the ledger's ``applied`` requests, and ``running``
ones, which the report flags: a run is applying them) and checks every stored artifact of a
pipeline, every partition:

* ``no_deleted_records``: no row of a source, the prepared rows, train, test, X_train, y_train,
  X_test, y_test or the model's training state has provenance that mentions a deleted record;
  no key index holds a deleted key; the model's training frame, X, y and unlearner hold the same
  rows, and the unlearner keeps no removed rows (tombstones) in its stored matrix;
* ``deleted_values_missing``: in the source asset, every deleted (record, column) value is
  missing;
* ``value_rows_reexecuted``: the prepared, train and test rows derived from a record with a
  deleted value equal a re-execution of the plan on those records
  (:func:`~lester_dagster.orchestration.forgetting.reexecute_rows` on the stored sources with
  the deletions enforced), and every re-executed row is stored;
* ``value_rows_reencoded``: the X_train, X_test and model X rows of those records equal the
  re-executed rows encoded with the model's fitted encoders (to 1e-9), and their y the label
  function of them;
* ``model_equals_refit`` (only with ``model=True``: it refits): the model's training rows are the
  stored train rows, its X equals an encoding by encoders refitted on them, its unlearner holds
  that X and y, and its parameters equal a refit on them (:meth:`Unlearner.reference_fit`)
  within the oracle's tolerance (:class:`~lester_dagster.ivm.oracle.OracleReport`: 1e-9
  relative to the largest parameter; for approximate strategies the oracle also accepts 1e-3
  of the distance of the model from before forgetting, which no longer exists once the data is
  gone, so verify holds them to the same bound).

A violation names the artifact (``asset[partition]``), what is wrong and how many rows. A plan
that aggregates the rows of a source with deleted values has no row identity to compare
(:func:`~lester_dagster.ivm.frames.deletion_rule` says ``recompute``): those comparisons are
skipped and the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
from sklearn.base import clone

from lester_dagster.errors import ArtifactNotFoundError, PlanError
from lester_dagster.features.matrix import encode_labels, fit_encode
from lester_dagster.ivm.frames import row_identity
from lester_dagster.ivm.oracle import MODEL_RTOL, X_TOLERANCE, OracleReport, provenance_order
from lester_dagster.models.linalg import max_abs_difference
from lester_dagster.orchestration.assets import PipelineAssets, build_assets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import (
    Deletions,
    deletions_of,
    key_indexes_for,
    stored_partitions,
)
from lester_dagster.orchestration.translator import LesterTranslator
from lester_dagster.orchestration.verify_checks import (
    CHECKS,
    DELETION_CHECKS,
    MODEL_CHECK,
    NO_DELETED_RECORDS,
    NO_STALE_VERSIONS,
    ROWS_REENCODED,
    ROWS_REEXECUTED,
    VALUES_MISSING,
    CheckResult,
    Verifier,
    Violation,
    max_abs_diff,
)
from lester_dagster.store.ledger import Ledger
from lester_dagster.store.requests import Request

__all__ = [
    "CHECKS",
    "DELETION_CHECKS",
    "MODEL_CHECK",
    "NO_DELETED_RECORDS",
    "CheckResult",
    "ModelVerdict",
    "VerifyReport",
    "Violation",
    "requests_in_effect",
    "verify",
    "verify_assets",
]


@dataclass(frozen=True)
class ModelVerdict:
    """The model against a refit on its remaining training data (``model=True``)."""

    strategy: str
    exact: bool
    rows_equal: bool  # the model's training rows are the stored train rows
    x_max_abs_diff: float  # its X against encoders refitted on those rows
    y_equal: bool
    data_consistent: bool  # its unlearner holds that X and y
    distance: float  # max abs parameter difference to a refit (inf: not comparable)
    tolerance: float
    ok: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "exact": self.exact,
            "rows_equal": self.rows_equal,
            "x_max_abs_diff": _finite(self.x_max_abs_diff),
            "x_tolerance": X_TOLERANCE,
            "y_equal": self.y_equal,
            "data_consistent": self.data_consistent,
            "distance": _finite(self.distance),
            "tolerance": self.tolerance,
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
        }


def _finite(value: float) -> float | str:
    """A float for JSON (the ledger stores the report): ``inf`` / ``nan`` as text."""
    return value if np.isfinite(value) else str(value)


@dataclass
class VerifyReport:
    """What :func:`verify` found (see the module docstring)."""

    pipeline: str
    request_ids: tuple[int, ...]
    running: tuple[int, ...]
    deleted_records: dict[str, int]
    deleted_values: dict[str, dict[str, int]]
    checks: dict[str, CheckResult]
    artifacts_checked: int
    model: ModelVerdict | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    @property
    def findings(self) -> list[Violation]:
        return [v for c in self.checks.values() for v in c.violations]

    @property
    def violations(self) -> list[str]:
        return [str(v) for v in self.findings]

    @property
    def keys_checked(self) -> int:
        """Deleted records and (record, column) values the artifacts were checked for."""
        values = sum(n for columns in self.deleted_values.values() for n in columns.values())
        return sum(self.deleted_records.values()) + values

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (what the ledger records as a request's verification)."""
        return {
            "ok": self.ok,
            "pipeline": self.pipeline,
            "violations": self.violations,
            "artifacts_checked": self.artifacts_checked,
            "requests": list(self.request_ids),
            "running": list(self.running),
            "deleted_records": dict(self.deleted_records),
            "deleted_values": {s: dict(c) for s, c in self.deleted_values.items()},
            "checks": {name: c.to_dict() for name, c in self.checks.items()},
            "model": None if self.model is None else self.model.to_dict(),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 6),
        }

    def lines(self) -> list[str]:
        """A human-readable summary (what ``lester-dagster verify`` prints)."""
        records = ", ".join(f"{n} of {s}" for s, n in sorted(self.deleted_records.items()))
        values = ", ".join(
            f"{n} {c} of {s}"
            for s, columns in sorted(self.deleted_values.items())
            for c, n in sorted(columns.items())
        )
        ids = ", ".join(f"#{i}" for i in self.request_ids) or "none"
        out = [
            f"pipeline {self.pipeline}: requests in effect {ids}"
            + (
                f" (still running: {', '.join(f'#{i}' for i in self.running)})"
                if self.running
                else ""
            ),
            f"deleted records: {records or 'none'}; deleted values: {values or 'none'}",
        ]
        for name, check in self.checks.items():
            state = "ok" if check.ok else f"FAILED ({len(check.violations)})"
            out.append(
                f"  {name:<24} {state:<12} {check.artifacts} artifact(s), {check.rows} row(s)"
            )
            out.extend(f"      - {v}" for v in check.violations)
            out.extend(f"      skipped: {why}" for why in check.skipped)
        if self.model is not None:
            m = self.model
            out.append(
                f"  model: {m.strategy} ({'exact' if m.exact else 'approximate'}), max |param "
                f"diff| to a refit {m.distance:.2e} (tolerance {m.tolerance:.2e}), X diff "
                f"{m.x_max_abs_diff:.2e}, refit in {m.seconds:.2f} s"
            )
        out.extend(f"  note: {note}" for note in self.notes)
        verdict = "ok" if self.ok else f"FAILED: {len(self.findings)} violation(s)"
        out.append(
            f"verification {verdict}: {self.artifacts_checked} artifact(s) checked in "
            f"{self.seconds:.2f} s"
        )
        return out


def requests_in_effect(
    ledger: Ledger | None, pipeline: str, *, run_id: str | None = None
) -> tuple[list[Request], tuple[int, ...]]:
    """The requests of ``pipeline`` whose deletions are in effect: applied ones and running
    ones (with ``run_id``: only those this run is applying); and the ids of the running ones."""
    if ledger is None:
        return [], ()
    found = [
        r
        for r in ledger.all(pipeline)
        if r.status == "applied"
        or (r.status == "running" and (run_id is None or r.run_id == run_id))
    ]
    return found, tuple(r.id for r in found if r.status == "running")


def verify(
    pipeline: LesterPipeline,
    io: LesterIOManager,
    ledger: Ledger | None,
    *,
    translator: LesterTranslator | None = None,
    model: bool = False,
) -> VerifyReport:
    """Check every stored artifact of ``pipeline`` against the deletions in effect in
    ``ledger`` (see the module docstring; ``None``: no deletion). ``model=True`` also compares
    the model with a refit (expensive). Raises :class:`ArtifactNotFoundError` if nothing of the
    pipeline is stored under ``io``'s root."""
    requests, running = requests_in_effect(ledger, pipeline.name)
    built = build_assets(pipeline, translator)
    return verify_assets(built, io, requests, running=running, model=model)


def verify_assets(
    built: PipelineAssets,
    io: LesterIOManager,
    requests: Sequence[Request],
    *,
    running: Collection[int] = (),
    model: bool = False,
    only: Iterable[dg.AssetKey] | None = None,
    checks: Iterable[str] | None = None,
    scope: Collection[tuple[dg.AssetKey, str | None]] | None = None,
) -> VerifyReport:
    """:func:`verify` with the assets already built and the requests in effect given; ``only``
    restricts it to some assets (an asset check), ``scope`` to some (asset, partition)
    artifacts (a deletion run: those its requests reached), ``checks`` to some checks
    (default: the deletion checks, and ``model_equals_refit`` if ``model``)."""
    started = time.perf_counter()
    selected = set(checks) if checks is not None else set(DELETION_CHECKS)
    if model:
        selected.add(MODEL_CHECK)
    unknown = selected - set(CHECKS)
    if unknown:
        raise PlanError(f"unknown checks {sorted(unknown)}; valid checks: {list(CHECKS)}")
    keys = list(built.keys.values())
    wanted = set(keys if only is None else only)
    if scope is not None:
        wanted &= {key for key, _ in scope}
    stored = [k for k in keys if k in wanted and stored_partitions(io, k)]
    if not stored:
        names = sorted(k.to_user_string() for k in wanted)
        raise ArtifactNotFoundError(
            f"no artifact of {names} of pipeline {built.pipeline.name!r} is stored under "
            f"{io.root()}; materialise the pipeline first (or point at its artifact root)"
        )
    indexes = key_indexes_for(built.pipeline, built, io) if requests else {}
    # a request of a source that is not stored cannot be hashed (its key index gives the key
    # columns' types), and nothing is derived from it until the source is materialised
    batch = [r for r in requests if r.source in indexes]
    notes = [
        f"request #{r.id} ({r.source}) not checked: source {r.source!r} is not stored; "
        "materialise it"
        for r in requests
        if r.source not in indexes
    ]
    deletions = deletions_of(batch, indexes) if batch else Deletions((), {}, {})
    verifier = Verifier(built, io, deletions, set(stored), scope)
    results = {name: CheckResult(name) for name in CHECKS if name in selected}
    if NO_DELETED_RECORDS in results:
        verifier.no_deleted_records(results[NO_DELETED_RECORDS])
    if VALUES_MISSING in results:
        verifier.values_missing(results[VALUES_MISSING])
    if ROWS_REEXECUTED in results:
        verifier.rows_reexecuted(results[ROWS_REEXECUTED])
    if ROWS_REENCODED in results:
        verifier.rows_reencoded(results[ROWS_REENCODED])
    if NO_STALE_VERSIONS in results:
        verifier.no_stale_versions(results[NO_STALE_VERSIONS])
    verdict = None
    if MODEL_CHECK in results:
        verdict = _model_equals_refit(verifier, results[MODEL_CHECK])
    return VerifyReport(
        built.pipeline.name,
        deletions.request_ids,
        tuple(sorted(i for i in running if i in deletions.request_ids)),
        {s: len(ids) for s, ids in deletions.instance.items()},
        {s: {c: len(i) for c, i in cols.items()} for s, cols in deletions.values.items()},
        results,
        verifier.artifacts,
        verdict,
        time.perf_counter() - started,
        notes,
    )


# -- (c) the model --------------------------------------------------------------------------------


def _model_equals_refit(verifier: Verifier, result: CheckResult) -> ModelVerdict | None:
    """(c): the model against a refit on its remaining training data (see the module
    docstring)."""
    key = verifier.built.key("model")
    if key not in verifier.stored:
        return None
    asset = verifier.name(key)
    started = time.perf_counter()
    result.artifacts += 1
    state = verifier.state()
    if state is None:
        result.add(asset, None, "is not a TrainingState; rematerialise the model", 1)
        return None
    train = verifier.whole(verifier.built.key("train"))
    unlearner = state.unlearner
    exact = unlearner.strategy == "exact"
    result.rows += state.prov.n
    if train is None or len(train) == 0:
        result.add(asset, None, "the train rows are not stored: nothing to refit on", 1)
        return None
    mine, theirs = provenance_order(state.prov), provenance_order(train.prov)
    rows_equal = len(mine) == len(theirs) and bool(
        np.array_equal(row_identity(state.prov)[mine], row_identity(train.prov)[theirs])
    )
    x_diff, y_equal = float("inf"), False
    if rows_equal:
        _, refitted = fit_encode(clone(verifier.pipeline.features()), train.to_result())
        x_diff = max_abs_diff(state.X[mine], refitted.X[theirs])
        y_ref = encode_labels(state.label, train.to_result(), inputs=state.label_inputs).y
        y_equal = bool(np.array_equal(np.asarray(state.y)[mine], np.asarray(y_ref)[theirs]))
    consistent = max_abs_diff(unlearner.X, state.X) <= X_TOLERANCE and bool(
        np.array_equal(np.asarray(unlearner.y), np.asarray(state.y))
    )
    reference = unlearner.parameters(unlearner.reference_fit())
    distance = max_abs_difference(unlearner.parameters(unlearner.model), reference)
    scale = max((float(np.abs(v).max()) for v in reference.values() if np.size(v)), default=1.0)
    oracle = OracleReport(rows_equal, x_diff, y_equal, distance, None, exact, scale)
    tolerance = MODEL_RTOL * max(1.0, scale)
    if not rows_equal:
        result.add(
            asset,
            None,
            f"trained on {state.prov.n} row(s) that are not the {len(train)} stored train rows",
            abs(state.prov.n - len(train)) or 1,
        )
    elif x_diff > X_TOLERANCE:
        result.add(
            asset,
            None,
            f"its X differs from encoders refitted on the train rows "
            f"(max abs diff {x_diff:.3g} > {X_TOLERANCE:g})",
            1,
        )
    elif not y_equal:
        result.add(asset, None, "its y differs from the label function of the train rows", 1)
    if not consistent:
        result.add(asset, None, "its model's training data is not its X and y", 1)
    if not oracle.model_ok:
        result.add(
            asset,
            None,
            f"its parameters differ from a refit on its training data "
            f"by {distance:.3g} (tolerance {tolerance:.3g}, strategy "
            f"{unlearner.strategy})",
            1,
        )
    return ModelVerdict(
        str(unlearner.strategy),
        exact,
        rows_equal,
        x_diff,
        y_equal,
        consistent,
        distance,
        tolerance,
        oracle.ok and consistent,
        time.perf_counter() - started,
    )
