"""Measuring one call: wall time, peak memory, the bytes it wrote; medians of repetitions.

Peak memory comes from Linux's ``VmHWM`` (the process's resident high-water mark), reset
before each measured call by writing ``5`` to ``/proc/self/clear_refs`` (after a garbage
collection and glibc's ``malloc_trim``, so memory freed earlier is not counted); where that is not
possible (not Linux) the peak is the process's lifetime maximum (``ru_maxrss``) and
:attr:`Sample.peak_reset` says so. Both are whole-process figures: the increase over the RSS
before the call (:attr:`Sample.peak_increase_mib`) is the call's own memory.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Sample",
    "Spread",
    "code_version",
    "file_states",
    "machine",
    "measure",
    "pinned_threads",
    "progress",
    "reset_peak",
    "rss_mib",
    "run_quietly",
    "spread",
    "written_bytes",
]

T = TypeVar("T")


def progress(message: str) -> None:
    """One line of progress on stderr (long runs say what they are doing)."""
    print(message, file=sys.stderr, flush=True)


def reset_peak() -> bool:
    """Reset the peak RSS (``VmHWM``) Linux reports; False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mib(field_name: str = "VmRSS") -> float:
    """The process's ``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Sample:
    """One measured call."""

    seconds: float
    peak_rss_mib: float
    rss_before_mib: float
    peak_reset: bool
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def peak_increase_mib(self) -> float:
        return max(0.0, self.peak_rss_mib - self.rss_before_mib)


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that the RSS before a
    call is not inflated by what earlier calls freed and the call's increase is visible."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(call: Callable[[], T]) -> tuple[Sample, T]:
    """Run ``call`` once; its wall time and the process's peak RSS during it (freed memory is
    first returned to the OS where glibc allows, outside the timing)."""
    import gc

    gc.collect()
    _trim()
    before = rss_mib("VmRSS")
    reset = reset_peak()
    began = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - began
    return Sample(seconds, rss_mib("VmHWM"), before, reset), out


def file_states(root: Path) -> dict[Path, tuple[int, int]]:
    """(modification time in ns, size) of every file under ``root``."""
    out = {}
    for path in root.rglob("*"):
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.is_file():
            out[path] = (stat.st_mtime_ns, stat.st_size)
    return out


def written_bytes(root: Path, before: dict[Path, tuple[int, int]] | None = None) -> int:
    """Bytes of the files under ``root`` that are new or changed since ``before`` (a
    :func:`file_states` snapshot; None: every file): the artifact versions a call wrote."""
    now = file_states(root)
    return sum(
        size
        for path, (mtime, size) in now.items()
        if before is None or before.get(path) != (mtime, size)
    )


@dataclass(frozen=True)
class Spread:
    """Median, min and max of some repetitions."""

    median: float
    low: float
    high: float
    n: int


def spread(values: Iterable[float]) -> Spread:
    data = list(values)
    if not data:
        return Spread(float("nan"), float("nan"), float("nan"), 0)
    return Spread(statistics.median(data), min(data), max(data), len(data))


@contextmanager
def pinned_threads() -> Iterator[None]:
    """BLAS and OpenMP pools limited to one thread (threadpoolctl) while inside: on a small,
    shared machine competing pools make timings swing by 10x."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1):
        yield


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}"


def code_version() -> str:
    """The measured code: the git commit of the package (``+ uncommitted changes`` when
    ``lester_dagster/`` differs from it), else the ``.commit`` file beside the package (an
    exported tree), else ``unknown (not a git checkout)``."""
    import lester_dagster

    root = Path(lester_dagster.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "lester_dagster")
    except (OSError, subprocess.CalledProcessError):
        marker = root / ".commit"  # an exported tree (git archive) names its commit here
        return marker.read_text().strip() if marker.exists() else "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def run_quietly(call: Callable[[], Any]) -> Any:
    """``call()`` with warnings of Dagster's beta APIs and its console logger silenced."""
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="dagster")
        warnings.filterwarnings("ignore", message=".*beta.*")
        logging.getLogger("dagster").setLevel(logging.WARNING)
        return call()
