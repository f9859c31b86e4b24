"""Atomic single-file writes and atomically published file sets, local and on memory://."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from upath import UPath

from lester_dagster.errors import ArtifactError
from lester_dagster.store import atomic
from lester_dagster.store.atomic import (
    MANIFEST,
    Collector,
    as_path,
    atomic_write,
    atomic_write_bytes,
    clean_temp_files,
    collect_garbage,
    current_version,
    is_local,
    is_temp_name,
    new_version,
    read_bytes,
    temp_name,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mem() -> Iterator[UPath]:
    root = UPath(f"memory://store-tests/{uuid.uuid4().hex}")
    yield root
    if root.fs.exists(root.path):
        root.fs.rm(root.path, recursive=True)


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- paths -----------------------------------------------------------------------------------------
def test_temp_names_are_recognisable_and_fresh() -> None:
    a, b = temp_name("data.parquet"), temp_name("data.parquet")
    assert a != b
    assert is_temp_name(a) and a.startswith(".data.parquet.lester-tmp-")
    assert not is_temp_name("data.parquet") and not is_temp_name(".hidden")


def test_local_and_remote_paths_are_told_apart(tmp_path: Path) -> None:
    assert is_local(tmp_path) and is_local(str(tmp_path)) and is_local(f"file://{tmp_path}")
    assert not is_local("memory://bucket/x")
    assert str(as_path(f"file://{tmp_path}/a")) == f"{tmp_path}/a"


# -- one file, local -------------------------------------------------------------------------------
def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert names(target.parent) == ["f.bin"]


def test_an_exception_while_writing_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["f.bin"]


def test_a_failed_rename_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr("lester_dagster.store.atomic.os.replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["f.bin"]


_KILLED_WRITER = """
import sys, time
from lester_dagster.store.atomic import atomic_write
with atomic_write(sys.argv[1]) as handle:
    handle.write(b"N" * 100_000)
    handle.flush()
    print("READY", flush=True)
    time.sleep(60)
    handle.write(b"never")
"""


def _run_until_ready(code: str, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "READY":
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"child did not get ready: {line!r} {err}")
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL


def test_a_writer_killed_mid_write_leaves_the_previous_file_and_a_cleanable_temp(
    tmp_path: Path,
) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    _kill(_run_until_ready(_KILLED_WRITER, str(target)))
    assert target.read_bytes() == b"old"
    leftovers = [n for n in names(tmp_path) if n != "f.bin"]
    assert len(leftovers) == 1 and is_temp_name(leftovers[0])
    assert (tmp_path / leftovers[0]).stat().st_size == 100_000  # the half-written new content
    assert clean_temp_files(tmp_path) == leftovers
    assert names(tmp_path) == ["f.bin"]


def test_clean_temp_files_spares_recent_temps_and_other_files(tmp_path: Path) -> None:
    fresh = tmp_path / temp_name("a")
    fresh.write_bytes(b"x")
    (tmp_path / ".hidden").write_bytes(b"x")
    (tmp_path / "a").write_bytes(b"x")
    assert clean_temp_files(tmp_path, older_than=3600) == []
    old = time.time() - 7200
    os.utime(fresh, (old, old))
    assert clean_temp_files(tmp_path, older_than=3600) == [fresh.name]
    assert names(tmp_path) == [".hidden", "a"]


# -- one file, object storage (fsspec memory) ------------------------------------------------------
def test_memory_filesystem_write_replace_and_failure(
    mem: UPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = mem / "f.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert read_bytes(target) == b"new"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert read_bytes(target) == b"new"

    def no_move(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before the move")

    monkeypatch.setattr(type(target.fs), "mv", no_move)
    with pytest.raises(OSError, match="before the move"):
        atomic_write_bytes(target, b"newer")
    assert read_bytes(target) == b"new"
    assert [p.name for p in mem.iterdir()] == ["f.bin"]


# -- file sets -------------------------------------------------------------------------------------
def _commit(root: Path | UPath, payload: bytes) -> str:
    with new_version(root) as version:
        with version.open("data.bin") as handle:
            handle.write(payload)
        version.commit({"version": version.name, "file": version.relative("data.bin")})
    return version.name


def _read_current(root: Path | UPath) -> bytes:
    doc = json.loads(read_bytes(as_path(root) / MANIFEST))
    return read_bytes(as_path(root) / doc["file"])


def test_a_commit_publishes_and_collects_all_but_the_previous_version(tmp_path: Path) -> None:
    assert current_version(tmp_path) is None
    v1 = _commit(tmp_path, b"1")
    v2 = _commit(tmp_path, b"2")
    assert current_version(tmp_path) == v2 and _read_current(tmp_path) == b"2"
    assert names(tmp_path) == sorted([MANIFEST, v1, v2])
    v3 = _commit(tmp_path, b"3")
    assert names(tmp_path) == sorted([MANIFEST, v2, v3])
    assert v1 < v2 < v3  # sequence numbers sort


def test_keep_previous_false_leaves_only_the_new_version(tmp_path: Path) -> None:
    _commit(tmp_path, b"1")
    with new_version(tmp_path, keep_previous=False) as version:
        version.commit({"version": version.name, "file": ""})
    assert names(tmp_path) == sorted([MANIFEST, version.name])


def test_leaving_without_commit_or_with_an_exception_discards_the_new_version(
    tmp_path: Path,
) -> None:
    v1 = _commit(tmp_path, b"1")
    with new_version(tmp_path) as version, version.open("data.bin") as handle:
        handle.write(b"never committed")
    with pytest.raises(RuntimeError), new_version(tmp_path) as version:
        with version.open("data.bin") as handle:
            handle.write(b"2")
        raise RuntimeError("crash before commit")
    assert names(tmp_path) == sorted([MANIFEST, v1])
    assert _read_current(tmp_path) == b"1"


def test_a_failed_manifest_replace_keeps_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = _commit(tmp_path, b"1")

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash at the commit point")

    monkeypatch.setattr("lester_dagster.store.atomic.os.replace", crash)
    with pytest.raises(OSError, match="commit point"):
        _commit(tmp_path, b"2")
    monkeypatch.undo()
    assert current_version(tmp_path) == v1 and _read_current(tmp_path) == b"1"
    assert names(tmp_path) == sorted([MANIFEST, v1])


def test_a_failure_after_the_rename_keeps_the_published_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = _commit(tmp_path, b"1")
    real = atomic._fsync_dir

    def eio_once_published(directory: Path) -> None:
        if directory == tmp_path and current_version(tmp_path) != v1:
            raise OSError("EIO on the directory fsync after the rename")
        real(directory)

    monkeypatch.setattr(atomic, "_fsync_dir", eio_once_published)
    with pytest.raises(OSError, match="EIO"):
        _commit(tmp_path, b"2")
    monkeypatch.undo()
    assert current_version(tmp_path) != v1
    assert _read_current(tmp_path) == b"2"  # the published version's files are still there


def test_orphans_of_a_crashed_writer_are_collected_by_the_next_commit(tmp_path: Path) -> None:
    v1 = _commit(tmp_path, b"1")
    orphan = tmp_path / "v0000000002-deadbeef"  # what a killed writer leaves behind
    orphan.mkdir()
    (orphan / "data.bin").write_bytes(b"half")
    stale = tmp_path / temp_name(MANIFEST)
    stale.write_bytes(b"{")
    v3 = _commit(tmp_path, b"3")
    assert v3.startswith("v0000000003-")  # numbered past the orphan
    assert names(tmp_path) == sorted([MANIFEST, v1, v3])


def test_collect_garbage_keeps_the_committed_version(tmp_path: Path) -> None:
    v1 = _commit(tmp_path, b"1")
    v2 = _commit(tmp_path, b"2")
    assert collect_garbage(tmp_path) == [v1]
    assert names(tmp_path) == sorted([MANIFEST, v2])
    assert _read_current(tmp_path) == b"2"


def test_the_background_collector_leaves_only_committed_versions(tmp_path: Path) -> None:
    """Collections run on another thread; a root's next version waits for its collection
    (collecting deletes every version but the committed one), and closing waits for all."""
    roots = [tmp_path / f"a{i}" for i in range(3)]
    for root in roots:
        _commit(root, b"1")
    with Collector() as collector:
        for root in roots:
            _commit(root, b"2")
            collector.submit(root)
        collector.wait(roots[0])
        assert names(roots[0]) == sorted([MANIFEST, current_version(roots[0]) or ""])
        _commit(roots[0], b"3")  # written while the others may be collected
        collector.submit(roots[0])
    for root in roots:
        assert names(root) == sorted([MANIFEST, current_version(root) or ""])
    assert _read_current(roots[0]) == b"3"


def test_a_failed_collection_is_raised_when_the_collector_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(root: object, **_: object) -> list[str]:
        raise PermissionError(f"cannot delete under {root}")

    monkeypatch.setattr(atomic, "collect_garbage", broken)
    collector = Collector()
    collector.submit(tmp_path)
    with pytest.raises(PermissionError, match="cannot delete"):
        collector.close()
    with pytest.raises(ValueError, match="inside"), Collector() as other:  # its own error wins
        other.submit(tmp_path)
        raise ValueError("inside")


def test_commit_checks_the_version_and_open_checks_the_name(tmp_path: Path) -> None:
    with new_version(tmp_path) as version:
        with pytest.raises(ValueError, match="plain name"):
            version.open("../escape").__enter__()
        with pytest.raises(ValueError, match="names version"):
            version.commit({"version": "v0000000009-00000000"})
    assert current_version(tmp_path) is None


def test_a_corrupt_pointer_is_reported(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        current_version(tmp_path)
    (tmp_path / MANIFEST).write_text('{"version": "../../etc"}')
    with pytest.raises(ArtifactError, match="no valid version"):
        current_version(tmp_path)


def test_file_sets_on_the_memory_filesystem(mem: UPath) -> None:
    v1 = _commit(mem, b"1")
    v2 = _commit(mem, b"2")
    v3 = _commit(mem, b"3")
    assert _read_current(mem) == b"3"
    assert sorted(p.name for p in mem.iterdir()) == sorted([MANIFEST, v2, v3])
    assert v1 not in [p.name for p in mem.iterdir()]


# -- making a version durable ----------------------------------------------------------------------
def _write_version(root: Path, files: int) -> None:
    with new_version(root) as version:
        for i in range(files):
            with version.open(f"f{i}.bin") as handle:
                handle.write(bytes([i]) * 100)
        version.commit({"version": version.name})


class _Syncs:
    """Counts fsync calls (of files and directories, by kind) and syncfs calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, syncfs_result: int | None) -> None:
        self.files = self.dirs = self.syncfs = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.dirs += 1
            else:
                self.files += 1
            real(fd)

        def syncfs(fd: int) -> int:
            self.syncfs += 1
            assert syncfs_result is not None
            return syncfs_result

        monkeypatch.setattr(atomic.os, "fsync", fsync)
        monkeypatch.setattr(atomic, "_SYNCFS", None if syncfs_result is None else syncfs)


def test_many_files_are_made_durable_with_one_syncfs_before_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _Syncs(monkeypatch, syncfs_result=0)
    _write_version(tmp_path / "a", 5)
    # one syncfs for the five files and their directory; the manifest: its file and the root
    assert syncs.syncfs == 1 and syncs.files == 1 and syncs.dirs == 2
    assert current_version(tmp_path / "a") is not None


def test_where_syncfs_fails_every_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _Syncs(monkeypatch, syncfs_result=-1)
    _write_version(tmp_path / "a", 5)
    assert syncs.syncfs == 1 and syncs.files == 5 + 1 and syncs.dirs == 3


@pytest.mark.parametrize(("files", "mode"), [(2, "auto"), (5, "each")])
def test_few_files_or_mode_each_fsync_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int, mode: str
) -> None:
    monkeypatch.setenv(atomic.SYNC_ENV, mode)
    syncs = _Syncs(monkeypatch, syncfs_result=0)
    _write_version(tmp_path / "a", files)
    assert syncs.syncfs == 0 and syncs.files == files + 1 and syncs.dirs == 3


def test_without_syncfs_every_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _Syncs(monkeypatch, syncfs_result=None)
    _write_version(tmp_path / "a", 5)
    assert syncs.files == 5 + 1 and syncs.dirs == 3


def test_an_unknown_sync_mode_is_named_with_the_valid_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(atomic.SYNC_ENV, "never")
    with pytest.raises(ValueError, match=r"LESTER_FSYNC='never'; use 'auto' .* or 'each'"):
        _write_version(tmp_path / "a", 1)
