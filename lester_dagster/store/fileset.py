"""The files of one version of an artifact: written, or hard-linked where a file with the same
content exists, checked when read, and published by the version's manifest.

:class:`FileSet` writes a version's files and records their checksums for the manifest; its
:meth:`FileSet.segments` stores row-aligned arrays in row segments
(:mod:`lester_dagster.store.segments`), linking every segment whose content the artifact's
previous version, or a file this process wrote or checked, holds already (the process-wide
``segments.CATALOGUE``). :func:`save_version` runs a writer inside a new version and commits
it (:mod:`lester_dagster.store.atomic`); :func:`read_version` reads a committed version's files
(checked) and notes its segment files in the catalogue, so the next version may link them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from lester_dagster.errors import ArtifactError, UnstorableError
from lester_dagster.store import links, segments
from lester_dagster.store.atomic import (
    StorePath,
    Version,
    as_path,
    is_local,
    new_version,
    read_pointer,
)
from lester_dagster.store.manifest import FileEntry, HashingWriter, Manifest, read_files
from lester_dagster.store.tables import write_parquet

__all__ = ["FileSet", "read_version", "save_version"]


# -- writing -------------------------------------------------------------------------------------
def _known_segments(root: Path, manifest: Manifest) -> dict[str, segments.Known]:
    """The segment files ``manifest`` lists, by content fingerprint (unstamped: linking one
    checks its bytes first)."""
    out = {}
    for name, segment in segments.stored_segments(manifest.content).items():
        entry = manifest.files.get(name)
        if entry is None:
            continue
        out[str(segment["content"])] = segments.Known(
            root / entry.path,
            entry.sha256,
            entry.bytes,
            str(segment["fingerprint"]),
            segment["layout"],
        )
    return out


def _previous_segments(path: StorePath) -> dict[str, segments.Known]:
    """The segment files of the committed version at local ``path``, by content."""
    base = as_path(path)
    if not is_local(base):
        return {}
    doc = read_pointer(base)
    if doc is None:
        return {}
    try:
        manifest = Manifest.from_dict(doc, str(base))
    except ArtifactError:  # a manifest this release cannot read: nothing to link, write all
        return {}
    return _known_segments(Path(base.path), manifest)


def _remember(content: str, known: segments.Known) -> None:
    """Note in the process's catalogue that ``known`` holds the segment ``content`` (just
    written, linked or checked: stamped now)."""
    stamped = known.checked()
    if stamped is not None:
        segments.CATALOGUE.put(content, stamped)


class FileSet:
    """Writes the files of one version, recording their checksums for the manifest."""

    def __init__(self, version: Version, previous: Mapping[str, segments.Known] | None = None):
        self.version = version
        self.entries: dict[str, FileEntry] = {}
        self.previous = previous or {}
        self._addressed: dict[str, tuple[FileEntry, str, Mapping[str, Any]]] = {}  # by content
        #: segments written (with their bytes) and linked: what a version rewrote
        self.written = self.linked = self.bytes_written = 0

    def segments(self, prefix: str, rows: segments.Rows, ends: Any) -> dict[str, Any]:
        """``rows`` in row segments ending at ``ends`` (:mod:`lester_dagster.store.segments`):
        a segment whose content a file holds already (in the previous version, or one this
        process wrote or checked) is hard-linked, the others written (text compressed only
        then)."""
        encoded = segments.encode(rows, ends)
        directory = self.version.directory
        local = Path(directory.path) if is_local(directory) else None
        names: list[str] = []
        stored: list[tuple[str, Mapping[str, Any]]] = []
        for i, segment in enumerate(encoded):
            name = f"{prefix}.{i:05d}"
            names.append(name)
            content = segment.content
            if content in self._addressed:  # the same content twice in this artifact
                entry, fingerprint, layout = self._addressed[content]
                self.entries[name] = entry
                stored.append((fingerprint, layout))
                continue
            linked = None
            if local is not None:  # a file this process wrote or checked, else the previous one
                for known in (segments.CATALOGUE.get(content), self.previous.get(content)):
                    if known is None:
                        continue
                    target = local / f"{prefix}-{known.fingerprint}.bin"
                    if known.link(target):
                        linked = replace(known, path=target)
                        break
            if linked is not None:
                self.linked += 1
                entry = FileEntry(
                    self.version.relative(linked.path.name), linked.sha256, linked.size
                )
                self.entries[name] = entry
                self._addressed[content] = (entry, linked.fingerprint, linked.layout)
                stored.append((linked.fingerprint, linked.layout))
                _remember(content, linked)
                continue
            filename = f"{prefix}-{segment.fingerprint}.bin"
            self.write(name, filename, segment.write)
            entry = self.entries[name]
            self.written += 1
            self.bytes_written += entry.bytes
            self._addressed[content] = (entry, segment.fingerprint, segment.layout)
            stored.append((segment.fingerprint, segment.layout))
            if local is not None:
                path = local / filename
                _remember(
                    content,
                    segments.Known(
                        path, entry.sha256, entry.bytes, segment.fingerprint, segment.layout
                    ),
                )
        return segments.spec(rows, encoded, names, stored)

    def write(self, name: str, filename: str, dump: Callable[[HashingWriter], None]) -> None:
        with self.version.open(filename) as raw:
            writer = HashingWriter(raw)
            dump(writer)
        self.entries[name] = FileEntry(self.version.relative(filename), writer.sha256, writer.size)

    def parquet(self, name: str, table: pa.Table) -> None:
        self.write(name, f"{name}.parquet", lambda w: write_parquet(table, w))

    def shared(
        self, name: str, filename: str, value: Any, dump: Callable[[HashingWriter], None]
    ) -> None:
        """Write ``value``'s file, or hard-link the file another artifact of this process just
        wrote from the same, unchanged object (:mod:`lester_dagster.store.links`)."""
        target = self.version.directory / filename
        local = Path(target.path) if is_local(target) else None
        linked = links.link(value, local) if local is not None else None
        if linked is not None:
            self.entries[name] = FileEntry(self.version.relative(filename), *linked)
            return
        self.write(name, filename, dump)
        if local is not None:
            entry = self.entries[name]
            links.remember(value, local, entry.sha256, entry.bytes)


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    try:
        out: dict[str, Any] = json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as exc:
        raise UnstorableError(
            f"metadata must be JSON-serialisable ({exc}); convert values to str, int, float, "
            "bool, lists or dicts"
        ) from exc
    return out


def save_version(
    path: StorePath,
    kind: str,
    rows: int | None,
    sources: Iterable[str],
    metadata: Mapping[str, Any] | None,
    write: Callable[[FileSet], dict[str, Any]],
) -> Manifest:
    meta = _metadata(metadata)
    previous = _previous_segments(path)
    with new_version(path) as version:
        files = FileSet(version, previous)
        content = write(files)
        if files.written or files.linked:  # what this version rewrote (shown as metadata)
            content = {**content, "segments_written": files.written}
            content.update(segments_linked=files.linked, segment_bytes_written=files.bytes_written)
        manifest = Manifest(
            kind=kind,
            version=version.name,
            rows=rows,
            sources=tuple(sources),
            files=files.entries,
            content=content,
            metadata=meta,
        )
        version.commit(manifest.to_dict())
    return manifest


def read_version(path: StorePath, kind: str, verify: bool) -> tuple[Manifest, dict[str, bytes]]:
    manifest, data = read_files(path, verify=verify)
    base = as_path(path)
    if verify and is_local(base):  # checked segment files: the next versions may link them
        for content, known in _known_segments(Path(base.path), manifest).items():
            _remember(content, known)
    if manifest.kind != kind:
        raise ArtifactError(
            f"the artifact at {path} is a {manifest.kind!r}, not a {kind!r}; load it with "
            f"load_{manifest.kind} (or load_artifact)"
        )
    return manifest, data
