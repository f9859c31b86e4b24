"""Manifests: JSON round trip, digest, format checks, verified reads and the reader/writer race."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from lester_dagster.errors import ArtifactError, ArtifactIntegrityError, ArtifactNotFoundError
from lester_dagster.store import atomic
from lester_dagster.store.atomic import MANIFEST, new_version
from lester_dagster.store.manifest import (
    FORMAT_VERSION,
    FileEntry,
    HashingWriter,
    Manifest,
    read_files,
    read_manifest,
    verify,
)


def _manifest(**files: FileEntry) -> Manifest:
    return Manifest(
        kind="frame",
        version="v0000000001-00000000",
        rows=3,
        sources=("customers",),
        files=files,
        content={"prov": {"layout": "single"}},
        metadata={"owner": "me"},
    )


def _save(root: Path, **files: bytes) -> Manifest:
    """Commit a version holding ``files`` with a manifest, as the artifact savers do."""
    with new_version(root) as version:
        entries = {}
        for name, data in files.items():
            with version.open(name) as raw:
                writer = HashingWriter(raw)
                writer.write(data)
            entries[name] = FileEntry(version.relative(name), writer.sha256, writer.size)
        manifest = Manifest("object", version.name, None, (), entries)
        version.commit(manifest.to_dict())
    return manifest


def test_a_manifest_round_trips_through_its_dict() -> None:
    m = _manifest(data=FileEntry("v/data.parquet", "ab" * 32, 10))
    back = Manifest.from_dict(m.to_dict())
    assert back == m
    assert back.to_dict()["format_version"] == FORMAT_VERSION
    assert back.total_bytes == 10


def test_the_digest_follows_the_checksums_not_the_order() -> None:
    a, b = FileEntry("v/a", "1" * 64, 1), FileEntry("v/b", "2" * 64, 1)
    assert _manifest(a=a, b=b).digest == _manifest(b=b, a=a).digest
    changed = FileEntry("v/b", "3" * 64, 1)
    assert _manifest(a=a, b=changed).digest != _manifest(a=a, b=b).digest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a lester-dagster artifact"),
        ({"format_version": FORMAT_VERSION + 1}, "Upgrade lester-dagster"),
        ({"files": {"data": {"path": "x"}}}, "malformed"),
        ({"rows": "many"}, "malformed"),
    ],
)
def test_foreign_newer_and_malformed_manifests_are_rejected(
    change: dict[str, object], message: str
) -> None:
    doc = _manifest().to_dict() | change
    with pytest.raises(ArtifactError, match=message):
        Manifest.from_dict(doc)


def test_the_hashing_writer_hashes_exactly_what_it_writes() -> None:
    raw = io.BytesIO()
    writer = HashingWriter(raw)
    writer.write(b"abc")
    writer.write(memoryview(b"defg"))
    assert raw.getvalue() == b"abcdefg"
    assert writer.sha256 == hashlib.sha256(b"abcdefg").hexdigest()
    assert (writer.size, writer.tell()) == (7, 7)
    assert not writer.seekable()
    with pytest.raises(io.UnsupportedOperation):
        writer.read()


def test_no_manifest_means_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="materialise the asset first") as info:
        read_manifest(tmp_path / "nothing")
    assert isinstance(info.value, FileNotFoundError)


def test_verified_reads_detect_a_changed_file(tmp_path: Path) -> None:
    m = _save(tmp_path, a=b"alpha", b=b"beta")
    manifest, data = read_files(tmp_path)
    assert manifest == m and data == {"a": b"alpha", "b": b"beta"}
    assert verify(tmp_path) == m
    (tmp_path / m.files["b"].path).write_bytes(b"BETA")  # same size, other content
    with pytest.raises(ArtifactIntegrityError, match=r"file 'b' .* does not match") as info:
        read_files(tmp_path)
    assert "rematerialise" in str(info.value)
    assert read_files(tmp_path, ["a"])[1] == {"a": b"alpha"}  # only what is asked is read
    assert read_files(tmp_path, verify=False)[1]["b"] == b"BETA"


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    m = _save(tmp_path, a=b"alpha")
    (tmp_path / m.files["a"].path).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        read_files(tmp_path)
    with pytest.raises(ArtifactError, match="has no file 'zzz'"):
        read_files(tmp_path, ["zzz"])


def test_a_reader_overtaken_by_two_commits_reads_the_newest_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path, a=b"first")
    real = atomic.read_bytes
    commits: list[Manifest] = []

    def racing(path: object) -> bytes:
        if not commits and not str(path).endswith(MANIFEST):
            # between reading the manifest and the file, a writer commits twice: the version
            # the reader learnt about is garbage-collected
            commits.append(_save(tmp_path, a=b"second"))
            commits.append(_save(tmp_path, a=b"third"))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr("lester_dagster.store.manifest.read_bytes", racing)
    manifest, data = read_files(tmp_path)
    assert data == {"a": b"third"} and manifest == commits[-1]
