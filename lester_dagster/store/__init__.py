"""The artifact store: atomic, checksummed files for frames, X, y and models, with provenance.

* :mod:`~lester_dagster.store.atomic`: atomic single-file writes and atomically published file
  sets (version directories + ``manifest.json`` as the commit point), on local disks and UPath
  filesystems (object stores);
* :mod:`~lester_dagster.store.artifacts`: ``save_*`` / ``load_*`` for frames (Parquet with
  provenance columns), labels, feature matrices (raw CSR buffers, .npy, .npz) and objects
  (pickle 5, raw array buffers);
* :mod:`~lester_dagster.store.matrices` and :mod:`~lester_dagster.store.pickling`: the files of
  matrices and objects; :mod:`~lester_dagster.store.links`: a file written once and hard-linked
  into the next artifact that stores the same object (X_train's X into the model's state);
* :mod:`~lester_dagster.store.manifest`: the manifest (kind, rows, sources, checksums,
  metadata) and verified reads;
* :mod:`~lester_dagster.store.ledger`: the deletion ledger (SQLite by default, any SQLAlchemy
  URL), with the request model in :mod:`~lester_dagster.store.requests`.

No Dagster here: the IO manager in ``lester_dagster.orchestration`` builds on this.
"""

from __future__ import annotations

from lester_dagster.store.artifacts import (
    Stored,
    StoredFrame,
    StoredLabels,
    StoredMatrix,
    StoredObject,
    has_artifact,
    load_artifact,
    load_frame,
    load_key_indexes,
    load_labels,
    load_matrix,
    load_object,
    save_frame,
    save_labels,
    save_matrix,
    save_object,
    save_result,
)
from lester_dagster.store.atomic import (
    StorePath,
    atomic_write,
    atomic_write_bytes,
    clean_temp_files,
    collect_garbage,
    list_versions,
)
from lester_dagster.store.keys import KeyResolver
from lester_dagster.store.ledger import Ledger, default_ledger_path, default_ledger_url
from lester_dagster.store.manifest import Manifest, read_manifest, verify
from lester_dagster.store.probe import StoredProvenance, load_empty_frame, load_provenance
from lester_dagster.store.requests import KINDS, STATUSES, TRANSITIONS, Event, Key, Request

__all__ = [
    "KINDS",
    "STATUSES",
    "TRANSITIONS",
    "Event",
    "Key",
    "KeyResolver",
    "Ledger",
    "Manifest",
    "Request",
    "StorePath",
    "Stored",
    "StoredFrame",
    "StoredLabels",
    "StoredMatrix",
    "StoredObject",
    "StoredProvenance",
    "atomic_write",
    "atomic_write_bytes",
    "clean_temp_files",
    "collect_garbage",
    "default_ledger_path",
    "default_ledger_url",
    "has_artifact",
    "list_versions",
    "load_artifact",
    "load_empty_frame",
    "load_frame",
    "load_key_indexes",
    "load_labels",
    "load_matrix",
    "load_object",
    "load_provenance",
    "read_manifest",
    "save_frame",
    "save_labels",
    "save_matrix",
    "save_object",
    "save_result",
    "verify",
]
