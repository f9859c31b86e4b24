"""The manifest of a stored artifact, and reading an artifact's files with integrity checks.

Every artifact is a directory ``<root>`` holding ``manifest.json`` (the commit point, see
:mod:`lester_dagster.store.atomic`) and one version directory with its files. The manifest is a
JSON object::

    {
     "format": "lester-artifact", "format_version": 1,
     "kind": "frame",                       # frame | labels | matrix | object
     "version": "v0000000003-9f2c1a7b",     # the version directory holding the files
     "created_at": "2026-01-31T12:00:00.123456+00:00",
     "rows": 1234,                          # null for objects
     "sources": ["customers", "mails"],     # sources the rows' provenance mentions
     "files": {"data": {"path": "v0000000003-9f2c1a7b/data.parquet",
                        "sha256": "...", "bytes": 5678}, ...},
     "content": {...},                      # what the loader needs (kind-specific)
     "metadata": {...}                      # free, JSON-serialisable, caller-defined
    }

:meth:`Manifest.digest` condenses the file checksums into one value (a data version).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from lester_dagster.errors import ArtifactError, ArtifactIntegrityError, ArtifactNotFoundError
from lester_dagster.store.atomic import MANIFEST, StorePath, as_path, read_bytes, read_pointer
from lester_dagster.store.segments import ADDRESSED, file_fingerprint

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "FileEntry",
    "HashingWriter",
    "Manifest",
    "read_files",
    "read_manifest",
    "utc_now",
    "verify",
]

FORMAT = "lester-artifact"
FORMAT_VERSION = 1
KINDS = ("frame", "labels", "matrix", "object")


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC (what ``created_at`` holds)."""
    return datetime.now(UTC).isoformat()


class HashingWriter:
    """A write-only, non-seekable file wrapper that counts and sha256-hashes what passes through.

    Non-seekable on purpose: writers that would seek back and patch (zip headers) write
    sequentially instead, so the hash is the hash of the bytes on disk.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._raw.write(view)
        self._hash.update(view)
        self.size += view.nbytes
        return view.nbytes

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:  # present so numpy's savez takes us for a file
        raise io.UnsupportedOperation("HashingWriter is write-only")

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:  # the underlying handle is closed by its owner
        self.closed = True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact: path relative to the artifact root, checksum and size."""

    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Manifest:
    """What a committed artifact holds (see the module docstring for the JSON layout)."""

    kind: str
    version: str
    rows: int | None
    sources: tuple[str, ...]
    files: Mapping[str, FileEntry]
    content: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=utc_now)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", dict(self.files))

    @property
    def digest(self) -> str:
        """sha256 over the names and checksums of all files: equal digests, equal content."""
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(f"{name}\0{self.files[name].sha256}\n".encode())
        return h.hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "kind": self.kind,
            "version": self.version,
            "created_at": self.created_at,
            "rows": self.rows,
            "sources": list(self.sources),
            "files": {name: entry.to_dict() for name, entry in self.files.items()},
            "content": dict(self.content),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "the manifest") -> Manifest:
        """Parse a manifest; unknown formats and newer format versions raise ArtifactError."""
        if doc.get("format") != FORMAT:
            raise ArtifactError(
                f"{where} is not a lester-dagster artifact manifest (format "
                f"{doc.get('format')!r}); point the store at an artifact directory"
            )
        version = doc.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ArtifactError(
                f"{where} has format version {version!r}; this lester-dagster reads versions up "
                f"to {FORMAT_VERSION}. Upgrade lester-dagster or rematerialise the asset"
            )
        try:
            files = {
                str(name): FileEntry(str(e["path"]), str(e["sha256"]), int(e["bytes"]))
                for name, e in doc["files"].items()
            }
            rows = doc["rows"]
            return cls(
                kind=str(doc["kind"]),
                version=str(doc["version"]),
                rows=None if rows is None else int(rows),
                sources=tuple(str(s) for s in doc["sources"]),
                files=files,
                content=dict(doc.get("content") or {}),
                metadata=dict(doc.get("metadata") or {}),
                created_at=str(doc["created_at"]),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(
                f"{where} is malformed ({type(exc).__name__}: {exc}); rematerialise the asset"
            ) from exc


def read_manifest(root: StorePath) -> Manifest:
    """The committed manifest of the artifact at ``root``."""
    base = as_path(root)
    doc = read_pointer(base)
    if doc is None:
        raise ArtifactNotFoundError(
            f"no artifact at {base}: {MANIFEST} is missing (nothing was committed there yet); "
            "materialise the asset first or check the path"
        )
    return Manifest.from_dict(doc, str(base / MANIFEST))


def _check(base: Any, name: str, entry: FileEntry, data: bytes, thorough: bool) -> None:
    """``data`` against the manifest: its sha256, or for a content-addressed segment file the
    xxh3-128 fingerprint its name holds (unless ``thorough``); raises if they differ."""
    addressed = None if thorough else ADDRESSED.search(entry.path)
    if addressed is not None and len(data) == entry.bytes:
        found = file_fingerprint(data)
        if found == addressed.group(1):
            return
        raise ArtifactIntegrityError(
            f"file {name!r} of the artifact at {base} ({entry.path}) does not match its name: "
            f"its bytes have the fingerprint {found}; it was changed or damaged after it was "
            "written. Nothing was loaded: rematerialise the asset (or restore the file)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry.bytes or digest != entry.sha256:
        raise ArtifactIntegrityError(
            f"file {name!r} of the artifact at {base} ({entry.path}) does not match its "
            f"manifest: expected {entry.bytes} bytes with sha256 {entry.sha256[:16]}..., found "
            f"{len(data)} bytes with sha256 {digest[:16]}...; it was changed or damaged after "
            "it was written. Nothing was loaded: rematerialise the asset (or restore the file)"
        )


def read_files(
    root: StorePath,
    names: Iterable[str] | None = None,
    *,
    verify: bool = True,
    attempts: int = 3,
    thorough: bool = False,
) -> tuple[Manifest, dict[str, bytes]]:
    """The committed manifest and the bytes of its files ``names`` (default: all), checked
    against their sha256 and size unless ``verify=False`` (content-addressed segment files
    against the fingerprint in their name, unless ``thorough``).

    A reader racing a writer can find the version it read about already deleted (after two
    commits); it then reads the new manifest and tries again, up to ``attempts`` times.
    """
    base = as_path(root)
    for attempt in range(attempts):
        manifest = read_manifest(base)
        wanted = list(manifest.files) if names is None else list(names)
        unknown = [n for n in wanted if n not in manifest.files]
        if unknown:
            raise ArtifactError(
                f"the {manifest.kind} artifact at {base} has no file {unknown[0]!r}; it has "
                f"{sorted(manifest.files)}"
            )
        data: dict[str, bytes] = {}
        try:
            for name in wanted:
                data[name] = read_bytes(base / manifest.files[name].path)
        except FileNotFoundError as exc:
            newer = read_pointer(base)
            if newer is not None and newer.get("version") != manifest.version:
                time.sleep(0.01 * (attempt + 1))
                continue  # a writer committed meanwhile: read the new version
            raise ArtifactError(
                f"the artifact at {base} lists {exc.filename or name!r}, which is missing; the "
                "directory was changed outside lester-dagster. Rematerialise the asset"
            ) from exc
        if verify:
            for name in wanted:
                _check(base, name, manifest.files[name], data[name], thorough)
        return manifest, data
    raise ArtifactError(
        f"the artifact at {base} changed {attempts} times while being read; retry when its "
        "writer is done"
    )


def verify(root: StorePath) -> Manifest:
    """Check every file of the artifact at ``root`` against its manifest; return the manifest.

    Raises :class:`ArtifactIntegrityError` naming the first file that differs.
    """
    manifest, _ = read_files(root, verify=True, thorough=True)
    return manifest
