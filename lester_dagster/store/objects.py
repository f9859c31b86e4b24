"""Save and load one Python object (a model with its forgetting state) as an artifact.

A version holds the object's pickle-5 stream (``object.pkl``) and its out-of-band buffers:
buffers of whole rows (a training state's per-row arrays) in row segments, the others in
``buffers.bin``; matrices and frames the object shares with other artifacts (X_train's X, the
training rows, key indexes) are stored apart, in row segments where they can be, so the files
X_train and y_train just wrote are hard-linked (:mod:`lester_dagster.store.fileset`).
``object.joblib`` instead when saved compressed.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.frame import Prov
from lester_dagster.store import pickling, segmented, segments
from lester_dagster.store.atomic import StorePath
from lester_dagster.store.fileset import FileSet, read_version, save_version
from lester_dagster.store.manifest import HashingWriter, Manifest
from lester_dagster.store.matrices import matrix_file, read_matrix

__all__ = ["StoredObject", "load_object", "save_object"]


@dataclass(frozen=True, eq=False)
class StoredObject:
    value: Any
    manifest: Manifest


# -- objects -------------------------------------------------------------------------------------
def save_object(
    path: StorePath,
    value: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    rows: int | None = None,
    sources: Iterable[str] = (),
    compress: int = 0,
    shared: Mapping[str, Any] | None = None,
    row_prov: Prov | None = None,
) -> Manifest:
    """Store one Python object (e.g. a model and its forgetting state).

    By default as pickle protocol 5 with its array buffers written raw beside the stream
    (:mod:`lester_dagster.store.pickling`: ``object.pkl`` + ``buffers.bin``), which writes and
    loads large arrays at file speed; ``compress`` > 0 uses joblib with zlib at that level
    (``object.joblib``: smaller, slower). Objects that refer to each other (a tracker and the
    transformer inside a ColumnTransformer) must be saved *together*, in one object (a tuple,
    dict or dataclass), so the references stay shared after loading. ``rows``/``sources`` (what
    the object was fitted on) go to the manifest for reports.

    ``shared`` names matrices (numpy arrays, scipy sparse) that ``value`` refers to and that are
    stored as matrix files of their own (``shared-<name>.bin|npy|npz``) instead of inside the
    pickle; one that another artifact of this process just stored (X_train's X, the same
    object) is hard-linked, not written again (:mod:`lester_dagster.store.links`). Ignored
    when ``compress`` is set.

    ``shared`` may also name DataFrames (the training rows, key indexes): those of numeric
    and pyarrow-backed text columns are stored in row segments of their own (a key index cut by
    key id, as X's key indexes are, so they are linked), the others pickled with the object.

    ``row_prov`` is the provenance of the rows the object keeps per-row arrays of (a model
    state's training rows). With it, a shared CSR matrix or frame of these rows is stored in
    row segments as X is (:func:`save_matrix`: X_train's segments are linked), and so is every
    out-of-band buffer of whole rows (``n`` rows of the same width, at least 64 KiB): a
    deletion then rewrites the segments that held its rows, not the whole object.
    """
    kind = type(value)
    described = {"type": f"{kind.__module__}.{kind.__qualname__}"}

    def write(files: FileSet) -> dict[str, Any]:
        try:
            if compress:
                files.write(
                    "object", "object.joblib", lambda w: joblib.dump(value, w, compress=compress)
                )
                return {**described, "format": "joblib", "joblib": joblib.__version__}
            ends = (
                segmented.ends_of(row_prov)
                if row_prov is not None and segmented.segmentable(row_prov)
                else None
            )
            n = row_prov.n if row_prov is not None else 0
            apart: dict[str, Any] = {}
            external: dict[str, Any] = {}
            for name, item in (shared or {}).items():
                if isinstance(item, pd.DataFrame):
                    framed = _shared_frame(files, f"shared-{name}", item, ends, n)
                    if framed is not None:  # else pickled with the object
                        apart[name], external[name] = framed, item
                    continue
                external[name] = item
                csr = sp.issparse(item) and item.format == "csr"
                if ends is not None and csr and item.shape[0] == n:
                    stored = segmented.csr_segments(files, f"shared-{name}", item, ends)
                    apart[name] = {**segmented.csr_base(item), **stored}
                    continue
                spec, suffix, dump = matrix_file(item)
                files.shared(f"shared-{name}", f"shared-{name}{suffix}", item, dump)
                apart[name] = spec
            stream = io.BytesIO()
            views = pickling.collect(value, stream, external)
            # buffers of whole rows (n rows of w bytes: the training rows' arrays) go to row
            # segments; the others, one after the other, to buffers.bin
            blocks: dict[str, npt.NDArray[np.uint8]] = {}
            rest: list[memoryview] = []
            for i, view in enumerate(views):
                whole_rows = n > 0 and view.nbytes % n == 0
                if ends is not None and whole_rows and view.nbytes >= segmented.ROW_BUFFER_BYTES:
                    blocks[str(i)] = np.frombuffer(view, dtype=np.uint8).reshape(n, -1)
                else:
                    rest.append(view)
            by_rows = None
            if blocks:  # one segment file per row range holds every such buffer's rows
                by_rows = files.segments("rows", segments.Rows(n, blocks), ends)
            spans: pickling.Spans = []

            def dump_buffers(w: HashingWriter) -> None:
                spans.extend(pickling.write_aligned(w, rest))

            files.write("buffers", "buffers.bin", dump_buffers)

            def dump_stream(w: HashingWriter) -> None:
                w.write(stream.getbuffer())

            files.write("object", "object.pkl", dump_stream)
            return {
                **described,
                "format": "pickle5",
                "buffers": spans,
                "row_buffers": by_rows,
                "shared": apart,
            }
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise UnstorableError(
                f"{type(value).__name__} cannot be pickled ({exc}); everything it refers to "
                "must be picklable: keep functions at module level (lambdas and local "
                "functions are not) and drop open files, locks and connections"
            ) from exc

    return save_version(path, "object", rows, sources, metadata, write)


def _shared_frame(
    files: FileSet, prefix: str, frame: pd.DataFrame, ends: npt.NDArray[np.intp] | None, n: int
) -> dict[str, Any] | None:
    """A frame an object refers to, in row segments: cut by key id where it is a key index
    (indexed by uint64 key ids), as the object's rows where it has as many rows; None when its
    columns cannot be segmented (it is then pickled with the object)."""
    stored = segmented.frame_rows(frame)
    if stored is None:
        return None
    rows, described = stored
    if frame.index.dtype == np.uint64:  # a key index: cut by key id, as X's key indexes
        cuts = segmented.key_ends(frame.index.to_numpy())
    elif ends is not None and len(frame) == n:
        cuts = ends
    else:
        cuts = np.asarray([len(frame)], dtype=np.intp)
    return segmented.frame_segments(files, prefix, rows, described, cuts)


def _read_shared(name: str, spec: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> Any:
    """A value an object's stream refers to by ``name``, stored apart as ``spec`` says."""
    if spec.get("layout") == "frame":
        return segmented.read_frame(spec, data, where)
    if spec.get("encoding") == "segments":
        return segmented.read_csr(spec, data, where)
    return read_matrix(spec, data[f"shared-{name}"], where)


def _buffers(content: Mapping[str, Any], data: Mapping[str, bytes], where: str) -> list[memoryview]:
    """An object's out-of-band buffers in pickling order: those in buffers.bin (at their
    spans) and those stored as row segments (``row_buffers``, by position), all writable."""
    rest = pickling.views_at(data["buffers"], content["buffers"])  # ValueError: load_object
    described = content.get("row_buffers")
    by_rows = segments.read(described, data, where)[0] if described else {}
    in_file = iter(rest)
    out: list[memoryview] = []
    for i in range(len(rest) + len(by_rows)):
        block = by_rows.get(str(i))
        if block is not None:
            out.append(block.reshape(-1).data.cast("B"))
            continue
        part = next(in_file, None)
        if part is None:
            raise ValueError(f"buffer {i} is missing")
        out.append(part)
    return out


def load_object(path: StorePath, *, verify: bool = True) -> StoredObject:
    """Load an object stored by :func:`save_object` (unpickles: trusted stores only)."""
    manifest, data = read_version(path, "object", verify)
    form = manifest.content.get("format", "joblib")
    where = manifest.files["object"].path
    try:
        if form == "joblib":
            return StoredObject(joblib.load(io.BytesIO(data["object"])), manifest)
        if form == "pickle5":
            apart = {
                name: _read_shared(name, spec, data, where)
                for name, spec in manifest.content.get("shared", {}).items()
            }
            value = pickling.load_parts(
                data["object"], _buffers(manifest.content, data, where), external=apart
            )
            return StoredObject(value, manifest)
    except (KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ArtifactError(f"{where} is not a readable {form} object ({exc})") from exc
    raise ArtifactError(
        f"{where} is stored as {form!r}; this lester-dagster reads 'pickle5' and 'joblib'. "
        "Upgrade lester-dagster or rematerialise the asset"
    )
