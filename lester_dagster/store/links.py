"""One file for two artifacts: written once and hard-linked into the next artifact.

X_train and the model's forgetting state hold the same X (one object in memory); X and y (train
or test) the same provenance and key indexes. The store writes each once: :func:`remember`
notes, after an artifact wrote an object's file, which file holds it; when a later artifact of
the same process stores the *same* object (identity, and unchanged since, checked by an xxh3-128
fingerprint of its buffers), :func:`link` hard-links that file into the new version directory
instead of serialising, hashing and writing it again. The manifest entry (sha256, size) is the
remembered one, and loading checks it as for any file.

Each version directory still holds every file it needs: when one artifact's old version is
collected, the other's link keeps the data until its own version goes too; a deletion run
replaces both, so no copy of forgotten rows outlives the run. Only local paths link (object
stores have no hard links); anything else (no entry, another filesystem, the file already
collected, the object changed) returns None and the caller writes the file as usual.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xxhash

from lester_dagster.frame import Prov

__all__ = ["IdentityMemo", "fingerprint", "forget_all", "link", "remember"]

T = TypeVar("T")


class IdentityMemo(Generic[T]):
    """Values remembered for objects by identity, valid while the object lives and holds the
    same content (its :func:`fingerprint`); only the ``limit`` most recent are kept. Objects
    without a fingerprint are never remembered."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self._items: OrderedDict[int, tuple[weakref.ref[Any], str, T]] = OrderedDict()

    def get(self, obj: Any) -> T | None:
        item = self._items.get(id(obj))
        if item is None or item[0]() is not obj:
            return None
        if fingerprint(obj) != item[1]:  # changed in place since
            self._items.pop(id(obj), None)
            return None
        return item[2]

    def put(self, obj: Any, value: T) -> None:
        mark = fingerprint(obj)
        if mark is None:
            return
        try:
            ref = weakref.ref(obj)
        except TypeError:  # pragma: no cover - arrays, matrices and frames take weak references
            return
        self._items.pop(id(obj), None)
        self._items[id(obj)] = (ref, mark, value)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True)
class _File:
    path: Path
    sha256: str
    size: int


_files: IdentityMemo[_File] = IdentityMemo()
"""The file each recent object was written to (a run links a file right after writing it)."""


def _parts(value: Any) -> tuple[str, list[np.ndarray]] | None:
    """A description and the arrays that make up ``value``, for the kinds that link."""
    if isinstance(value, np.ndarray):
        return f"ndarray:{value.shape}:{value.dtype.str}", [value]
    if sp.issparse(value) and value.format in ("csr", "csc"):
        return f"{value.format}:{value.shape}:{value.dtype.str}", [
            value.data,
            value.indices,
            value.indptr,
        ]
    if isinstance(value, Prov):
        arrays = [np.asarray(ids) for ids in value.keys.values()]
        if value.offsets is not None:
            arrays.append(np.asarray(value.offsets))
        return f"prov:{value.n}:{list(value.keys)}:{value.offsets is None}", arrays
    if isinstance(value, pd.DataFrame):  # a key index: numeric key columns, uint64 key ids
        columns = [value[c] for c in value.columns]
        if not all(c.dtype.kind in "biuf" for c in columns) or value.index.dtype.kind not in "iu":
            return None
        described = [(str(c), str(value[c].dtype)) for c in value.columns]
        return f"frame:{len(value)}:{described}", [
            *(c.to_numpy() for c in columns),
            value.index.to_numpy(),
        ]
    return None


def fingerprint(value: Any) -> str | None:
    """Kind, shape and xxh3-128 hash of the buffers of what can be linked: a numpy array, a CSR/CSC
    matrix, a :class:`~lester_dagster.frame.Prov`, or a key index (a DataFrame of numeric key
    columns indexed by key id). None for anything else: such values are never linked."""
    described = _parts(value)
    if described is None:
        return None
    kind, arrays = described
    digest = xxhash.xxh3_128()
    for part in arrays:
        digest.update(np.ascontiguousarray(part).data.cast("B"))
    return f"{kind}:{digest.hexdigest()}"


def remember(value: Any, file: Path, sha256: str, size: int) -> None:
    """Note that local ``file`` (just written, with this checksum and size) holds ``value``."""
    _files.put(value, _File(Path(file), sha256, size))


def link(value: Any, target: Path) -> tuple[str, int] | None:
    """Hard-link the remembered file of ``value`` to local ``target``; returns its (sha256,
    size), or None when there is nothing valid to link (the caller then writes the file)."""
    entry = _files.get(value)  # None also when changed in place since it was written
    if entry is None:
        return None
    try:
        if entry.path.stat().st_size != entry.size:
            return None
        os.link(entry.path, target)
    except OSError:  # collected meanwhile, another filesystem, no hard links here
        return None
    return entry.sha256, entry.size


def forget_all() -> None:
    """Drop every entry (tests; a process that wants every file written anew)."""
    _files.clear()
