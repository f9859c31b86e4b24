"""The error hierarchy: one root, :class:`LesterError`.

Every subclass also inherits the built-in exception a Python user would expect
(``except KeyError`` catches an unknown column), and every message says what was
wrong, what was expected and, where possible, how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "DecrementalError",
    "DuplicateKeyError",
    "DuplicateRowError",
    "ExpressionError",
    "GeneratedCodeError",
    "JoinTypeError",
    "LLMError",
    "LedgerError",
    "LedgerStateError",
    "LesterError",
    "PlanError",
    "RequestError",
    "RewriteCheckError",
    "RewriteError",
    "RowPositionError",
    "SourceError",
    "UDFError",
    "UnknownColumnError",
    "UnknownKeyError",
    "UnknownRequestError",
    "UnknownSourceError",
    "UnlearningError",
    "UnstorableError",
    "UnsupportedOperationError",
    "preview",
]


def preview(values: Iterable[object], limit: int = 10) -> str:
    """A short, readable list of values for error messages (``'a', 'b', ... (12 in all)``)."""
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in all)"
    return shown or "(none)"


class LesterError(Exception):
    """Root of every error raised by lester-dagster."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0]) if self.args else ""


class PlanError(LesterError, ValueError):
    """A pipeline plan is malformed (bad argument, incompatible frames, ...)."""


class UnknownColumnError(LesterError, KeyError):
    """A column name that the frame does not have."""

    def __init__(self, column: str, available: Iterable[str], where: str = "") -> None:
        self.column = column
        self.available = tuple(available)
        place = f" in {where}" if where else ""
        super().__init__(
            f"unknown column {column!r}{place}; the frame has: {preview(self.available, 50)}"
        )


class UnknownSourceError(LesterError, KeyError):
    """A source name that the plan or store does not know."""

    def __init__(self, source: str, available: Iterable[str]) -> None:
        self.source = source
        self.available = tuple(available)
        super().__init__(f"unknown source {source!r}; known sources: {preview(self.available)}")


class UnknownKeyError(LesterError, KeyError):
    """Keys that do not identify any record of a source."""


class DuplicateKeyError(LesterError, ValueError):
    """The key columns of a source do not identify its records uniquely."""


class ExpressionError(LesterError, ValueError):
    """An expression failed on the data (e.g. a cast of text to int); names the expression."""


class JoinTypeError(LesterError, TypeError):
    """Join key columns whose types cannot be compared."""


class SourceError(LesterError, OSError):
    """A source file that cannot be read."""


class UDFError(LesterError, RuntimeError):
    """A user-defined function failed on a row or returned the wrong shape."""


class UnsupportedOperationError(LesterError, NotImplementedError):
    """An operation the plan or engine cannot do (yet); the message says what to do instead."""


class RowPositionError(LesterError, IndexError):
    """Row positions that are not integers inside the current training matrix."""


class DuplicateRowError(LesterError, ValueError):
    """The same row position asked for more than once in one removal."""


class UnlearningError(LesterError, ValueError):
    """A removal the model cannot absorb (no rows left, a classifier left with one class, ...).

    Raised before anything changes: the model and its stored statistics are as they were.
    """


class DecrementalError(LesterError, ValueError):
    """A decremental update (forget/replace) that cannot be done as asked.

    For example removing every fitted row (a refit on no rows is impossible), removing rows that
    were never fitted, or a state that a refit on the remaining rows would reject. The fitted
    transformer and its statistics are left as they were.
    """


class ArtifactError(LesterError, OSError):
    """A stored artifact that cannot be written or read (wrong kind, unknown format, I/O)."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """No artifact (no committed manifest) at the given path."""


class ArtifactIntegrityError(ArtifactError):
    """A stored file whose checksum or size differs from its manifest: it was changed or
    damaged after it was written. Nothing is loaded; rematerialise the artifact."""


class UnstorableError(LesterError, ValueError):
    """Data the store cannot write as given (a reserved column name, a column of mixed types,
    metadata that is not JSON); the message says what to change."""


class LedgerError(LesterError, OSError):
    """The deletion ledger's database cannot be opened or used (a malformed URL, an unknown
    dialect, a missing database driver); the message names the URL and what to install or fix."""


class RequestError(LesterError, ValueError):
    """A deletion request that is malformed (no keys, an unknown kind, columns that do not match
    the kind, keys that are not JSON values). Nothing is written to the ledger."""


class UnknownRequestError(LesterError, KeyError):
    """A request id that the ledger does not hold."""


class LedgerStateError(LesterError, RuntimeError):
    """A status change the ledger does not allow (claiming a request that is not pending,
    applying one claimed by another run, ...). Nothing is changed."""


class RewriteError(LesterError, RuntimeError):
    """The LLM rewrite of a script into a pipeline module failed; the message says at which
    stage (request, parse, static check, execution, differential check) and why.

    ``report``: the :class:`~lester_dagster.rewrite.report.RewriteReport` of the rewrite that
    failed, when there is one (``None`` otherwise)."""

    report: object | None = None


class LLMError(RewriteError, ConnectionError):
    """The OpenAI-compatible server could not be used (unreachable, refused the key, kept
    answering 429/5xx after the retries, or answered something that is not a chat completion);
    the message names the base URL and the model."""


class GeneratedCodeError(RewriteError, ValueError):
    """Generated code that is refused before it runs: no code block, a syntax error, an import
    or call outside the allow-list, file/network/process access. Nothing is written."""


class RewriteCheckError(RewriteError):
    """Generated code that ran but failed a check (a time or memory limit, an exception, or a
    differential-check mismatch with the original script) after every repair attempt."""
