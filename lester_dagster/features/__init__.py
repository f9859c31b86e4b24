"""Feature encoding with matrix provenance, and decremental (forgetting) encoders.

* :func:`fit_encode` / :func:`encode`: a scikit-learn ColumnTransformer applied to an executed
  frame, giving a :class:`FeatureMatrix` whose rows keep the prepared rows' provenance and whose
  columns are cut into :class:`Block` s with source-column lineage; :func:`encode_labels` for y.
* :func:`track`: a :class:`Decremental` tracker for a fitted transformer, which updates it in
  place when rows are removed or values replaced, equal to a refit (or an explicit refit).
"""

from __future__ import annotations

from lester_dagster.features.decremental import Decremental, PipelineTracker, track
from lester_dagster.features.matrix import (
    Block,
    FeatureMatrix,
    Labels,
    XLineage,
    encode,
    encode_labels,
    fit_encode,
)
from lester_dagster.features.record import STRATEGIES, Strategy, UpdateRecord

__all__ = [
    "STRATEGIES",
    "Block",
    "Decremental",
    "FeatureMatrix",
    "Labels",
    "PipelineTracker",
    "Strategy",
    "UpdateRecord",
    "XLineage",
    "encode",
    "encode_labels",
    "fit_encode",
    "track",
]
