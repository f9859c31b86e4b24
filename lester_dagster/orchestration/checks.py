"""Asset checks on the stored artifacts (they read the committed manifests, not the values).

* ``no_provenance_columns`` on every rows asset, X and y: no user-visible column (nor a
  transformer input, nor a label input) carries the reserved provenance prefix
  (:data:`lester_dagster.frame.RESERVED_PREFIX`), every column has column lineage, and X is
  exactly as wide as its transformer blocks, which tile it without gaps;
* ``row_counts_consistent`` on X_train (X_train rows == train rows == y_train length == rows
  the model was fitted on) and X_test (X_test rows == test rows == y_test length);
* ``split_consistent`` on test: train rows + test rows == prepared rows.

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

from lester_dagster.errors import ArtifactError, ArtifactNotFoundError
from lester_dagster.frame import RESERVED_PREFIX
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LINEAGE_KEY, LesterIOManager
from lester_dagster.orchestration.pipeline import StepKind
from lester_dagster.store import Manifest

__all__ = ["build_checks"]

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
    return checks
