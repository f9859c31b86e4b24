"""Asset checks fail on broken artifacts: each check is made to fail by materialising with one
step monkeypatched to produce a broken (but storable) artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import scipy.sparse as sp

from lester_dagster.features.matrix import FeatureMatrix, Labels
from lester_dagster.orchestration import (
    FrameArtifact,
    LabelsArtifact,
    LesterPipeline,
    build_definitions,
    steps,
)
from lester_dagster.orchestration.definitions import pipeline_resources
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.resources import LesterLedger
from lester_dagster.store.atomic import collect_garbage
from lester_dagster.store.ledger import Ledger
from tests.orchestration.conftest import EXAMPLE_KEYS, Materialised
from tests.orchestration.test_verify import Forgotten, make_forgotten

Materialise = Callable[..., Materialised]


def _failed(run: Materialised) -> set[tuple[str, str]]:
    return {k for k, ok in run.checks().items() if not ok}


def test_y_shorter_than_x_fails_the_row_count_check(
    pipeline: LesterPipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    materialise_with: Materialise,
) -> None:
    original = steps.training_labels

    def drop_last(*args: Any) -> LabelsArtifact:
        good = original(*args)
        keep = np.arange(len(good) - 1)
        labels = Labels(good.y[keep], good.labels.prov.take(keep), good.labels.inputs,
                        good.labels.lineage)  # fmt: skip
        return LabelsArtifact(labels, good.key_indexes)

    monkeypatch.setattr(steps, "training_labels", drop_last)
    run = materialise_with(pipeline, tmp_path, raise_on_error=False)
    assert _failed(run) == {("X_train", "row_counts_consistent")}
    description = run.check_description("X_train", "row_counts_consistent")
    assert "row counts differ" in description
    rows = run.metadata("train")["dagster/row_count"]
    assert f"y_train {rows - 1}" in description


def test_x_wider_than_its_blocks_fails_the_leak_check(
    pipeline: LesterPipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    materialise_with: Materialise,
) -> None:
    original = steps.encode_test

    def extra_column(*args: Any) -> FeatureMatrix:
        good = original(*args)
        X = sp.hstack([good.X, sp.csr_matrix(np.ones((good.shape[0], 1)))], format="csr")
        return FeatureMatrix(X, good.prov, good.blocks, good.resolve)

    monkeypatch.setattr(steps, "encode_test", extra_column)
    run = materialise_with(pipeline, tmp_path, raise_on_error=False)
    assert _failed(run) == {("X_test", "no_provenance_columns")}
    assert "blocks' total" in run.check_description("X_test", "no_provenance_columns")


def test_a_column_without_lineage_fails_the_frame_check(
    pipeline: LesterPipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    materialise_with: Materialise,
) -> None:
    original = steps.split_rows

    def smuggle(pipeline: LesterPipeline, prepared: FrameArtifact, side: str) -> FrameArtifact:
        good = original(pipeline, prepared, side)
        if side != "test":
            return good
        data = good.data.assign(row_hash=np.arange(len(good)))
        return FrameArtifact(data, good.prov, good.lineage, good.key_indexes)

    monkeypatch.setattr(steps, "split_rows", smuggle)
    run = materialise_with(pipeline, tmp_path, raise_on_error=False)
    assert _failed(run) == {("test", "no_provenance_columns")}
    assert "row_hash" in run.check_description("test", "no_provenance_columns")


def test_rows_lost_in_the_split_fail_the_split_check(
    pipeline: LesterPipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    materialise_with: Materialise,
) -> None:
    original = steps.split_rows

    def lose_one(pipeline: LesterPipeline, prepared: FrameArtifact, side: str) -> FrameArtifact:
        good = original(pipeline, prepared, side)
        return good.take(np.arange(len(good) - 1)) if side == "train" else good

    monkeypatch.setattr(steps, "split_rows", lose_one)
    run = materialise_with(pipeline, tmp_path, raise_on_error=False)
    assert _failed(run) == {("test", "split_consistent")}


# -- no_deleted_data / model_equals_refit -------------------------------------------------------


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Forgotten:
    """After an IVM run of three requests (see ``tests/orchestration/test_verify.py``)."""
    return make_forgotten(tmp_path_factory.mktemp("checks"))


def _deletion_checks(
    forgotten: Forgotten, io: LesterIOManager, ledger: Ledger, names: tuple[str, ...]
) -> dict[tuple[str, str], Any]:
    """Run only the named checks (no asset is materialised) on a store and ledger."""
    url = str(ledger.url)
    defs = build_definitions(forgotten.pipeline, io_manager=io, ledger=LesterLedger(url=url))
    checks = [c for c in defs.asset_checks or () for k in c.check_keys if k.name in names]
    result = dg.materialize(
        [*(defs.assets or ()), *(defs.asset_checks or ())],
        selection=dg.AssetSelection.checks(*checks),
        resources=pipeline_resources(io, LesterLedger(url=url)),
        instance=dg.DagsterInstance.ephemeral(),
    )
    return {(e.asset_key.to_user_string(), e.check_name): e for e in
            result.get_asset_check_evaluations()}  # fmt: skip


def test_deletion_checks_pass_after_the_ivm_run(forgotten: Forgotten, tmp_path: Path) -> None:
    io, ledger = forgotten.copy(tmp_path)
    found = _deletion_checks(forgotten, io, ledger, ("no_deleted_data", "model_equals_refit"))
    assert {a for a, name in found if name == "no_deleted_data"} == EXAMPLE_KEYS
    assert ("model", "model_equals_refit") in found
    assert all(e.passed for e in found.values()), {k: e.description for k, e in found.items()}
    prepared = sum(
        len(io.load(dg.AssetKey("complaints"), p).data)
        for p in stored_partitions(io, dg.AssetKey("complaints"))
    )
    meta = {k: v.value for k, v in found["complaints", "no_deleted_data"].metadata.items()}
    assert meta["lester/deleted_keys_checked"] == 3 + 3  # customers, and subjects of mails
    assert meta["lester/rows_checked"] == prepared
    assert meta["lester/requests"] == [1, 2, 3]
    model = {k: v.value for k, v in found["model", "model_equals_refit"].metadata.items()}
    assert float(model["lester/model_distance"]) <= model["lester/model_tolerance"]


def test_no_deleted_data_fails_on_the_tampered_asset_only(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    customer = forgotten.customers[0]
    partition = next(
        p for p in stored_partitions(before, dg.AssetKey("complaints"))
        if (before.load(dg.AssetKey("complaints"), p).data.customer_id == customer).any()
    )  # fmt: skip
    io.store(dg.AssetKey("complaints"), before.load(dg.AssetKey("complaints"), partition),
             partition)  # fmt: skip
    collect_garbage(io.path_for(dg.AssetKey("complaints"), partition))  # only the data is wrong
    found = _deletion_checks(forgotten, io, ledger, ("no_deleted_data",))
    failed = {a for (a, _), e in found.items() if not e.passed}
    assert failed == {"complaints"}
    assert f"complaints[{partition}]: " in str(found["complaints", "no_deleted_data"].description)


def test_model_equals_refit_fails_for_a_model_that_did_not_forget(
    forgotten: Forgotten, tmp_path: Path
) -> None:
    io, ledger = forgotten.copy(tmp_path)
    before = LesterIOManager(base_path=str(forgotten.before))
    old = before.load(dg.AssetKey("model")).unlearner.model
    state = io.load(dg.AssetKey("model"))
    state.unlearner.model.coef_ = old.coef_.copy()
    state.unlearner.model.intercept_ = old.intercept_.copy()
    io.store(dg.AssetKey("model"), state)
    collect_garbage(io.path_for(dg.AssetKey("model")))  # only the parameters are wrong
    found = _deletion_checks(forgotten, io, ledger, ("no_deleted_data", "model_equals_refit"))
    assert {k for k, e in found.items() if not e.passed} == {("model", "model_equals_refit")}
    assert "its parameters differ from a refit" in str(
        found["model", "model_equals_refit"].description
    )


def test_model_equals_refit_is_left_out_of_the_main_job(pipeline: LesterPipeline) -> None:
    defs = build_definitions(pipeline)
    job = defs.resolve_job_def("complaints_job")
    selected = {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph
                .asset_check_keys}  # fmt: skip
    assert ("model", "no_deleted_data") in selected
    assert ("model", "model_equals_refit") not in selected
    every = {(k.asset_key.to_user_string(), k.name) for c in defs.asset_checks or ()
             for k in c.check_keys}  # fmt: skip
    assert ("model", "model_equals_refit") in every  # defined: it runs on demand from the UI
    (check,) = [c for c in defs.asset_checks or () for k in c.check_keys
                if k.name == "model_equals_refit"]  # fmt: skip
    assert "On demand" in str(check.get_spec_for_check_key(next(iter(check.check_keys)))
                              .description)  # fmt: skip
