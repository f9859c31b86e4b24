"""Run Python in a separate, limited process: the execution check of the rewrite.

:func:`run_python` starts ``python`` (the interpreter running lester-dagster) in its own session
(so its own process group), with

* a **time limit**: at ``timeout`` seconds the whole process group is killed (SIGKILL), so
  children the code started die with it;
* a **memory limit**: the address space of the child is capped with
  ``resource.setrlimit(RLIMIT_AS)`` before the code runs; an allocation beyond it raises
  ``MemoryError`` (NumPy's ``_ArrayMemoryError`` is one), which the child reports as a memory
  kill (``killed_for="memory"``);
* a **minimal environment**: only ``PATH``, ``HOME``, locale, temp-dir and virtualenv variables
  are passed on, never proxies or anything named like a credential (``*KEY*``, ``*TOKEN*``,
  ``*SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``, ``*PROXY*``), and BLAS/OpenMP run one thread
  (``OPENBLAS_NUM_THREADS=1`` ...) with a fixed ``PYTHONHASHSEED`` so set and dict orders are
  reproducible across the runs that the differential check compares;
* **bounded output**: stdout and stderr keep their first ``output_limit`` bytes each (the rest
  is read and dropped, so the child never blocks on a full pipe).

The limits are set by a small bootstrap that the child runs before the code (``python -c``),
not by ``preexec_fn``, which is unsafe in a multi-threaded parent such as a Dagster run.
The sandbox is a guard against runaway or careless code, not a security boundary: the static
check (:mod:`lester_dagster.rewrite.validate`) refuses dangerous generated code before it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from lester_dagster.errors import RewriteCheckError

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_OUTPUT_LIMIT",
    "MEMORY_EXIT_CODE",
    "SandboxResult",
    "minimal_env",
    "run_python",
]

DEFAULT_MEMORY_MB = 2048
"""Default address-space limit: Python with NumPy, pandas and scikit-learn maps ~600 MB."""
DEFAULT_OUTPUT_LIMIT = 1_000_000
"""Bytes of stdout and of stderr kept (each)."""
MEMORY_EXIT_CODE = 86
"""Exit status of a child that died of a MemoryError (set by the bootstrap)."""

_MEMORY_MARKER = "lester-sandbox: MemoryError"

_NATIVE_OOM_SIGNS = ("std::bad_alloc", "Cannot allocate memory", "MemoryError")

KilledFor = Literal["timeout", "memory"]

_PASSED_VARS = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "TZ", "VIRTUAL_ENV")
_SECRET_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PROXY", "AUTH")
_FIXED_VARS = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# Runs in the child before the user's code: set the memory limit, then run the code as
# ``python -c CODE`` or ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would.
_BOOTSTRAP = f"""
import resource, runpy, sys, traceback
_limit = int(sys.argv[1])
if _limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
_mode, _target, _args = sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    if _mode == "code":
        sys.argv = ["-c", *_args]
        exec(compile(_target, "<string>", "exec"), {{"__name__": "__main__"}})
    elif _mode == "module":
        sys.argv = [_target, *_args]
        runpy.run_module(_target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [_target, *_args]
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(_target)))
        runpy.run_path(_target, run_name="__main__")
except MemoryError:
    traceback.print_exc()
    sys.stderr.write("\\n{_MEMORY_MARKER}\\n")
    sys.stderr.flush()
    __import__("os")._exit({MEMORY_EXIT_CODE})
"""


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did: exit status, captured output, wall time, limit kills.

    ``returncode`` is negative for a signal (``-9`` after a timeout kill); ``killed_for`` is
    ``"timeout"`` or ``"memory"`` when a limit ended the run, else ``None``. ``stdout`` and
    ``stderr`` are decoded (UTF-8, invalid bytes replaced) and cut at the output limit
    (``*_truncated`` says whether they were).
    """

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed_for: KilledFor | None
    timeout: float
    memory_mb: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the code ran to the end with exit status 0."""
        return self.returncode == 0 and self.killed_for is None

    def describe(self) -> str:
        """One paragraph for an error message or an LLM repair prompt."""
        if self.killed_for == "timeout":
            return (
                f"killed at the time limit of {self.timeout:g} s (the code was still running); "
                f"make it faster or raise the limit (timeout=...)"
            )
        if self.killed_for == "memory":
            return (
                f"killed at the memory limit of {self.memory_mb} MB (MemoryError); use less "
                f"memory or raise the limit (memory_mb=...)\n{_tail(self.stderr)}"
            )
        if self.returncode != 0:
            return f"exited with status {self.returncode} after {self.seconds:.1f} s:\n" + _tail(
                self.stderr
            )
        return f"ran to the end in {self.seconds:.1f} s"

    def check(self, what: str = "the code") -> SandboxResult:
        """Return ``self`` if :attr:`ok`, else raise :class:`RewriteCheckError` saying why."""
        if not self.ok:
            raise RewriteCheckError(f"{what} failed in the sandbox: {self.describe()}")
        return self


def _tail(text: str, lines: int = 25) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(no output on stderr)"


def _out_of_memory(returncode: int, stderr: str) -> bool:
    """A MemoryError reported by the bootstrap, or a native allocation failure (a C++
    ``bad_alloc`` or ``ENOMEM`` at the end of stderr) in a child that failed."""
    if returncode == 0:
        return False
    if returncode == MEMORY_EXIT_CODE and _MEMORY_MARKER in stderr:
        return True
    tail = stderr[-2000:]
    return any(sign in tail for sign in _NATIVE_OOM_SIGNS)


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in _SECRET_PARTS)


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a sandboxed child: a few harmless variables of this process
    (``PATH``, ``HOME``, ``LANG``, ``LC_*``, temp dirs, ``VIRTUAL_ENV``), the single-thread
    BLAS settings and ``PYTHONHASHSEED=0``, then ``extra``. Every variable whose name looks like
    a credential or a proxy (contains KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL, PROXY, AUTH) is
    dropped, also from ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in _PASSED_VARS or name.startswith("LC_")
    }
    env.update(_FIXED_VARS)
    for name, value in (extra or {}).items():
        if not isinstance(value, str):
            raise TypeError(f"env values must be strings, got {name}={value!r}")
        env[name] = value
    return {name: value for name, value in env.items() if not _is_secret(name)}


class _Drain:
    """Reads a pipe to its end in a thread, keeping the first ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream, self._limit = stream, limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self.truncated = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := self._stream.read(65536):
            room = self._limit - self._kept
            if room > 0:
                self._chunks.append(chunk[:room])
                self._kept += min(room, len(chunk))
            if len(chunk) > room:
                self.truncated = True
        self._stream.close()

    def text(self, wait: float) -> str:
        self._thread.join(wait)
        data = b"".join(self._chunks).decode("utf-8", errors="replace")
        return data + ("\n[... output cut at the sandbox's limit ...]" if self.truncated else "")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _command(args_or_code: str | Sequence[str]) -> tuple[str, str, list[str]]:
    if isinstance(args_or_code, str):
        return "code", args_or_code, []
    args = [os.fspath(a) for a in args_or_code]
    if not args:
        raise ValueError("run_python needs code (a str) or arguments ([script, ...]), got []")
    if args[0] == "-c":
        if len(args) < 2:
            raise ValueError("run_python(['-c', CODE, ...]) needs the code after '-c'")
        return "code", args[1], args[2:]
    if args[0] == "-m":
        if len(args) < 2:
            raise ValueError("run_python(['-m', MODULE, ...]) needs the module after '-m'")
        return "module", args[1], args[2:]
    return "path", args[0], args[1:]


def run_python(
    args_or_code: str | Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    timeout: float,
    memory_mb: int = DEFAULT_MEMORY_MB,
    env: Mapping[str, str] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> SandboxResult:
    """Run Python code in a limited subprocess and return what happened (never raises for
    the code's own failure; see :meth:`SandboxResult.check`).

    ``args_or_code`` is either code (a ``str``, run like ``python -c``) or the arguments after
    ``python``: ``[script, arg, ...]``, ``["-m", module, arg, ...]`` or ``["-c", code, arg...]``.
    ``cwd`` is the working directory, ``timeout`` the wall-time limit in seconds, ``memory_mb``
    the address-space limit (0: none), ``env`` extra environment variables (on top of
    :func:`minimal_env`, credentials still dropped), ``output_limit`` the bytes kept of stdout
    and of stderr each.
    """
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 0:
        raise ValueError(
            f"memory_mb must be a non-negative integer (0: no limit), got {memory_mb!r}"
        )
    if not Path(cwd).is_dir():
        raise ValueError(f"cwd must be an existing directory, got {os.fspath(cwd)!r}")
    mode, target, args = _command(args_or_code)
    command = [sys.executable, "-c", _BOOTSTRAP, str(memory_mb * 2**20), mode, target, *args]
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=minimal_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = _Drain(process.stdout, output_limit), _Drain(process.stderr, output_limit)
    killed_for: KilledFor | None = None
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed_for = "timeout"
        _kill_group(process)
        returncode = process.wait()
    except BaseException:  # KeyboardInterrupt in the parent: take the child down too
        _kill_group(process)
        process.wait()
        raise
    finally:
        _kill_group(process)  # leftovers the code started in the background
    seconds = time.perf_counter() - start
    stdout, stderr = out.text(wait=5.0), err.text(wait=5.0)
    if killed_for is None and _out_of_memory(returncode, stderr):
        killed_for = "memory"
    return SandboxResult(
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=seconds,
        killed_for=killed_for,
        timeout=float(timeout),
        memory_mb=memory_mb,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )
