"""Compare two stores of the same pipeline: the artifacts after IVM with a full recompute.

The oracle of forgetting: materialise the pipeline again from the sources without the deleted
records / values (the source assets apply the ledger, so a rematerialisation *is* that
recompute) and compare every artifact with the IVM-updated one, row by row through provenance
(row order may differ):

* frames (sources, prepared rows, train, test): the same rows with the same values;
* X_train / X_test: the same shape and entries (max abs difference);
* y: the same labels;
* model: the max abs difference of its parameters from the recomputed model's, within
  :data:`~lester_dagster.ivm.oracle.MODEL_RTOL` relative to the largest parameter (the same
  bound ``lester-dagster verify --model`` applies; approximate strategies refine until they
  meet it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lester_dagster.features.matrix import FeatureMatrix
from lester_dagster.ivm.frames import row_identity
from lester_dagster.ivm.oracle import MODEL_RTOL, X_TOLERANCE
from lester_dagster.ivm.training import TrainingState
from lester_dagster.orchestration.artifacts import FrameArtifact, LabelsArtifact
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.reach import stored_partitions
from lester_dagster.orchestration.verify_checks import max_abs_diff

__all__ = ["StoreComparison", "compare_stores"]


@dataclass(frozen=True)
class StoreComparison:
    """The differences between two stores (see the module docstring)."""

    frames: Mapping[str, bool]
    x_max_diff: Mapping[str, float]
    labels: Mapping[str, bool]
    model_distance: float
    model_scale: float
    model_strategy: str
    problems: tuple[str, ...] = field(default=())

    @property
    def model_tolerance(self) -> float:
        return MODEL_RTOL * max(1.0, self.model_scale)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and all(self.frames.values())
            and all(d <= X_TOLERANCE for d in self.x_max_diff.values())
            and all(self.labels.values())
            and self.model_distance <= self.model_tolerance
        )

    def lines(self) -> list[str]:
        out = [
            f"{name:<10} rows and values {'equal' if same else 'DIFFER'}"
            for name, same in self.frames.items()
        ]
        out += [f"{name:<10} max |diff| {d:.1e}" for name, d in self.x_max_diff.items()]
        out += [
            f"{name:<10} labels {'equal' if same else 'DIFFER'}"
            for name, same in self.labels.items()
        ]
        out.append(
            f"{'model':<10} max |param diff| {self.model_distance:.1e} (tolerance "
            f"{self.model_tolerance:.0e}, strategy {self.model_strategy})"
        )
        out += [f"problem: {p}" for p in self.problems]
        return out


def _load(io: LesterIOManager, key: Any) -> Any:
    parts = stored_partitions(io, key)
    values = [io.load(key, p) for p in parts]
    if not values:
        return None
    return values[0] if len(values) == 1 else concat_frames(values)


def _order(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
    return np.argsort(ids, kind="stable")


def _frames_equal(a: FrameArtifact, b: FrameArtifact) -> bool:
    if len(a) != len(b) or sorted(a.columns) != sorted(b.columns):
        return False
    ia, ib = row_identity(a.prov), row_identity(b.prov)
    oa, ob = _order(ia), _order(ib)
    if not np.array_equal(ia[oa], ib[ob]):
        return False
    left = a.data.iloc[oa].reset_index(drop=True)
    right = b.data.iloc[ob].reset_index(drop=True)[list(left.columns)]
    try:
        pd.testing.assert_frame_equal(left, right, check_dtype=False)
    except AssertionError:
        return False
    return True


def _x_diff(a: FeatureMatrix, b: FeatureMatrix) -> float:
    if a.shape != b.shape:
        return float("inf")
    ia, ib = row_identity(a.prov), row_identity(b.prov)
    oa, ob = _order(ia), _order(ib)
    if not np.array_equal(ia[oa], ib[ob]):
        return float("inf")
    return max_abs_diff(a.X[oa], b.X[ob])


def _labels_equal(a: LabelsArtifact, b: LabelsArtifact) -> bool:
    ia, ib = row_identity(a.labels.prov), row_identity(b.labels.prov)
    oa, ob = _order(ia), _order(ib)
    return bool(
        np.array_equal(ia[oa], ib[ob]) and np.array_equal(np.asarray(a.y)[oa], np.asarray(b.y)[ob])
    )


def compare_stores(
    assets: PipelineAssets, ivm: LesterIOManager, recompute: LesterIOManager
) -> StoreComparison:
    """Compare every artifact of ``assets``' pipeline in store ``ivm`` with store
    ``recompute`` (see the module docstring)."""
    pipeline = assets.pipeline
    problems: list[str] = []
    frames: dict[str, bool] = {}
    keys = [assets.key("source", name) for name in pipeline.sources]
    keys += [assets.key("prepared"), assets.key("train"), assets.key("test")]
    for key in keys:
        a, b = _load(ivm, key), _load(recompute, key)
        if a is None or b is None:
            problems.append(f"{key.to_user_string()} is missing from a store")
            continue
        frames[key.to_user_string()] = _frames_equal(a, b)
    x_diff: dict[str, float] = {}
    labels: dict[str, bool] = {}
    for x_kind, y_kind in (("X_train", "y_train"), ("X_test", "y_test")):
        xa, xb = _load(ivm, assets.key(x_kind)), _load(recompute, assets.key(x_kind))  # type: ignore[arg-type]
        ya, yb = _load(ivm, assets.key(y_kind)), _load(recompute, assets.key(y_kind))  # type: ignore[arg-type]
        if xa is None or xb is None or ya is None or yb is None:
            problems.append(f"{x_kind} or {y_kind} is missing from a store")
            continue
        x_diff[x_kind] = _x_diff(xa, xb)
        labels[y_kind] = _labels_equal(ya, yb)
    ma, mb = _load(ivm, assets.key("model")), _load(recompute, assets.key("model"))
    distance, scale, strategy = float("inf"), 1.0, "missing"
    if isinstance(ma, TrainingState) and isinstance(mb, TrainingState):
        mine = ma.unlearner.parameters(ma.model)
        theirs = mb.unlearner.parameters(mb.model)
        strategy = str(ma.unlearner.strategy)
        if set(mine) == set(theirs) and all(
            np.shape(mine[k]) == np.shape(theirs[k]) for k in theirs
        ):
            distance = max(
                (float(np.abs(np.asarray(mine[k]) - np.asarray(theirs[k])).max(initial=0.0))
                 for k in theirs),
                default=0.0,
            )  # fmt: skip
            scale = max(
                (float(np.abs(np.asarray(v)).max(initial=0.0)) for v in theirs.values()),
                default=1.0,
            )
        else:
            problems.append("the models have different parameter shapes")
    else:
        problems.append("a model artifact is missing or not a TrainingState")
    return StoreComparison(frames, x_diff, labels, distance, scale, strategy, tuple(problems))
