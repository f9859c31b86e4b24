"""Filing deletion requests, checked against the source table before anything is written.

::

    from lester_dagster.orchestration import forget, submit_deletion

    forget("customers", [17, 42])                           # instance deletion by key
    forget("customers", ["a@example.org"], by="email")      # every customer with that email
    forget("mails", [3], columns=["subject"])               # value deletion: the subject only
    submit_deletion(pipeline, ledger, "customers", ["17"])  # "17" is read as the int key 17

:func:`submit_deletion` checks a request against the **source table** (the stored source asset,
every partition of it that exists, if it was materialised; else the source file, which is never
generated from here) and files it in the :class:`~lester_dagster.store.Ledger` with the
resolved stable keys. Bad requests raise and write nothing:

* an unknown source (:class:`UnknownSourceError`), no keys or malformed keys
  (:class:`RequestError`), an unknown column in ``columns`` or ``by``
  (:class:`UnknownColumnError`), a value deletion of a key column (:class:`RequestError`: delete
  the record instead), a key value that cannot be read as its column's dtype
  (:class:`RequestError`);
* keys (or ``by`` values) that no record has: with ``on_missing="reject"`` (default)
  :class:`UnknownKeyError`, naming the earlier request that already deleted them if there is
  one; with ``on_missing="noop"`` only the present keys are filed, and if none is present the
  request is filed and recorded at once as an applied no-op (run id ``"noop"``, verification
  ``{"noop": True, "reason": ...}``), so the audit trail shows it.

Keys are values of the source's key column(s) (a list or tuple per record for a composite
key), coerced to the columns' dtypes (``"17"`` finds the int key 17). With ``by=COLUMN`` they
are values of that column and reach every record whose ``COLUMN`` equals one of them (forget by
email); the request is filed with those records' keys, and ``by`` with the original values is
recorded in its ``reason`` (a last line ``by COLUMN: [json values]``). Duplicate requests are
idempotent (the ledger returns the earlier request).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias

import dagster as dg
import numpy as np
import pandas as pd

from lester_dagster.errors import (
    ArtifactError,
    LedgerStateError,
    PlanError,
    RequestError,
    SourceError,
    UnknownColumnError,
    UnknownKeyError,
    UnknownSourceError,
    preview,
)
from lester_dagster.frame.provenance import hash_keys, member_mask
from lester_dagster.frame.result import keys_for_ids
from lester_dagster.orchestration import steps
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.assets import IO_MANAGER_KEY
from lester_dagster.orchestration.discovery import (
    DEFAULT_PACKAGE,
    find_pipeline_and_translator,
)
from lester_dagster.orchestration.io_manager import LesterIOManager
from lester_dagster.orchestration.partitions import concat_frames, source_files
from lester_dagster.orchestration.pipeline import LesterPipeline
from lester_dagster.orchestration.translator import LesterTranslator
from lester_dagster.store.artifacts import has_artifact
from lester_dagster.store.ledger import Ledger
from lester_dagster.store.requests import Key, Request, normalise_columns, normalise_keys

__all__ = [
    "NOOP_RUN_ID",
    "OnMissing",
    "SourceTable",
    "forget",
    "load_source_table",
    "submit_deletion",
]

OnMissing: TypeAlias = Literal["reject", "noop"]
NOOP_RUN_ID = "noop"
"""The run id under which requests that reach no record are recorded as applied."""
_BY_LINE = "by {column}: "


@dataclass(frozen=True, eq=False)
class SourceTable:
    """The records of a source that a request is checked against, and where they come from."""

    source: str
    rows: FrameArtifact
    origin: str

    @property
    def index(self) -> pd.DataFrame:
        """Key id -> key values (the key columns, or the content hash)."""
        return self.rows.key_indexes[self.source]

    @property
    def row_ids(self) -> np.ndarray[Any, np.dtype[np.uint64]]:
        """The key id of every row."""
        if not self.rows.prov.single:
            raise ArtifactError(f"{self.origin} holds aggregated rows, not source records")
        return np.asarray(self.rows.prov.keys[self.source], dtype=np.uint64)


# -- the source table -----------------------------------------------------------------------------


def _stored_parts(
    manager: LesterIOManager, key: dg.AssetKey, *, prefer_whole: bool
) -> list[str | None]:
    """The stored artifacts of a source asset: ``[None]`` (the unpartitioned artifact), the
    partition keys that hold one, or nothing. When both exist (the pipeline's partitioning
    changed), ``prefer_whole`` picks the unpartitioned one."""
    path = manager.path_for(key)
    partitions: list[str | None] = []
    if path.exists():
        partitions.extend(sorted(p.name for p in path.iterdir() if p.is_dir() and has_artifact(p)))
    whole = has_artifact(path)
    if whole and (prefer_whole or not partitions):
        return [None]
    return partitions


def load_source_table(
    pipeline: LesterPipeline,
    source: str,
    *,
    io_manager: LesterIOManager | None = None,
    translator: LesterTranslator | None = None,
) -> SourceTable:
    """The records of ``source``: its stored asset (all stored partitions, concatenated) if it
    was materialised, else its file. Never generates a missing file (:class:`SourceError`)."""
    if source not in pipeline.sources:
        raise UnknownSourceError(source, pipeline.sources)
    manager = io_manager or LesterIOManager()
    key = (translator or LesterTranslator()).get_asset_key(pipeline, pipeline.source_step(source))
    spec = pipeline.sources[source]
    multi_file = spec.multi_file  # partitioned by file
    parts = _stored_parts(manager, key, prefer_whole=not (pipeline.partitions or multi_file))
    if parts:
        loaded = [manager.load(key, part) for part in parts]
        frames = [v for v in loaded if isinstance(v, FrameArtifact)]
        if len(frames) != len(loaded) or any(source not in f.key_indexes for f in frames):
            raise ArtifactError(
                f"the stored asset {key.to_user_string()!r} at {manager.path_for(key)} does not "
                f"hold the records of source {source!r}; rematerialise it"
            )
        plural = "s" if len(parts) != 1 else ""
        where = "" if parts == [None] else f" ({len(parts)} partition{plural}: {preview(parts, 5)})"
        origin = f"the stored asset {key.to_user_string()!r}{where} at {manager.path_for(key)}"
        return SourceTable(source, concat_frames(frames), origin)
    if multi_file:
        files = source_files(source, spec)
        rows = concat_frames([steps.read_source(source, spec, file)[0] for file in files])
        return SourceTable(source, rows, f"the {len(files)} file(s) of {str(spec.path)!r}")
    if not spec.file.exists():
        raise SourceError(
            f"source {source!r} of pipeline {pipeline.name!r} is not materialised (no artifact "
            f"at {manager.path_for(key)}) and has no file at {spec.file}; deletion requests are "
            "checked against the source's records, so materialise its asset (e.g. `dagster "
            f"asset materialize -m definitions --select {key.to_user_string()}`) or generate the "
            "data first, then file the request again"
        )
    rows, _ = steps.read_source(source, dataclasses.replace(spec, generate=None))
    return SourceTable(source, rows, f"the file {spec.file}")


# -- coercion --------------------------------------------------------------------------------------


def _number(value: object) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    return None


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _coerce_one(value: object, dtype: Any) -> object:
    """``value`` as a value of ``dtype``; raises ValueError if it cannot be."""
    if pd.api.types.is_bool_dtype(dtype):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError
    if pd.api.types.is_integer_dtype(dtype):
        number = _number(value)
        if number is None or not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if pd.api.types.is_float_dtype(dtype):
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise ValueError
        return float(number)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
        if pd.isna(stamp):
            raise ValueError
        tz = getattr(dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        return stamp
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return value if isinstance(value, str) else str(value)
    return value  # object columns: compare as given


def _coerce(values: Sequence[object], column: str, dtype: Any, source: str) -> list[object]:
    out: list[object] = []
    for value in values:
        try:
            out.append(_coerce_one(value, dtype))
        except (ValueError, TypeError, OverflowError):
            raise RequestError(
                f"{value!r} cannot be a value of column {column!r} of source {source!r}, whose "
                f"dtype is {dtype}; pass values of that type (e.g. 17 for an int column, 'c17' "
                "for a text column)"
            ) from None
    return out


def _jsonable(value: object) -> Any:
    """A key part as a JSON scalar (what the ledger stores)."""
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ledger_key(key: Any) -> Key:
    if isinstance(key, tuple):
        return tuple(_jsonable(part) for part in key)
    return _jsonable(key)  # type: ignore[no-any-return]


# -- resolution ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    keys: list[Key]  # stable keys of the records reached, JSON scalars / tuples
    given: list[Any]  # the given keys (or by values), coerced to the columns' dtypes
    missing: list[Any]  # those that reach no record


def _key_columns(table: SourceTable) -> list[str]:
    return [str(c) for c in table.index.columns]


def _by_keys(pipeline: LesterPipeline, table: SourceTable, given: Sequence[Key]) -> _Resolved:
    """Keys given as values of the source's key column(s)."""
    source = table.source
    declared = list(pipeline.sources[source].key_columns)
    columns = _key_columns(table)
    index = table.index
    known = index.index.to_numpy(dtype=np.uint64)
    if not declared:  # keyed by a content hash of the record
        hexes: list[int] = []
        for key in given:
            try:
                hexes.append(int(str(key), 16))
            except ValueError:
                raise RequestError(
                    f"source {source!r} has no key columns, so its records are keyed by a "
                    f"content hash: pass 16-digit hex keys, got {key!r}; or name a column "
                    "with --by COLUMN / by=COLUMN"
                ) from None
        array = np.array(hexes, dtype=np.uint64)
        present = member_mask(array, known)
        return _Resolved(
            [_ledger_key(k) for k in keys_for_ids(index, array[present])],
            list(given),
            [k for k, ok in zip(given, present) if not ok],
        )
    rows: list[tuple[object, ...]] = []
    for key in given:
        parts = key if isinstance(key, tuple) else (key,)
        if len(parts) != len(columns):
            example = "['us', 42]" if len(columns) > 1 else "17"
            raise RequestError(
                f"source {source!r} is keyed by {columns}; each key needs {len(columns)} "
                f"value(s), one per key column (e.g. {example}), got {key!r}"
            )
        rows.append(parts)
    coerced = [
        _coerce([r[i] for r in rows], column, index[column].dtype, source)
        for i, column in enumerate(columns)
    ]
    frame = pd.DataFrame(dict(zip(columns, coerced)), columns=columns)
    try:
        frame = frame.astype(index.dtypes.to_dict())
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(
            f"keys {preview(given, 5)} do not fit the dtypes of {source!r}'s key columns "
            f"{index.dtypes.astype(str).to_dict()}: {exc}"
        ) from exc
    ids = hash_keys(frame, columns)
    present = member_mask(ids, known)
    typed = [tuple(r) if len(columns) > 1 else r[0] for r in zip(*coerced)]
    return _Resolved(
        [_ledger_key(k) for k in keys_for_ids(index, ids[present])],
        typed,
        [k for k, ok in zip(typed, present) if not ok],
    )


def _by_column(table: SourceTable, column: str, given: Sequence[Key]) -> _Resolved:
    """Keys given as values of ``column``: every record whose ``column`` equals one of them."""
    composite = [k for k in given if isinstance(k, tuple)]
    if composite:
        raise RequestError(
            f"with by={column!r} each key is one value of that column, got the composite key(s) "
            f"{preview(composite, 3)}"
        )
    data = table.rows.data[column]
    values = _coerce(list(given), column, data.dtype, table.source)
    mask = data.isin(values).to_numpy(dtype=bool, na_value=False)
    found = set(data[mask].tolist())
    ids = pd.unique(table.row_ids[mask])
    return _Resolved(
        [_ledger_key(k) for k in keys_for_ids(table.index, ids)],
        values,
        [v for v in values if v not in found],
    )


def _parse_by(reason: str | None, column: str) -> list[Any]:
    """The ``by`` values a request's reason records for ``column``."""
    prefix = _BY_LINE.format(column=column)
    for line in (reason or "").splitlines():
        if line.startswith(prefix):
            try:
                values = json.loads(line[len(prefix) :])
            except ValueError:
                return []
            return values if isinstance(values, list) else []
    return []


def _earlier(
    ledger: Ledger, pipeline: str, source: str, missing: Sequence[Any], by: str | None
) -> dict[str, list[Any]]:
    """The live requests of ``source`` that already reach some of ``missing``: ``#id
    (status)`` -> those."""
    covered: dict[str, list[Any]] = {}
    for request in ledger.all(pipeline):
        if request.source != source or request.status == "rejected":
            continue
        if by is None:
            if request.kind != "instance":
                continue
            pool = set(request.keys)
        else:
            pool = {_hashable(v) for v in _parse_by(request.reason, by)}
        hit = [m for m in missing if _hashable(_ledger_key(m)) in pool]
        if hit:
            covered[f"#{request.id} ({request.status})"] = hit
    return covered


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _missing_message(
    table: SourceTable, by: str | None, missing: Sequence[Any], earlier: dict[str, list[Any]]
) -> str:
    what = f"with {by} =" if by is not None else "with key"
    text = (
        f"source {table.source!r} has no record {what} {preview(missing, 5)} (checked in "
        f"{table.origin})"
    )
    if earlier:
        done = "; ".join(
            f"request {rid} already deletes {preview(keys, 3)}" for rid, keys in earlier.items()
        )
        text += f"; {done} (see `lester-dagster requests`)"
    return text


# -- submitting ------------------------------------------------------------------------------------


def _names(columns: Iterable[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def submit_deletion(
    pipeline: LesterPipeline,
    ledger: Ledger,
    source: str,
    keys: Iterable[object],
    *,
    columns: Iterable[str] = (),
    by: str | None = None,
    on_missing: OnMissing = "reject",
    requested_by: str | None = None,
    reason: str | None = None,
    io_manager: LesterIOManager | None = None,
    translator: LesterTranslator | None = None,
) -> Request:
    """Check a deletion request against the source table and file it (see the module
    docstring); returns the filed request, or the earlier one if it is a duplicate.

    ``columns`` empty: forget whole records (instance deletion); else forget only the values of
    these columns (value deletion). ``io_manager`` / ``translator`` locate the stored source
    asset (default: the default artifact root and asset keys).
    """
    if not isinstance(pipeline, LesterPipeline):
        raise PlanError(f"pipeline must be a LesterPipeline, got {type(pipeline).__name__}")
    if on_missing not in ("reject", "noop"):
        raise RequestError(
            f"on_missing must be 'reject' (refuse keys that no record has) or 'noop' (file only "
            f"the present keys), got {on_missing!r}"
        )
    if source not in pipeline.sources:
        raise UnknownSourceError(source, pipeline.sources)
    given = normalise_keys(keys)
    names = _names(columns)
    kind: Literal["instance", "value"] = "value" if names else "instance"
    wanted = normalise_columns(kind, names)
    if by is not None and (not isinstance(by, str) or not by):
        raise RequestError(f"by must name a column of source {source!r}, got {by!r}")

    table = load_source_table(pipeline, source, io_manager=io_manager, translator=translator)
    available = [str(c) for c in table.rows.data.columns]
    for column in (*wanted, *([by] if by is not None else [])):
        if column not in available:
            raise UnknownColumnError(column, available, where=f"source {source!r} ({table.origin})")
    key_columns = [c for c in wanted if c in pipeline.sources[source].key_columns]
    if key_columns:
        raise RequestError(
            f"column(s) {preview(key_columns)} of source {source!r} identify its records (its "
            f"key); a value deletion cannot forget a key: delete the record instead (an instance "
            f"deletion: no --columns / columns=())"
        )

    resolved = _by_keys(pipeline, table, given) if by is None else _by_column(table, by, given)
    notes = [reason] if reason else []
    if by is not None:
        values = [_jsonable(v) for v in resolved.given]
        notes.append(_BY_LINE.format(column=by) + json.dumps(values, default=str))
    noop = None
    if resolved.missing:
        earlier = _earlier(ledger, pipeline.name, source, resolved.missing, by)
        message = _missing_message(table, by, resolved.missing, earlier)
        if on_missing == "reject":
            raise UnknownKeyError(
                f"{message}. Nothing was filed; pass only present keys, or on_missing='noop' "
                "(--on-missing noop) to file the present ones and record the rest as a no-op"
            )
        if not resolved.keys:
            if by is not None:
                raise UnknownKeyError(
                    f"{message}. Nothing was filed: a request is filed by the stable keys of "
                    f"the records it reaches, and no record has these {by} values"
                )
            noop = message
        else:
            notes.append(
                "not in the source (ignored): "
                + json.dumps([_ledger_key(m) for m in resolved.missing], default=str)
            )
    filed_keys = resolved.keys if noop is None else [_ledger_key(m) for m in resolved.missing]
    started = datetime.now(UTC)
    request = ledger.submit(
        pipeline.name,
        source,
        filed_keys,
        kind=kind,
        columns=wanted,
        requested_by=requested_by,
        reason="\n".join(notes) or None,
    )
    if noop is not None and request.status == "pending" and request.created_at >= started:
        try:
            ledger.claim(request.id, NOOP_RUN_ID)
            ledger.mark_applied(
                request.id, NOOP_RUN_ID, timings={}, verification={"noop": True, "reason": noop}
            )
        except LedgerStateError:  # a run claimed it first: it applies it (to nothing)
            pass
        request = ledger.get(request.id)
    return request


def _io_manager_of(package: str) -> LesterIOManager | None:
    """The IO manager the package's ``defs`` configure (its artifact root), if any."""
    defs = getattr(importlib.import_module(package), "defs", None)
    if isinstance(defs, dg.Definitions):
        manager = (defs.resources or {}).get(IO_MANAGER_KEY)
        if isinstance(manager, LesterIOManager):
            return manager
    return None


def forget(
    source: str,
    keys: Iterable[object],
    *,
    pipeline: str | LesterPipeline | None = None,
    package: str = DEFAULT_PACKAGE,
    columns: Iterable[str] = (),
    by: str | None = None,
    ledger_url: str | None = None,
    on_missing: OnMissing = "reject",
    requested_by: str | None = None,
    reason: str | None = None,
    artifacts: str | os.PathLike[str] | None = None,
) -> Request:
    """File a deletion request of ``keys`` of ``source`` (see :func:`submit_deletion`).

    ``pipeline``: a :class:`LesterPipeline`, or the name of one in ``package`` (``None``: the
    only pipeline there); ``ledger_url``: the ledger (default
    :func:`~lester_dagster.store.default_ledger_url`); ``artifacts``: the artifact root of the
    stored source asset (default: the package's IO manager, else the default root).
    """
    translator: LesterTranslator | None = None
    manager: LesterIOManager | None = None
    if isinstance(pipeline, LesterPipeline):
        found = pipeline
    else:
        found, translator = find_pipeline_and_translator(pipeline, package)
        manager = _io_manager_of(package)
    if artifacts is not None:
        manager = LesterIOManager(base_path=os.fspath(artifacts))
    with Ledger(ledger_url) as ledger:
        return submit_deletion(
            found,
            ledger,
            source,
            keys,
            columns=columns,
            by=by,
            on_missing=on_missing,
            requested_by=requested_by,
            reason=reason,
            io_manager=manager,
            translator=translator,
        )
