"""Deletion requests: the record the ledger keeps, its statuses, and validation of new requests.

Two kinds of request (as in the paper):

* ``"instance"``: forget the records of ``source`` with these keys, everywhere;
* ``"value"``: forget the values of ``columns`` of these records (the record stays, the values
  are treated as missing from then on).

Keys are JSON values: a scalar (str, int, float, bool) per record, or for a composite key a list
(or tuple) of scalars, one per key column. In a :class:`Request` composite keys are tuples, so a
request is immutable and hashable keys can be used in sets.

A request moves through ``pending -> running -> applied`` (or ``pending -> rejected``; a failed
run moves ``running -> pending`` again). :data:`TRANSITIONS` is the whole state machine; the
ledger refuses every other change.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from lester_dagster.errors import RequestError, preview

__all__ = [
    "KINDS",
    "STATUSES",
    "TRANSITIONS",
    "Event",
    "Key",
    "Kind",
    "Request",
    "Status",
    "fingerprint",
    "normalise_columns",
    "normalise_json",
    "normalise_keys",
]

Kind: TypeAlias = Literal["instance", "value"]
Status: TypeAlias = Literal["pending", "running", "applied", "rejected"]
Scalar: TypeAlias = str | int | float | bool
Key: TypeAlias = Scalar | tuple[Scalar, ...]

KINDS: tuple[Kind, ...] = ("instance", "value")
STATUSES: tuple[Status, ...] = ("pending", "running", "applied", "rejected")
TRANSITIONS: Mapping[Status, tuple[Status, ...]] = {
    "pending": ("running", "rejected"),
    "running": ("applied", "pending"),
    "applied": (),
    "rejected": (),
}
"""The status changes the ledger allows; ``applied`` and ``rejected`` are final."""


@dataclass(frozen=True)
class Request:
    """One deletion request as the ledger holds it."""

    id: int
    pipeline: str
    source: str
    keys: tuple[Key, ...]
    kind: Kind
    columns: tuple[str, ...]
    requested_by: str | None
    reason: str | None
    created_at: datetime
    status: Status
    status_reason: str | None
    run_id: str | None
    applied_at: datetime | None
    timings: Mapping[str, Any]
    verification: Mapping[str, Any] | None
    fingerprint: str


@dataclass(frozen=True)
class Event:
    """One status change of a request (``from_status`` is None when the request was filed)."""

    id: int
    request_id: int
    from_status: Status | None
    to_status: Status
    at: datetime
    run_id: str | None
    reason: str | None


def _scalar(value: object, where: str) -> Scalar:
    item = getattr(value, "item", None)  # numpy / pandas scalars -> Python scalars
    if item is not None and type(value).__module__ == "numpy":
        value = item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RequestError(
                f"{where} is {value!r}, which is not a JSON value; keys must be finite numbers, "
                "strings or booleans"
            )
        return value
    raise RequestError(
        f"{where} is {value!r} of type {type(value).__name__}; keys must be JSON scalars (str, "
        "int, float, bool), or for a composite key a list of them, one per key column"
    )


def _key(value: object, position: int) -> Key:
    where = f"key {position}"
    if isinstance(value, list | tuple):
        if not value:
            raise RequestError(
                f"{where} is an empty composite key; give one value per key column, e.g. ['us', 42]"
            )
        return tuple(_scalar(part, f"{where}, part {i}") for i, part in enumerate(value))
    return _scalar(value, where)


def normalise_keys(keys: object) -> tuple[Key, ...]:
    """``keys`` checked and made canonical: a non-empty tuple of unique keys (first occurrence
    kept), composite keys as tuples of one shape. Raises :class:`RequestError`."""
    if isinstance(keys, str | bytes | Mapping) or not isinstance(keys, Iterable):
        raise RequestError(
            f"keys must be a list of key values, got {type(keys).__name__} {keys!r}; "
            f"for one key pass a list of one, e.g. [{keys!r}]"
        )
    out: dict[str, Key] = {}
    for position, value in enumerate(keys):
        key = _key(value, position)
        out.setdefault(_dumps(key), key)
    if not out:
        raise RequestError(
            "the request has no keys; pass the keys of the records to forget, e.g. ['c17']"
        )
    shapes = {len(k) if isinstance(k, tuple) else 0 for k in out.values()}
    if len(shapes) > 1:
        raise RequestError(
            f"keys mix shapes (scalars and composite keys of {sorted(shapes - {0})} parts): "
            f"{preview(out.values())}; every key must have one value per key column of the "
            "source"
        )
    return tuple(out.values())


def normalise_columns(kind: object, columns: object) -> tuple[str, ...]:
    """``columns`` checked against ``kind``: unique non-empty names for a value deletion, none
    for an instance deletion. Raises :class:`RequestError`."""
    if kind not in KINDS:
        raise RequestError(
            f"unknown request kind {kind!r}; use 'instance' (forget whole records) or 'value' "
            "(forget the values of some columns)"
        )
    if isinstance(columns, str):
        columns = [columns]
    if not isinstance(columns, Iterable):
        raise RequestError(f"columns must be a list of column names, got {columns!r}")
    names = list(dict.fromkeys(columns))
    bad = [c for c in names if not isinstance(c, str) or not c]
    if bad:
        raise RequestError(f"column names must be non-empty strings, got {preview(bad)}")
    if kind == "value" and not names:
        raise RequestError(
            "a value deletion needs the columns whose values to forget, e.g. "
            "columns=['mail_subject']; to forget whole records use kind='instance'"
        )
    if kind == "instance" and names:
        raise RequestError(
            f"an instance deletion forgets whole records and takes no columns, got "
            f"{preview(names)}; to forget only these values use kind='value'"
        )
    return tuple(names)


def normalise_json(value: object, what: str) -> Any:
    """``value`` as plain JSON (a round trip through ``json``); :class:`RequestError` if it is not
    JSON (NaN, sets, objects, ...)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RequestError(
            f"{what} must be JSON (dicts, lists, str, finite numbers): {exc}"
        ) from exc


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(
    pipeline: str, source: str, kind: str, columns: Iterable[str], keys: Iterable[Key]
) -> str:
    """The content hash (sha256, hex) that makes duplicate requests idempotent: independent of
    the order of keys and columns and of who filed the request."""
    content = {
        "pipeline": pipeline,
        "source": source,
        "kind": kind,
        "columns": sorted(columns),
        "keys": sorted(_dumps(k) for k in keys),
    }
    return hashlib.sha256(_dumps(content).encode()).hexdigest()
