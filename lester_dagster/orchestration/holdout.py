"""The held-out side of a deletion run: X_test and y_test brought up to date (mixed into the
run of :mod:`lester_dagster.orchestration.forgetting`).

Test rows that left are dropped; rows of records with deleted values are encoded and labelled
again; partitions the batch does not reach keep their stored rows (positions in the stored
X_test from the test partitions' sizes before the run). A scaler whose statistics moved maps
the kept rows' columns affinely (:attr:`TrainingUpdate.affine`); any other re-fitted encoder,
or a refit, re-encodes every test row from the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.features.matrix import FeatureMatrix, Labels
from lester_dagster.frame import ColumnRef, KeyResolver, Prov
from lester_dagster.ivm.frames import positions_in, row_identity, rows_mentioning
from lester_dagster.ivm.training import TrainingState, TrainingUpdate
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import (
    FrameArtifact,
    LabelsArtifact,
    key_indexes_of,
    without_keys,
)
from lester_dagster.orchestration.assets import PipelineAssets
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.reach import Deletions, Partition, stored_partitions

__all__ = ["HoldoutSide"]


class HoldoutSide:
    """X_test / y_test of a deletion run; the run provides the attributes and methods below."""

    pipeline: LesterPipeline
    assets: PipelineAssets
    io: LesterIOManager
    deletions: Deletions
    rows_before: dict[Partition, int]
    commit: Callable[..., None]

    def whole_side(
        self, side: Literal["train", "test"], loaded: Mapping[Partition, FrameArtifact]
    ) -> FrameArtifact:
        """Every stored partition of ``side`` (``loaded`` ones as given) as one frame."""
        key = self.assets.key(side)
        return concat_frames(
            [
                loaded[p] if p in loaded else self.io.load(key, p)
                for p in stored_partitions(self.io, key)
            ]
        )

    # -- 5. X_test, y_test ---------------------------------------------------------------------
    def test_rows(
        self, old: FeatureMatrix, test_parts: Mapping[Partition, FrameArtifact]
    ) -> tuple[npt.NDArray[np.intp], Prov, pd.DataFrame] | None:
        """For the test rows after the update (stored partitions in order): each row's position
        in the old X_test (-1: new or changed, to encode), their provenance, and the data of
        the rows to encode. Partitions not in ``test_parts`` are the old X_test's rows, as the
        deletions do not reach them; ``None`` if the old X_test does not consist of the test
        partitions' rows as they were before this run (e.g. a run that died between them)."""
        old_ids = row_identity(old.prov)
        value_ids = self.deletions.value_ids()
        positions: list[npt.NDArray[np.intp]] = []
        provs: list[Prov] = []
        fresh: list[pd.DataFrame] = []
        start = 0
        for partition in stored_partitions(self.io, self.assets.key("test")):
            count = self.rows_before.get(partition)
            if count is None or start + count > len(old_ids):
                return None
            begin = start
            block = np.arange(begin, begin + count, dtype=np.intp)
            start += count
            if partition not in test_parts:
                positions.append(block)
                provs.append(old.prov.take(block))
                continue
            new = test_parts[partition]
            at = positions_in(old_ids[block], row_identity(new.prov))
            at = np.where(at >= 0, at + begin, -1).astype(np.intp)
            at[rows_mentioning(new.prov, value_ids)] = -1
            positions.append(at)
            provs.append(new.prov)
            fresh.append(new.data.iloc[np.flatnonzero(at < 0)])
        if start != len(old_ids):
            return None
        rows = np.concatenate(positions) if positions else np.zeros(0, dtype=np.intp)
        prov = Prov.concat(provs) if provs else old.prov.take(rows)
        data = pd.concat(fresh, ignore_index=True) if fresh else pd.DataFrame()
        return rows, prov, data

    def test(
        self,
        state: TrainingState,
        test_parts: Mapping[Partition, FrameArtifact],
        updates: list[TrainingUpdate],
        refit: bool,
    ) -> None:
        x_key, y_key = self.assets.key("X_test"), self.assets.key("y_test")
        started = time.perf_counter()
        old = self.io.load(x_key)
        changed_blocks = sorted({b for u in updates for b in u.reencoded_blocks})
        maps = _composed_affine(updates)
        re_encoded = [b for b in changed_blocks if b not in maps]
        partial = None if refit or re_encoded else self.test_rows(old, test_parts)
        if partial is not None:
            rows, prov, fresh = partial
            same_rows = len(rows) == old.shape[0] and bool((rows == np.arange(len(rows))).all())
            if same_rows and not maps:
                return
            matrix = state.reencode_matrix(old, rows, fresh, prov, changed_blocks, maps)
            # X_test's keys, and those of the rows the reached partitions hold now
            carriers = [FrameArtifact(pd.DataFrame(), prov.take(rows[:0]), {}, key_indexes_of(old))]
            carriers += list(test_parts.values())
            indexes = concat_frames(carriers).key_indexes
            matrix = FeatureMatrix(matrix.X, matrix.prov, matrix.blocks, KeyResolver(indexes))
            lineage = next(iter(test_parts.values())).lineage if test_parts else {}
            labels = self.test_labels(rows, prov, fresh, indexes, lineage)
        else:
            test = self.whole_side("test", test_parts)
            if len(test) == 0:  # every test row deleted: encoders refuse empty input
                width = state.features.shape[1]
                empty = sp.csr_matrix((0, width)) if sp.issparse(state.X) else np.zeros((0, width))
                matrix = FeatureMatrix(empty, test.prov, state.features.blocks, old.resolve)
            elif refit:
                matrix = steps.encode_test(state, test)
            else:
                rows = positions_in(row_identity(old.prov), row_identity(test.prov))
                rows[rows_mentioning(test.prov, self.deletions.value_ids())] = -1
                unchanged = (
                    not changed_blocks
                    and len(rows) == old.shape[0]
                    and bool((rows == np.arange(len(rows))).all())
                )
                if unchanged:
                    return
                matrix = state.reencode_matrix(old, rows, test.data, test.prov, changed_blocks)
            labels = steps.testing_labels(self.pipeline, test)
        resolve = matrix.resolve
        if isinstance(resolve, KeyResolver):
            resolve = KeyResolver(
                without_keys(resolve.indexes, self.deletions.instance), strict=resolve.strict
            )
            matrix = FeatureMatrix(matrix.X, matrix.prov, matrix.blocks, resolve)
        strategy = (
            "encode"
            if refit
            else ("reencode " + ",".join(changed_blocks) if changed_blocks else "rows")
        )
        n_after = int(matrix.shape[0])
        self.commit(x_key, None, matrix, before=old.shape[0], after=n_after, started=started,
                    strategy=strategy)  # fmt: skip
        labels = LabelsArtifact(
            labels.labels, without_keys(labels.key_indexes, self.deletions.instance)
        )
        self.commit(y_key, None, labels, before=old.shape[0], after=n_after,
                    started=time.perf_counter(), strategy="rows")  # fmt: skip

    def test_labels(
        self,
        rows: npt.NDArray[np.intp],
        prov: Prov,
        fresh: pd.DataFrame,
        indexes: Mapping[str, pd.DataFrame],
        lineage: Mapping[str, frozenset[ColumnRef]],
    ) -> LabelsArtifact:
        """y_test after the update: old labels where a row is kept, the label function on the
        new or changed rows (labels are row-wise)."""
        stored: LabelsArtifact = self.io.load(self.assets.key("y_test"))
        old = stored.labels
        kept = rows >= 0
        y_old = np.asarray(old.y)
        if kept.all():
            y = y_old[rows]
        else:
            art = FrameArtifact(fresh, prov.take(np.flatnonzero(~kept)), lineage, indexes)
            y_new = np.asarray(steps.testing_labels(self.pipeline, art).y)
            y = np.empty(len(rows), dtype=np.result_type(y_old, y_new))
            y[kept] = y_old[rows[kept]]
            y[~kept] = y_new
        return LabelsArtifact(Labels(y, prov, old.inputs, old.lineage), indexes)


def _composed_affine(
    updates: Sequence[TrainingUpdate],
) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Per block, the affine map (ratio, shift) from its values before ``updates`` to after
    them, for the blocks every re-encoding of which was affine (absent: re-encode from data)."""
    maps: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    broken: set[str] = set()
    for update in updates:
        for name in update.reencoded_blocks:
            if name not in update.affine:
                broken.add(name)
                continue
            ratio, shift = update.affine[name]
            if name in maps:
                r0, s0 = maps[name]
                maps[name] = (r0 * ratio, s0 * ratio + shift)
            else:
                maps[name] = (ratio, shift)
    return {name: m for name, m in maps.items() if name not in broken}
