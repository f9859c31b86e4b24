"""Atomic writes of single files and of file sets, on local disks and on UPath filesystems.

**One file** (:func:`atomic_write`, :func:`atomic_write_bytes`): the data goes to a temporary
name in the same directory, ``.<name>.lester-tmp-<pid>-<token>``, and only a complete file is
moved onto the final name.

* Local paths (plain paths, ``pathlib``/``PosixUPath``, ``file://``): flush + ``fsync`` the
  temporary file, ``os.replace`` it onto the final name (atomic on POSIX and Windows), then
  ``fsync`` the directory so the rename itself survives a power cut.
* Other UPath filesystems (``s3://``, ``gs://``, ``az://``, ``memory://``, ...) have no rename:
  the temporary object is written completely, then ``fs.mv`` moves it onto the final name. On
  object stores that move is a server-side copy plus a delete, and a copy is published as a
  whole (readers see the complete old or the complete new object, never a mix). A crash after
  the copy leaves only the temporary object behind.

Either way an exception inside the ``with`` block (or in the rename) deletes the temporary file
and leaves the final name untouched; a kill leaves at most a temporary file, which
:func:`clean_temp_files` recognises by its name and removes.

**A set of files** (:func:`new_version`): an artifact may be several files (data, provenance,
key indexes) plus a manifest. Every write creates a new *version directory*
``<root>/v<seq>-<token>/`` holding all files of the new version; nothing in it is visible to
readers, who read ``<root>/manifest.json`` to learn the current version. Publishing is the
atomic replacement of ``manifest.json`` (the commit point); afterwards versions other than the
new one and the one it replaced are deleted (the replaced one is kept so that a reader who has
just read the old manifest can finish). A crash before the commit leaves the previous version
current and intact; the orphaned version directory is removed by the next commit (or by
:func:`collect_garbage`).

Concurrency: one writer per artifact root at a time (Dagster materialises an asset partition in
one run); any number of concurrent readers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

from upath import UPath

from lester_dagster.errors import ArtifactError

__all__ = [
    "MANIFEST",
    "SYNC_ENV",
    "TEMP_MARKER",
    "Collector",
    "StorePath",
    "Version",
    "as_path",
    "atomic_write",
    "atomic_write_bytes",
    "clean_temp_files",
    "collect_garbage",
    "current_version",
    "is_local",
    "is_temp_name",
    "list_versions",
    "new_version",
    "read_bytes",
    "read_pointer",
    "temp_name",
]

StorePath: TypeAlias = str | os.PathLike[str] | UPath
"""Where an artifact lives: a local path, or any UPath (``s3://bucket/x``, ``memory://x``)."""

MANIFEST = "manifest.json"
TEMP_MARKER = ".lester-tmp-"
_VERSION = re.compile(r"^v(\d{10})-[0-9a-f]{8}$")
_LOCAL_PROTOCOLS = ("", "file", "local")


# -- paths ---------------------------------------------------------------------------------------
def as_path(path: StorePath) -> UPath:
    """``path`` as a UPath; ``file://`` URLs become the plain local path they name."""
    upath = path if isinstance(path, UPath) else UPath(path)
    if upath.protocol in ("file", "local"):
        return UPath(upath.path)
    return upath


def is_local(path: StorePath) -> bool:
    """True for paths on the local filesystem (handled with ``os`` calls and ``fsync``)."""
    return as_path(path).protocol in _LOCAL_PROTOCOLS


def temp_name(name: str) -> str:
    """A fresh, recognisable temporary name for a file that will be renamed to ``name``."""
    return f".{name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}"


def is_temp_name(name: str) -> bool:
    """True if ``name`` was made by :func:`temp_name`."""
    return name.startswith(".") and TEMP_MARKER in name


def _local(path: UPath) -> Path:
    return Path(path.path)


SYNC_ENV = "LESTER_FSYNC"
"""How a version's local files are made durable before its manifest is published: ``auto``
(the default) writes them without fsync and, at commit, flushes them with one ``syncfs`` of
their filesystem when there are 3 or more (Linux; a deletion that rewrites many segments
otherwise spent most of its time in fsync), else with one fsync per file; ``each`` fsyncs
every file as it is written."""

_SYNCFS_MIN_FILES = 3


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(fd)`` (flush one filesystem), or None where it is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc since 2011 has it
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs()


def _batched_sync() -> bool:
    """Whether a version's files may wait for one ``syncfs`` at commit (see :data:`SYNC_ENV`)."""
    mode = os.environ.get(SYNC_ENV, "auto")
    if mode not in ("auto", "each"):
        raise ValueError(f"{SYNC_ENV}={mode!r}; use 'auto' (the default) or 'each'")
    return mode == "auto" and _SYNCFS is not None


def _sync_files(directory: Path, files: Collection[Path]) -> None:
    """Make ``files`` (in ``directory``) and the directory durable: one ``syncfs`` of their
    filesystem, or, where it fails, one fsync per file and of the directory."""
    if _SYNCFS is not None and len(files) >= _SYNCFS_MIN_FILES:
        fd = os.open(directory, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable; a no-op where unsupported."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open directories
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: UPath) -> None:
    with contextlib.suppress(OSError):
        if is_local(path):
            _local(path).unlink(missing_ok=True)
        else:
            path.fs.rm(path.path)


def _makedirs(path: UPath) -> None:
    if is_local(path):
        _local(path).mkdir(parents=True, exist_ok=True)
    else:
        path.fs.makedirs(path.path, exist_ok=True)


# -- one file ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _local_write(final: Path) -> Iterator[IO[bytes]]:
    tmp = final.with_name(temp_name(final.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


@contextlib.contextmanager
def _remote_write(final: UPath) -> Iterator[IO[bytes]]:
    fs = final.fs
    tmp = final.parent / temp_name(final.name)
    try:
        with fs.open(tmp.path, "wb") as handle:
            yield handle
        fs.mv(tmp.path, final.path)
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: StorePath) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces ``path`` atomically when the block ends.

    If the block raises, ``path`` keeps its previous content (or stays absent). Parent
    directories are created. See the module docstring for the guarantee per filesystem.
    """
    final = as_path(path)
    _makedirs(final.parent)
    if is_local(final):
        with _local_write(_local(final)) as handle:
            yield handle
    else:
        with _remote_write(final) as handle:
            yield handle


def atomic_write_bytes(path: StorePath, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as handle:
        handle.write(data)


def read_bytes(path: StorePath) -> bytes:
    """The whole content of a file (raises ``FileNotFoundError`` if it does not exist)."""
    p = as_path(path)
    if is_local(p):
        return _local(p).read_bytes()
    data: bytes = p.fs.cat_file(p.path)
    return data


# -- listing and cleaning ------------------------------------------------------------------------
def _entries(directory: UPath) -> list[tuple[str, bool, float | None]]:
    """(name, is_dir, modification time or None) of a directory's entries; [] if absent."""
    if is_local(directory):
        out: list[tuple[str, bool, float | None]] = []
        try:
            with os.scandir(_local(directory)) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.name, stat.S_ISDIR(st.st_mode), st.st_mtime))
        except FileNotFoundError:
            return []
        return out
    fs = directory.fs
    with contextlib.suppress(AttributeError, NotImplementedError):
        fs.invalidate_cache(directory.path)
    try:
        infos = fs.ls(directory.path, detail=True)
    except FileNotFoundError:
        return []
    result = []
    for info in infos:
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        when = next((info[k] for k in ("mtime", "LastModified", "created") if k in info), None)
        seconds = when.timestamp() if isinstance(when, datetime) else when
        result.append((name, info.get("type") == "directory", seconds))
    return result


def clean_temp_files(directory: StorePath, *, older_than: float = 0.0) -> list[str]:
    """Delete the temporary files left in ``directory`` by interrupted writes; return their names.

    Only names made by :func:`temp_name` are touched. Pass ``older_than`` (seconds) to spare the
    temporary files of writes that may still be running; files whose age the filesystem does
    not report count as old.
    """
    root = as_path(directory)
    now = time.time()
    removed = []
    for name, is_dir, mtime in _entries(root):
        if is_dir or not is_temp_name(name):
            continue
        if older_than > 0 and mtime is not None and now - mtime < older_than:
            continue
        _remove_quietly(root / name)
        removed.append(name)
    return sorted(removed)


# -- file sets -----------------------------------------------------------------------------------
_POINTERS: OrderedDict[str, tuple[tuple[int, int, int], dict[str, Any]]] = OrderedDict()
"""Parsed local manifests by path, with the (inode, mtime, size) they were read at: a commit
replaces manifest.json by a new file (a new inode), so a changed manifest is read again."""
_POINTERS_LIMIT = 1024
_POINTERS_LOCK = threading.Lock()


def read_pointer(root: StorePath) -> dict[str, Any] | None:
    """The JSON object in ``<root>/manifest.json``, or None if no version was committed (do not
    change it: local manifests are cached while their file is unchanged)."""
    path = as_path(root) / MANIFEST
    stamp = None
    if is_local(path):
        try:
            st = os.stat(_local(path))
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = _POINTERS.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        raw = read_bytes(path)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ArtifactError(
            f"{path} is not valid JSON ({exc}); it was changed outside lester-dagster. "
            "Delete the artifact directory and rematerialise the asset"
        ) from exc
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} must hold a JSON object; rematerialise the asset")
    if stamp is not None and len(raw) == stamp[2]:
        with _POINTERS_LOCK:  # garbage is collected on another thread (:class:`Collector`)
            _POINTERS[str(path)] = (stamp, doc)
            _POINTERS.move_to_end(str(path))
            while len(_POINTERS) > _POINTERS_LIMIT:
                _POINTERS.popitem(last=False)
    return doc


def current_version(root: StorePath) -> str | None:
    """The name of the committed version directory of ``root`` (None before the first commit)."""
    doc = read_pointer(root)
    if doc is None:
        return None
    version = doc.get("version")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ArtifactError(
            f"{as_path(root) / MANIFEST} names no valid version ({version!r}); it was changed "
            "outside lester-dagster. Delete the artifact directory and rematerialise the asset"
        )
    return version


def _remove_tree(path: UPath) -> None:
    if is_local(path):
        shutil.rmtree(_local(path), ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path, recursive=True)


def list_versions(root: StorePath) -> list[str]:
    """The version directories of ``root`` (committed or not), oldest first."""
    names = [n for n, is_dir, _ in _entries(as_path(root)) if is_dir and _VERSION.match(n)]
    return sorted(names)


def collect_garbage(root: StorePath, *, keep: Collection[str] = ()) -> list[str]:
    """Delete every version directory of ``root`` except the committed one and ``keep``, and
    every temporary file in ``root``; return the deleted names.

    Call it only while no writer works on ``root`` (versions being written are not committed
    yet and would be deleted).
    """
    base = as_path(root)
    committed = current_version(base)
    return _collect(base, {*keep, *([committed] if committed else [])})


def _collect(base: UPath, spared: Collection[str]) -> list[str]:
    removed = []
    for name, is_dir, _ in _entries(base):
        if is_dir and _VERSION.match(name) and name not in spared:
            _remove_tree(base / name)
            removed.append(name)
        elif not is_dir and is_temp_name(name):
            _remove_quietly(base / name)
            removed.append(name)
    return sorted(removed)


class Collector:
    """Collects garbage of artifacts after their commits on one background thread, so that
    unlinking an old version's files (a deletion's old rows) overlaps the next artifact's
    work; :meth:`close` waits for all of it and raises the first error. Use it as a context
    manager; until it is closed, old versions may still be on disk."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lester-gc")
        self._pending: dict[str, Future[list[str]]] = {}

    def submit(self, root: StorePath) -> None:
        """Collect ``root``'s garbage (:func:`collect_garbage`) in the background."""
        self.wait(root)
        self._pending[str(as_path(root))] = self._pool.submit(collect_garbage, root)

    def wait(self, root: StorePath) -> None:
        """Wait for the collection of ``root`` submitted last, if any (before a new version of
        it is written: collecting deletes every version but the committed one)."""
        future = self._pending.pop(str(as_path(root)), None)
        if future is not None:
            future.result()

    def close(self) -> None:
        """Wait for every collection submitted; raise the first one's error, if any."""
        try:
            for future in list(self._pending.values()):
                future.result()
        finally:
            self._pending = {}
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if error is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the block's own error is the one to see
            self.close()


class Version:
    """A version of a file set being written under ``root`` (made by :func:`new_version`)."""

    def __init__(self, root: UPath, name: str, previous: str | None, keep_previous: bool) -> None:
        self.root = root
        self.name = name
        self.previous = previous
        self.keep_previous = keep_previous
        self.committed = False
        self._batched = _batched_sync() and is_local(root)
        self._unsynced: list[Path] = []  # written, not yet fsynced (one syncfs at commit)

    @property
    def directory(self) -> UPath:
        return self.root / self.name

    def relative(self, filename: str) -> str:
        """The path of one of this version's files relative to the root (as manifests say)."""
        return f"{self.name}/{filename}"

    @contextlib.contextmanager
    def open(self, filename: str) -> Iterator[IO[bytes]]:
        """A handle writing ``filename`` into this version (flushed and fsynced locally).

        Files of an uncommitted version are invisible to readers, so they are written in place;
        if the block raises, the file is deleted.
        """
        if self.committed:
            raise ArtifactError(f"version {self.name} of {self.root} is already committed")
        if "/" in filename or filename in ("", ".", ".."):
            raise ValueError(f"file name {filename!r} must be a plain name without '/'")
        target = self.directory / filename
        try:
            if is_local(target):
                with open(_local(target), "xb") as handle:
                    yield handle
                    handle.flush()
                    if not self._batched:
                        os.fsync(handle.fileno())
                if self._batched:
                    self._unsynced.append(_local(target))
            else:
                with target.fs.open(target.path, "wb") as handle:
                    yield handle
        except BaseException:
            _remove_quietly(target)
            raise

    def commit(self, manifest: Mapping[str, Any]) -> None:
        """Publish this version: atomically replace ``<root>/manifest.json`` by ``manifest``
        (a JSON object whose ``version`` is this version's name), then collect garbage."""
        if manifest.get("version") != self.name:
            raise ValueError(
                f"the manifest names version {manifest.get('version')!r}, not {self.name!r}"
            )
        # one line: json's C encoder (an indented manifest of many segments took 10-20 ms)
        data = json.dumps(manifest, ensure_ascii=False).encode("utf-8")
        if is_local(self.root):  # the files (and their directory) are durable before the manifest
            if self._unsynced:
                _sync_files(_local(self.directory), self._unsynced)
                self._unsynced = []
            else:
                _fsync_dir(_local(self.directory))
            _fsync_dir(_local(self.root))
        atomic_write_bytes(self.root / MANIFEST, data)
        self.committed = True
        keep = [self.previous] if self.keep_previous and self.previous else []
        with contextlib.suppress(OSError):  # best effort: the next commit collects again
            _collect(self.root, {self.name, *keep})


def _next_sequence(root: UPath, previous: str | None) -> int:
    seqs = [int(m.group(1)) for n, d, _ in _entries(root) if d and (m := _VERSION.match(n))]
    if previous is not None:
        seqs.append(int(previous[1:11]))
    return max(seqs, default=0) + 1


@contextlib.contextmanager
def new_version(root: StorePath, *, keep_previous: bool = True) -> Iterator[Version]:
    """Write a new version of the file set at ``root``; call :meth:`Version.commit` to publish.

    Leaving the block without committing (or with an exception) deletes the new version's
    files; the committed version stays current. ``keep_previous=False`` also deletes the version
    the commit replaces (only safe when no reader may still be reading it).
    """
    base = as_path(root)
    previous = current_version(base)
    name = f"v{_next_sequence(base, previous):010d}-{secrets.token_hex(4)}"
    version = Version(base, name, previous, keep_previous)
    _makedirs(version.directory)
    try:
        yield version
    finally:
        if not version.committed and not _published(base, name):
            _remove_tree(version.directory)


def _published(root: UPath, name: str) -> bool:
    """Whether the manifest names version ``name`` (a commit can fail after its rename, e.g.
    in the directory fsync: the version is then live and must not be deleted)."""
    try:
        return current_version(root) == name
    except (ArtifactError, OSError):
        return True  # unsure: keep the files; garbage collection removes them if unused
