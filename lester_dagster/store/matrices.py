"""The file of one matrix (X, or a matrix a stored object keeps apart) and its manifest spec.

* CSR / CSC sparse matrices: ``.bin``, the raw ``data``, ``indices`` and ``indptr`` buffers one
  after the other at aligned offsets (as pickled objects' buffers: ``store.pickling``), with
  offsets, dtypes and lengths in the spec (``"encoding": "raw"``). Written and read at file
  speed: no zip container with its own CRC pass and copies (the store's sha256 already guards
  the file), and loaded as views into one writable buffer.
* Other sparse formats, and any sparse matrix when compressed: scipy's ``.npz``.
* Dense 2-d numeric arrays: numpy's ``.npy``.

Artifacts written as ``.npz`` by earlier releases still load (the spec has no ``encoding``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.store.manifest import HashingWriter
from lester_dagster.store.pickling import aligned_offsets, write_aligned

__all__ = ["Dump", "matrix_file", "read_matrix"]

Dump = Callable[[HashingWriter], None]
_ARRAYS = ("data", "indices", "indptr")


def matrix_file(X: Any, compress: bool = False) -> tuple[dict[str, Any], str, Dump]:
    """The manifest spec, file suffix and writer of matrix ``X``."""
    if sp.issparse(X):
        spec: dict[str, Any] = {
            "layout": "sparse",
            "format": X.format,
            "shape": [int(d) for d in X.shape],
            "dtype": X.dtype.str,
            "nnz": int(X.nnz),
        }
        if compress or X.format not in ("csr", "csc"):

            def dump_npz(w: HashingWriter) -> None:
                sp.save_npz(w, X, compressed=compress)

            return spec, ".npz", dump_npz
        arrays = [np.ascontiguousarray(getattr(X, name)) for name in _ARRAYS]
        offsets = aligned_offsets(array.nbytes for array in arrays)
        layout = {
            name: [offset, array.dtype.str, int(array.size)]
            for name, array, offset in zip(_ARRAYS, arrays, offsets, strict=True)
        }

        def dump_raw(w: HashingWriter) -> None:
            write_aligned(w, [array.data.cast("B") for array in arrays])

        return {**spec, "encoding": "raw", "arrays": layout}, ".bin", dump_raw
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype != object:

        def dump_dense(w: HashingWriter) -> None:
            np.save(w, X, allow_pickle=False)

        spec = {
            "layout": "dense",
            "format": "ndarray",
            "shape": [int(d) for d in X.shape],
            "dtype": X.dtype.str,
            "nnz": None,
        }
        return spec, ".npy", dump_dense
    raise UnstorableError(
        "X must be a 2-d numeric numpy array or a scipy sparse matrix, got "
        f"{type(X).__name__} of shape {getattr(X, 'shape', None)}"
    )


def _read_raw(spec: Mapping[str, Any], raw: bytes | bytearray) -> Any:
    blob = raw if isinstance(raw, bytearray) else bytearray(raw)  # writable, as it was saved
    arrays = {}
    for name in _ARRAYS:
        offset, dtype, count = spec["arrays"][name]
        arrays[name] = np.frombuffer(blob, dtype=np.dtype(dtype), count=int(count), offset=offset)
    kind = sp.csr_matrix if spec["format"] == "csr" else sp.csc_matrix
    shape = tuple(int(d) for d in spec["shape"])
    return kind((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape, copy=False)


def read_matrix(spec: Mapping[str, Any], raw: bytes | bytearray, where: str) -> Any:
    """The matrix in ``raw`` (the file's bytes) as ``spec`` describes it."""
    try:
        if spec["layout"] == "sparse" and spec.get("encoding") == "raw":
            X: Any = _read_raw(spec, raw)
        elif spec["layout"] == "sparse":
            X = sp.load_npz(io.BytesIO(raw))
        else:
            X = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{where} is not a readable {spec['layout']} matrix ({exc})") from exc
    if list(X.shape) != list(spec["shape"]):
        raise ArtifactError(f"{where} has shape {X.shape}, the manifest says {spec['shape']}")
    return X
