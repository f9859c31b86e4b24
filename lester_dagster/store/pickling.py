"""Objects as pickle protocol 5 with out-of-band buffers: the stream and the raw buffers apart.

A model's forgetting state is mostly large arrays (X, the inverse Hessian, the training frame's
columns). joblib writes them through Python's pure-Python pickler, one call per object; here the
C pickler hands every contiguous array buffer (numpy, and pyarrow's buffers behind pandas'
string columns) to a callback instead of copying it into the stream (PEP 574). What is stored:

* the pickle stream (small: the objects' structure), and
* the buffers, each written as it is, at an offset aligned to :data:`ALIGN` bytes, with their
  ``[offset, length]`` spans recorded for the loader.

Objects the caller stores apart (X, written once for X_train and the model) are pickled as a
reference to their name (pickle's persistent ids) and handed back when loading.

Loading reads the buffers into one writable ``bytearray`` and unpickles with views into it:
no per-array copy, and arrays come back writable as they were saved (a state that updates
arrays in place keeps working).

Unpickling runs code from the stream: load only what your own pipelines wrote.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Protocol

__all__ = [
    "ALIGN",
    "Spans",
    "Writer",
    "aligned_offsets",
    "collect",
    "dump",
    "load",
    "load_parts",
    "views_at",
    "write_aligned",
]

ALIGN = 64
"""Buffer offsets are multiples of this (numpy needs at most 16; cache lines are 64)."""


class Writer(Protocol):
    """Where buffers go (a binary file, or the store's hashing writer)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


Spans = list[list[int]]
"""Per out-of-band buffer, ``[offset, length]`` in the buffer file."""


class _Pickler(pickle.Pickler):
    def __init__(self, stream: IO[bytes], collect: Any, external: Mapping[str, Any]) -> None:
        super().__init__(stream, protocol=5, buffer_callback=collect)
        self._names = {id(obj): name for name, obj in external.items()}
        self._objects = dict(external)

    def persistent_id(self, obj: Any) -> str | None:
        name = self._names.get(id(obj))
        return name if name is not None and self._objects[name] is obj else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: IO[bytes], buffers: list[memoryview], external: Mapping[str, Any]):
        super().__init__(stream, buffers=buffers)
        self._external = external

    def persistent_load(self, pid: Any) -> Any:
        try:
            return self._external[pid]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(
                f"the stream refers to a stored object {pid!r} that was not given "
                f"(given: {sorted(self._external)})"
            ) from None


def dump(
    value: Any,
    stream: IO[bytes],
    buffers: Writer,
    external: Mapping[str, Any] | None = None,
) -> Spans:
    """Pickle ``value`` to ``stream`` (protocol 5) and its out-of-band buffers to ``buffers``;
    returns their spans. Objects in ``external`` (by identity, wherever ``value`` refers to
    them) are not pickled but stored as a reference to their name: the caller stores them
    itself and hands them back to :func:`load`. Raises :class:`pickle.PicklingError` (or
    TypeError/AttributeError) for what cannot be pickled."""
    return write_aligned(buffers, collect(value, stream, external))


def collect(
    value: Any, stream: IO[bytes], external: Mapping[str, Any] | None = None
) -> list[memoryview]:
    """Pickle ``value`` to ``stream`` as :func:`dump` does; its out-of-band buffers (raw
    bytes, in order) are returned for the caller to store (:func:`load_parts` reads them)."""
    collected: list[pickle.PickleBuffer] = []
    _Pickler(stream, collected.append, external or {}).dump(value)
    views = []
    for buffer in collected:
        try:
            views.append(buffer.raw())
        except BufferError:  # not contiguous: the pickler keeps such a buffer in-band instead
            views.append(memoryview(bytes(buffer)))  # pragma: no cover - defensive
    return views


def aligned_offsets(sizes: Iterable[int]) -> list[int]:
    """Where buffers of these sizes go one after the other, each at a multiple of ALIGN."""
    offsets: list[int] = []
    offset = 0
    for size in sizes:
        offset += -offset % ALIGN
        offsets.append(offset)
        offset += size
    return offsets


def write_aligned(out: Writer, views: Sequence[memoryview]) -> Spans:
    """Write byte ``views`` at :func:`aligned_offsets` (zero padding between); their spans."""
    offsets = aligned_offsets(view.nbytes for view in views)
    written = 0
    for view, offset in zip(views, offsets, strict=True):
        if offset > written:
            out.write(b"\0" * (offset - written))
        out.write(view)
        written = offset + view.nbytes
    return [[offset, view.nbytes] for offset, view in zip(offsets, views, strict=True)]


def load(
    stream: bytes,
    buffers: bytes | bytearray,
    spans: Sequence[Sequence[int]],
    external: Mapping[str, Any] | None = None,
) -> Any:
    """The object :func:`dump` wrote (``buffers``: the buffer file's bytes, made writable;
    ``external``: the objects that were stored apart, by name)."""
    return load_parts(stream, views_at(buffers, spans), external)


def views_at(buffers: bytes | bytearray, spans: Sequence[Sequence[int]]) -> list[memoryview]:
    """Writable views of the buffer file's bytes at ``spans`` (as :func:`write_aligned` wrote
    them); ValueError for a span outside the file."""
    blob = buffers if isinstance(buffers, bytearray) else bytearray(buffers)
    view = memoryview(blob)
    parts = []
    for offset, length in spans:
        if offset < 0 or length < 0 or offset + length > len(blob):
            raise ValueError(
                f"buffer span [{offset}, {length}] lies outside the {len(blob)}-byte buffer file"
            )
        parts.append(view[offset : offset + length])
    return parts


def load_parts(
    stream: bytes, parts: Sequence[memoryview], external: Mapping[str, Any] | None = None
) -> Any:
    """The object whose stream :func:`collect` wrote, from its buffers (writable views)."""
    return _Unpickler(io.BytesIO(stream), list(parts), external or {}).load()
