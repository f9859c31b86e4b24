"""Asset checks fail on broken artifacts: each check is made to fail by materialising with one
step monkeypatched to produce a broken (but storable) artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from lester_dagster.features.matrix import FeatureMatrix, Labels
from lester_dagster.orchestration import FrameArtifact, LabelsArtifact, LesterPipeline, steps
from tests.orchestration.conftest import Materialised

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
