"""Asset checks on the stored artifacts (they read the committed manifests, not the values).

* ``no_provenance_columns`` on every rows asset, X and y: no user-visible column (nor a
  transformer input, nor a label input) carries the reserved provenance prefix
  (:data:`lester_dagster.frame.RESERVED_PREFIX`), every column has column lineage, and X is
  exactly as wide as its transformer blocks, which tile it without gaps;
* ``row_counts_consistent`` on X_train (X_train rows == train rows == y_train length == rows
  the model was fitted on) and X_test (X_test rows == test rows == y_test length);
* ``split_consistent`` on test: train rows + test rows == prepared rows;
* ``no_deleted_data`` on every asset: against the deletions in effect in the ledger (applied
  and running requests), no row of the asset derives from a deleted record, no key index holds
  a deleted key, deleted values are missing (sources), and rows and X rows of records with
  deleted values equal a re-execution (:mod:`lester_dagster.orchestration.verify`; these
  read the artifacts, not only their manifests, when there is a deletion);
* ``model_equals_refit`` on the model: the model equals a refit on its remaining training
  data. It refits, so it is kept out of ``<name>_job`` (:func:`on_demand_check_keys`): run it
  from the asset's page in the UI.

A check whose artifact is missing fails and says which asset to materialise. For a partitioned
asset (per file or key-hash bucket, each asset with its own partitions) a check reads the
manifests of all its materialised partitions (``<asset dir>/<partition key>``): row counts are
summed, columns checked per partition; ``split_consistent`` compares the partitions of test that
exist.
"""

# No ``from __future__ import annotations`` here: Dagster checks the ``context`` annotation of
# asset and check functions by identity, so annotations must be real objects, not strings.

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg
from dagster import AssetCheckExecutionContext

from lester_dagster.errors import ArtifactError, ArtifactNotFoundError, LesterError
from lester_dagster.frame import RESERVED_PREFIX
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LINEAGE_KEY, LesterIOManager
from lester_dagster.orchestration.pipeline import StepKind
from lester_dagster.orchestration.resources import LEDGER_KEY, LesterLedger
from lester_dagster.orchestration.verify import (
    DELETION_CHECKS,
    MODEL_CHECK,
    NO_DELETED_RECORDS,
    VerifyReport,
    requests_in_effect,
    verify_assets,
)
from lester_dagster.store import Manifest

__all__ = ["MODEL_EQUALS_REFIT", "NO_DELETED_DATA", "build_checks", "on_demand_check_keys"]

NO_DELETED_DATA = "no_deleted_data"
"""The check on every asset that no data of a deleted record or value remains in it."""
MODEL_EQUALS_REFIT = MODEL_CHECK
"""The on-demand check that the model equals a refit on its remaining training data."""

Verdict = tuple[bool, str, dict[str, Any]]
Manifests = Callable[[dg.AssetKey], dict[str | None, Manifest]]
"""An asset's committed manifests by partition key (``None``: the unpartitioned artifact)."""
Evaluate = Callable[[Manifests], Verdict]


def _reserved(names: Sequence[str]) -> list[str]:
    return [n for n in names if str(n).startswith(RESERVED_PREFIX)]


def _frame_clean(key: dg.AssetKey) -> Evaluate:
    def evaluate(manifests: Manifests) -> Verdict:
        columns: list[str] = []
        leaked: list[str] = []
        no_lineage: list[str] = []
        for m in manifests(key).values():
            part = list(m.content.get("schema", {}).get("columns", []))
            lineage = m.metadata.get(LINEAGE_KEY) or {}
            columns = columns or part
            leaked += [c for c in _reserved(part) if c not in leaked]
            no_lineage += [c for c in part if c not in lineage and c not in no_lineage]
        ok = not leaked and not no_lineage
        text = (
            f"{len(columns)} user columns, none reserved, all with lineage"
            if ok
            else f"reserved columns {leaked}; columns without lineage {no_lineage}"
        )
        return ok, text, {"columns": len(columns), "leaked": leaked, "no_lineage": no_lineage}

    return evaluate


def _matrix_clean(key: dg.AssetKey) -> Evaluate:
    def evaluate(manifests: Manifests) -> Verdict:
        (m,) = manifests(key).values()  # X is unpartitioned
        blocks = list(m.content.get("blocks", []))
        width = int(m.content["X"]["shape"][1])
        total = sum(int(b["stop"]) - int(b["start"]) for b in blocks)
        ordered = sorted(blocks, key=lambda b: int(b["start"]))
        tiled = all(
            int(b["start"]) == (int(ordered[i - 1]["stop"]) if i else 0)
            for i, b in enumerate(ordered)
        )
        leaked = _reserved([c for b in blocks for c in b["inputs"]])
        ok = not leaked and width == total and tiled
        text = (
            f"X width {width} == blocks' total {total}; no reserved inputs"
            if ok
            else f"X width {width}, blocks' total {total}, contiguous {tiled}, reserved {leaked}"
        )
        return ok, text, {"width": width, "blocks_total": total, "leaked": leaked}

    return evaluate


def _labels_clean(key: dg.AssetKey) -> Evaluate:
    def evaluate(manifests: Manifests) -> Verdict:
        inputs = {c for m in manifests(key).values() for c in m.content.get("inputs", [])}
        leaked = _reserved(sorted(inputs))
        text = "no reserved label inputs" if not leaked else f"reserved label inputs {leaked}"
        return not leaked, text, {"leaked": leaked}

    return evaluate


def _rows(manifests: Iterable[Manifest]) -> int:
    return sum(int(m.rows or 0) for m in manifests)


def _rows_equal(keys: Sequence[dg.AssetKey]) -> Evaluate:
    def evaluate(manifests: Manifests) -> Verdict:
        rows = {k.to_user_string(): _rows(manifests(k).values()) for k in keys}
        ok = len(set(rows.values())) == 1
        text = ("rows agree: " if ok else "row counts differ: ") + ", ".join(
            f"{k} {v}" for k, v in rows.items()
        )
        return ok, text, {"rows": rows}

    return evaluate


def _split_sums(prepared: dg.AssetKey, train: dg.AssetKey, test: dg.AssetKey) -> Evaluate:
    def evaluate(manifests: Manifests) -> Verdict:
        # partitioned: compare the partitions of test that are materialised
        tested = manifests(test)
        by_prepared, by_train = manifests(prepared), manifests(train)
        missing = [str(p) for p in tested if p not in by_prepared or p not in by_train]
        if missing:
            raise ArtifactError(
                f"partition(s) {missing} of {test.to_user_string()} exist but not of "
                f"{prepared.to_user_string()} / {train.to_user_string()}; materialise them"
            )
        total = _rows(by_prepared[p] for p in tested)
        parts = _rows(by_train[p] for p in tested), _rows(tested.values())
        ok = sum(parts) == total
        text = f"train {parts[0]} + test {parts[1]} {'==' if ok else '!='} prepared {total}"
        return ok, text, {"prepared": total, "train": parts[0], "test": parts[1]}

    return evaluate


def _check(
    built: PipelineAssets,
    asset: dg.AssetKey,
    name: str,
    description: str,
    evaluate: Evaluate,
    others: Sequence[dg.AssetKey] = (),
) -> dg.AssetChecksDefinition:
    resource_key = built.io_manager_key

    @dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        additional_deps=list(others),
        required_resource_keys={resource_key},
    )
    def _run(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        manager = getattr(context.resources, resource_key)
        if not isinstance(manager, LesterIOManager):
            return dg.AssetCheckResult(
                passed=False,
                description=f"resource {resource_key!r} is a {type(manager).__name__}, not a "
                "LesterIOManager; the checks read the lester artifact manifests",
            )

        def manifests(key: dg.AssetKey) -> dict[str | None, Manifest]:
            definition = built.partitions_def(key)
            if definition is None:
                return {None: manager.manifest(key)}
            found: dict[str | None, Manifest] = {}
            for partition in definition.get_partition_keys():
                try:
                    found[partition] = manager.manifest(key, partition)
                except ArtifactNotFoundError:
                    continue
            if not found:
                raise ArtifactError(
                    f"no partition of {key.to_user_string()} is materialised; materialise it"
                )
            return found

        try:
            ok, text, meta = evaluate(manifests)
        except ArtifactError as exc:
            return dg.AssetCheckResult(passed=False, description=str(exc))
        return dg.AssetCheckResult(
            passed=ok,
            description=text,
            metadata=meta,
            severity=dg.AssetCheckSeverity.ERROR,
        )

    return _run


def _verdict(report: VerifyReport, model: bool) -> tuple[str, dict[str, Any]]:
    """The description and metadata of a deletion check's result: rows checked are the
    asset's rows (``no_deleted_data``) or the model's training rows (``model_equals_refit``)."""
    rows = report.checks[MODEL_CHECK if model else NO_DELETED_RECORDS].rows
    meta: dict[str, Any] = {
        "lester/deleted_keys_checked": report.keys_checked,
        "lester/rows_checked": rows,
        "lester/artifacts_checked": report.artifacts_checked,
        "lester/requests": list(report.request_ids),
        "lester/violations": report.violations[:20],
    }
    if not model:
        compared = sum(c.rows for n, c in report.checks.items() if n != NO_DELETED_RECORDS)
        meta["lester/value_rows_compared"] = compared
    skipped = [why for c in report.checks.values() for why in c.skipped] + report.notes
    if skipped:
        meta["lester/skipped"] = skipped
    if report.running:
        meta["lester/running_requests"] = list(report.running)
    if report.model is not None:
        verdict = report.model.to_dict()
        meta["lester/model"] = verdict
        meta["lester/model_distance"] = verdict["distance"]
        meta["lester/model_tolerance"] = report.model.tolerance
    if not report.ok:
        return "; ".join(report.violations[:5]), meta
    if report.model is not None:
        m = report.model
        return (
            f"equals a refit on its {rows} remaining training rows: max |param diff| "
            f"{m.distance:.2e} <= {m.tolerance:.2e} ({m.strategy})",
            meta,
        )
    ids = ", ".join(f"#{i}" for i in report.request_ids) or "none"
    return (
        f"no data of {report.keys_checked} deleted record(s)/value(s) in {rows} row(s) "
        f"(requests in effect: {ids})",
        meta,
    )


def _deletion_check(
    built: PipelineAssets, asset: dg.AssetKey, name: str, description: str, model: bool
) -> dg.AssetChecksDefinition:
    resource_key = built.io_manager_key
    checks = (MODEL_CHECK,) if model else DELETION_CHECKS

    @dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        required_resource_keys={resource_key, LEDGER_KEY},
    )
    def _run(context: AssetCheckExecutionContext) -> dg.AssetCheckResult:
        manager = getattr(context.resources, resource_key)
        ledger_resource: LesterLedger = getattr(context.resources, LEDGER_KEY)
        if not isinstance(manager, LesterIOManager):
            return dg.AssetCheckResult(
                passed=False,
                description=f"resource {resource_key!r} is a {type(manager).__name__}, not a "
                "LesterIOManager; the checks read the lester artifacts",
            )
        try:
            with ledger_resource.open() as ledger:
                requests, running = requests_in_effect(ledger, built.pipeline.name)
            report = verify_assets(
                built, manager, requests, running=running, only=[asset], checks=checks
            )
        except LesterError as exc:
            return dg.AssetCheckResult(passed=False, description=str(exc))
        text, meta = _verdict(report, model)
        return dg.AssetCheckResult(
            passed=report.ok,
            description=text,
            metadata=meta,
            severity=dg.AssetCheckSeverity.ERROR,
        )

    return _run


def on_demand_check_keys(built: PipelineAssets) -> list[dg.AssetCheckKey]:
    """The checks that ``<name>_job`` leaves out (they are expensive: run them from the UI):
    ``model_equals_refit``."""
    return [dg.AssetCheckKey(built.key("model"), MODEL_EQUALS_REFIT)]


def _deletion_checks(built: PipelineAssets) -> list[dg.AssetChecksDefinition]:
    description = (
        "No data of a deleted record or value remains (requests applied or running in the "
        "deletion ledger): no row derives from a deleted record, no key index holds a deleted "
        "key, deleted values are missing, and rows and X rows of records with deleted values "
        "equal a re-execution of the plan (lester-dagster verify, for this asset)."
    )
    kinds: tuple[StepKind, ...] = (
        "prepared", "train", "test", "X_train", "y_train", "model", "X_test", "y_test",
    )  # fmt: skip
    keys = [built.key("source", s) for s in built.pipeline.sources]
    keys += [built.key(k) for k in kinds]
    checks = [_deletion_check(built, key, NO_DELETED_DATA, description, False) for key in keys]
    checks.append(
        _deletion_check(
            built,
            built.key("model"),
            MODEL_EQUALS_REFIT,
            "On demand (not part of the pipeline's job: it refits the model): the model's "
            "training rows are the stored train rows, its X equals encoders refitted on them, "
            "and its parameters equal a refit on that data within the oracle's tolerance "
            "(1e-9 relative to the largest parameter). Reports the distance.",
            True,
        )
    )
    return checks


def build_checks(built: PipelineAssets) -> list[dg.AssetChecksDefinition]:
    """The asset checks of a pipeline's assets (see the module docstring)."""
    pipeline = built.pipeline
    checks = []
    clean = "No provenance column leaked: no user column carries the reserved prefix "
    frames: list[dg.AssetKey] = [built.key("source", s) for s in pipeline.sources]
    rows: tuple[StepKind, ...] = ("prepared", "train", "test")
    frames += [built.key(k) for k in rows]
    leak_checks: list[tuple[list[dg.AssetKey], str, Any]] = [
        (frames, clean + "and every column has lineage.", _frame_clean),
        (
            [built.key("X_train"), built.key("X_test")],
            "No provenance column reaches the features: no transformer reads a reserved "
            "column, and X is exactly as wide as its transformer blocks.",
            _matrix_clean,
        ),
        (
            [built.key("y_train"), built.key("y_test")],
            "No provenance column is a label input.",
            _labels_clean,
        ),
    ]
    for keys, description, make in leak_checks:
        for key in keys:
            checks.append(_check(built, key, "no_provenance_columns", description, make(key)))
    train_kinds: tuple[StepKind, ...] = ("X_train", "train", "y_train", "model")
    train_chain = [built.key(k) for k in train_kinds]
    checks.append(
        _check(
            built,
            train_chain[0],
            "row_counts_consistent",
            "X_train rows == train rows == y_train length == rows the model was fitted on.",
            _rows_equal(train_chain),
            train_chain[1:],
        )
    )
    test_kinds: tuple[StepKind, ...] = ("X_test", "test", "y_test")
    test_chain = [built.key(k) for k in test_kinds]
    checks.append(
        _check(
            built,
            test_chain[0],
            "row_counts_consistent",
            "X_test rows == test rows == y_test length.",
            _rows_equal(test_chain),
            test_chain[1:],
        )
    )
    prepared, train, test = (built.key(k) for k in rows)
    checks.append(
        _check(
            built,
            test,
            "split_consistent",
            "train rows + test rows == prepared rows.",
            _split_sums(prepared, train, test),
            [prepared, train],
        )
    )
    checks.extend(_deletion_checks(built))
    return checks
