"""The deletion ledger: an append-only, transactional record of deletion requests.

A SQLAlchemy Core database, SQLite by default (``$DAGSTER_HOME/lester/ledger.db``, else
``$LESTER_HOME/ledger.db`` or ``~/.lester-dagster/ledger.db``); any SQLAlchemy URL works, e.g.
``postgresql+psycopg2://user@host/db`` (the driver must be installed; the engine is created on
first use, so constructing a :class:`Ledger` never connects).

Schema (created on first use):

* ``lester_requests``: one row per request (see :class:`~lester_dagster.store.requests.Request`);
  rows are never deleted, only their status columns change;
* ``lester_request_events``: one row per status change (``from_status`` NULL when filed), written
  in the same transaction as the change, so the history is complete. On SQLite, triggers refuse
  deletes of either table and updates of events.

Every write is one transaction. On SQLite writes start with ``BEGIN IMMEDIATE``, so writers from
any number of threads or processes are serialised (no lost updates, no double claims; a waiting
writer retries for up to ``timeout`` seconds). On PostgreSQL writes take ``LOCK TABLE ... IN
EXCLUSIVE MODE`` on the requests table, which serialises writers and lets readers through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from lester_dagster.errors import (
    LedgerError,
    LedgerStateError,
    RequestError,
    UnknownRequestError,
    preview,
)
from lester_dagster.store.home import lester_home
from lester_dagster.store.requests import (
    STATUSES,
    TRANSITIONS,
    Event,
    Key,
    Kind,
    Request,
    Status,
    fingerprint,
    normalise_columns,
    normalise_json,
    normalise_keys,
)

__all__ = ["EVENTS_TABLE", "REQUESTS_TABLE", "Ledger", "default_ledger_path", "default_ledger_url"]

REQUESTS_TABLE = "lester_requests"
EVENTS_TABLE = "lester_request_events"
_WRITE = "lester_write"
_LIVE: tuple[Status, ...] = ("pending", "running", "applied")  # duplicates of these are reused
_IN_EFFECT: tuple[Status, ...] = ("running", "applied")  # what rematerialisations filter out

_metadata = sa.MetaData()
_requests = sa.Table(
    REQUESTS_TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(255), nullable=False),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("keys", sa.JSON, nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),
    sa.Column("requested_by", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.Text),
    sa.Column("run_id", sa.String(255)),
    sa.Column("applied_at", sa.DateTime(timezone=True)),
    sa.Column("timings", sa.JSON, nullable=False),
    sa.Column("verification", sa.JSON(none_as_null=True)),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.CheckConstraint("kind IN ('instance', 'value')", name="ck_lester_requests_kind"),
    sa.CheckConstraint(
        "status IN ('pending', 'running', 'applied', 'rejected')", name="ck_lester_requests_status"
    ),
    sa.Index("ix_lester_requests_pipeline_status", "pipeline", "status"),
    sa.Index("ix_lester_requests_fingerprint", "fingerprint"),
    sqlite_autoincrement=True,  # ids are never reused: monotonic
)
_events = sa.Table(
    EVENTS_TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "request_id", sa.Integer, sa.ForeignKey(f"{REQUESTS_TABLE}.id"), nullable=False, index=True
    ),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(255)),
    sa.Column("reason", sa.Text),
    sqlite_autoincrement=True,
)
for _name, _table, _what in (
    ("lester_requests_no_delete", REQUESTS_TABLE, "DELETE"),
    ("lester_events_no_delete", EVENTS_TABLE, "DELETE"),
    ("lester_events_no_update", EVENTS_TABLE, "UPDATE"),
):
    sa.event.listen(
        _requests if _table == REQUESTS_TABLE else _events,
        "after_create",
        sa.DDL(  # type: ignore[no-untyped-call]
            f"CREATE TRIGGER IF NOT EXISTS {_name} BEFORE {_what} ON {_table} BEGIN "
            f"SELECT RAISE(ABORT, 'the lester ledger is append-only: {_what} on {_table} is "
            "not allowed'); END"
        ).execute_if(dialect="sqlite"),
    )


def default_ledger_path() -> Path:
    """``$DAGSTER_HOME/lester/ledger.db``, else ``$LESTER_HOME/ledger.db`` or
    ``~/.lester-dagster/ledger.db`` (the same home as the artifact store)."""
    return lester_home() / "ledger.db"


def default_ledger_url() -> str:
    """``sqlite:///`` + :func:`default_ledger_path`."""
    return f"sqlite:///{default_ledger_path()}"


def _utc(value: datetime) -> datetime:
    # SQLite stores naive timestamps (written as UTC); PostgreSQL returns aware ones.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key_of_json(value: Any) -> Key:
    return tuple(value) if isinstance(value, list) else cast(Key, value)


def _request_of_row(row: sa.Row[Any]) -> Request:
    m = row._mapping
    return Request(
        id=m["id"],
        pipeline=m["pipeline"],
        source=m["source"],
        keys=tuple(_key_of_json(k) for k in m["keys"]),
        kind=m["kind"],
        columns=tuple(m["columns"]),
        requested_by=m["requested_by"],
        reason=m["reason"],
        created_at=_utc(m["created_at"]),
        status=m["status"],
        status_reason=m["status_reason"],
        run_id=m["run_id"],
        applied_at=None if m["applied_at"] is None else _utc(m["applied_at"]),
        timings=m["timings"],
        verification=m["verification"],
        fingerprint=m["fingerprint"],
    )


def _text(value: object, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _ids(ids: int | Iterable[int]) -> list[int]:
    items = [ids] if isinstance(ids, int) else list(ids)
    bad = [i for i in items if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise RequestError(f"request ids must be integers, got {preview(bad)}")
    return list(dict.fromkeys(items))


class Ledger:
    """The deletion ledger at ``url`` (default: :func:`default_ledger_url`).

    ``timeout`` is how long (seconds) a SQLite writer waits for another writer's transaction.
    Nothing connects until the first call; then the tables are created if missing.
    """

    def __init__(self, url: str | sa.URL | None = None, *, timeout: float = 30.0) -> None:
        raw = default_ledger_url() if url is None else url
        try:
            self._url = make_url(raw)
            self._url.get_dialect()
        except Exception as exc:  # ArgumentError, NoSuchModuleError, ...
            raise LedgerError(
                f"cannot use {raw!r} as the ledger database: {exc}. Pass a SQLAlchemy URL such "
                "as 'sqlite:////path/to/ledger.db' or 'postgresql+psycopg2://user@host/db'"
            ) from exc
        self._timeout = timeout
        self._engine: Engine | None = None

    @property
    def url(self) -> str:
        """The database URL (password hidden)."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"

    def close(self) -> None:
        """Release the database connections (the ledger reopens on the next call)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------------

    @property
    def _sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    def _connect(self) -> Engine:
        if self._engine is not None:
            return self._engine
        try:
            engine = self._create_engine()
        except ImportError as exc:
            raise LedgerError(
                f"the database driver for {self.url!r} is not installed ({exc}); install it "
                f"(e.g. `pip install psycopg2-binary` for postgresql://) or use a sqlite:/// URL"
            ) from exc
        self._engine = engine
        if self._sqlite:
            with self._transaction(write=True) as conn:  # serialised: no create/create race
                _metadata.create_all(conn)
        else:
            _metadata.create_all(engine)
        return engine

    def _create_engine(self) -> Engine:
        if not self._sqlite:
            return sa.create_engine(self._url)
        database = self._url.database or ""
        memory = database in ("", ":memory:") or "mode=memory" in database
        if memory:  # one shared connection, or every connection would see its own database
            engine = sa.create_engine(
                self._url,
                poolclass=sa.pool.StaticPool,
                connect_args={"check_same_thread": False, "timeout": self._timeout},
            )
        else:
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self._url, connect_args={"timeout": self._timeout})

        # pysqlite's own transaction handling cannot BEGIN IMMEDIATE: take it over (the recipe
        # of the SQLAlchemy docs), and start write transactions with BEGIN IMMEDIATE.
        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(_WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        engine = self._connect()
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: write})
            with conn.begin():
                if write and not self._sqlite and self._url.get_backend_name() == "postgresql":
                    conn.exec_driver_sql(f"LOCK TABLE {REQUESTS_TABLE} IN EXCLUSIVE MODE")
                yield conn

    # -- reading -----------------------------------------------------------------------------

    def _select(
        self, conn: Connection, *where: sa.ColumnElement[bool], limit: int | None = None
    ) -> list[Request]:
        query = sa.select(_requests).where(*where).order_by(_requests.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [_request_of_row(row) for row in conn.execute(query)]

    def get(self, id: int) -> Request:
        """The request with this id; :class:`UnknownRequestError` if there is none."""
        (request_id,) = _ids(id)
        with self._transaction(write=False) as conn:
            return self._get(conn, request_id)

    def _get(self, conn: Connection, id: int) -> Request:
        found = self._select(conn, _requests.c.id == id)
        if not found:
            last = conn.execute(sa.select(sa.func.max(_requests.c.id))).scalar()
            raise UnknownRequestError(
                f"no deletion request with id {id} in the ledger at {self.url}; its ids run from "
                f"1 to {last or 0}. List them with Ledger.all() or `lester-dagster requests`"
            )
        return found[0]

    def all(self, pipeline: str | None = None, status: Status | None = None) -> list[Request]:
        """Every request (of ``pipeline``, with ``status``), oldest first."""
        where: list[sa.ColumnElement[bool]] = []
        if pipeline is not None:
            where.append(_requests.c.pipeline == pipeline)
        if status is not None:
            if status not in STATUSES:
                raise RequestError(f"unknown status {status!r}; the statuses are {STATUSES}")
            where.append(_requests.c.status == status)
        with self._transaction(write=False) as conn:
            return self._select(conn, *where)

    def pending(self, pipeline: str | None = None) -> list[Request]:
        """The pending requests (of ``pipeline``), oldest first."""
        return self.all(pipeline, "pending")

    def events(self, request_id: int | None = None) -> list[Event]:
        """The status changes (of one request), in the order they happened."""
        query = sa.select(_events).order_by(_events.c.id)
        if request_id is not None:
            query = query.where(_events.c.request_id == request_id)
        with self._transaction(write=False) as conn:
            rows = list(conn.execute(query))
        return [
            Event(
                id=r.id,
                request_id=r.request_id,
                from_status=r.from_status,
                to_status=r.to_status,
                at=_utc(r.at),
                run_id=r.run_id,
                reason=r.reason,
            )
            for r in rows
        ]

    def watermark(self, pipeline: str) -> int:
        """The highest id of an applied request of ``pipeline`` (0 if none). Requests may be
        applied out of order, so lower ids are not necessarily applied."""
        query = sa.select(sa.func.max(_requests.c.id)).where(
            _requests.c.pipeline == pipeline, _requests.c.status == "applied"
        )
        with self._transaction(write=False) as conn:
            return int(conn.execute(query).scalar() or 0)

    def _in_effect(self, pipeline: str, source: str, kind: Kind) -> list[Request]:
        with self._transaction(write=False) as conn:
            return self._select(
                conn,
                _requests.c.pipeline == pipeline,
                _requests.c.source == source,
                _requests.c.kind == kind,
                _requests.c.status.in_(_IN_EFFECT),
            )

    def deleted_keys(self, pipeline: str, source: str) -> list[Key]:
        """The keys of ``source`` whose records are deleted (instance requests that are applied
        or running), each once, in request order: what a rematerialisation filters out."""
        keys: dict[Key, None] = {}
        for request in self._in_effect(pipeline, source, "instance"):
            keys.update(dict.fromkeys(request.keys))
        return list(keys)

    def deleted_values(self, pipeline: str, source: str) -> dict[str, list[Key]]:
        """Per column of ``source``, the keys of the records whose value in that column is
        deleted (value requests that are applied or running)."""
        out: dict[str, dict[Key, None]] = {}
        for request in self._in_effect(pipeline, source, "value"):
            for column in request.columns:
                out.setdefault(column, {}).update(dict.fromkeys(request.keys))
        return {column: list(keys) for column, keys in out.items()}

    # -- writing -----------------------------------------------------------------------------

    def submit(
        self,
        pipeline: str,
        source: str,
        keys: Iterable[object],
        *,
        kind: Kind = "instance",
        columns: Iterable[str] = (),
        requested_by: str | None = None,
        reason: str | None = None,
    ) -> Request:
        """File a deletion request (status ``pending``) and return it.

        Idempotent: if a pending, running or applied request has the same content (pipeline,
        source, kind, columns and keys, in any order), that request is returned and nothing is
        written. A malformed request raises :class:`RequestError` and writes nothing.
        """
        pipeline_ = cast(str, _text(pipeline, "pipeline"))
        source_ = cast(str, _text(source, "source"))
        columns_ = normalise_columns(kind, columns)
        keys_ = normalise_keys(keys)
        requested_by = _text(requested_by, "requested_by", optional=True)
        reason = _text(reason, "reason", optional=True)
        digest = fingerprint(pipeline_, source_, kind, columns_, keys_)
        with self._transaction(write=True) as conn:
            existing = self._select(
                conn,
                _requests.c.fingerprint == digest,
                _requests.c.status.in_(_LIVE),
                limit=1,
            )
            if existing:
                return existing[0]
            now = datetime.now(UTC)
            result = conn.execute(
                _requests.insert().values(
                    pipeline=pipeline_,
                    source=source_,
                    kind=kind,
                    keys=[list(k) if isinstance(k, tuple) else k for k in keys_],
                    columns=list(columns_),
                    requested_by=requested_by,
                    reason=reason,
                    created_at=now,
                    status="pending",
                    timings={},
                    verification=None,
                    fingerprint=digest,
                )
            )
            inserted = result.inserted_primary_key
            if inserted is None:  # every SQLAlchemy dialect reports it for a single-row insert
                raise LedgerError(f"the database at {self.url} did not return the new request id")
            request_id = int(inserted[0])
            conn.execute(
                _events.insert().values(
                    request_id=request_id, from_status=None, to_status="pending", at=now,
                    reason=reason,
                )
            )  # fmt: skip
            return self._get(conn, request_id)

    def _change(
        self,
        ids: int | Iterable[int],
        to: Status,
        *,
        run_id: str | None,
        reason: str | None,
        of_run: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> list[Request]:
        """Move every request of ``ids`` to status ``to`` in one transaction, or none of them."""
        wanted = _ids(ids)
        if not wanted:
            return []
        with self._transaction(write=True) as conn:
            found = {r.id: r for r in self._select(conn, _requests.c.id.in_(wanted))}
            missing = [i for i in wanted if i not in found]
            if missing:
                raise UnknownRequestError(
                    f"no deletion request with id {preview(missing)} in the ledger at "
                    f"{self.url}; nothing was changed. List the requests with Ledger.all()"
                )
            for request in found.values():
                allowed = TRANSITIONS[request.status]
                if to not in allowed:
                    raise LedgerStateError(
                        f"request {request.id} is {request.status!r} and cannot become {to!r}; "
                        f"from {request.status!r} it can become "
                        f"{' or '.join(map(repr, allowed)) or 'nothing (it is final)'}. Nothing "
                        f"was changed; see Ledger.events({request.id}) for its history"
                    )
                if of_run is not None and request.run_id != of_run:
                    raise LedgerStateError(
                        f"request {request.id} is running under run {request.run_id!r}, not "
                        f"{of_run!r}; only the run that claimed it can move it to {to!r}. "
                        "Nothing was changed"
                    )
            now = datetime.now(UTC)
            for request_id in wanted:
                update = (
                    _requests.update()
                    .where(_requests.c.id == request_id)
                    .where(_requests.c.status == found[request_id].status)
                    .values(status=to, status_reason=reason, run_id=run_id, **(values or {}))
                )
                if conn.execute(update).rowcount != 1:  # impossible inside the lock; be sure
                    raise LedgerStateError(f"request {request_id} changed during the update")
                conn.execute(
                    _events.insert().values(
                        request_id=request_id,
                        from_status=found[request_id].status,
                        to_status=to,
                        at=now,
                        run_id=run_id if run_id is not None else of_run,
                        reason=reason,
                    )
                )
            return self._select(conn, _requests.c.id.in_(wanted))

    def reject(self, id: int, reason: str) -> Request:
        """Reject a pending request, with the reason (shown to whoever filed it)."""
        (request,) = self._change(id, "rejected", run_id=None, reason=_text(reason, "reason"))
        return request

    def claim(self, ids: int | Iterable[int], run_id: str) -> list[Request]:
        """Mark pending requests as running under ``run_id``: all of them, or (if any is unknown
        or not pending, e.g. claimed by another run) none, raising :class:`LedgerStateError`."""
        return self._change(ids, "running", run_id=_text(run_id, "run_id"), reason=None)

    def mark_applied(
        self,
        ids: int | Iterable[int],
        run_id: str,
        timings: Mapping[str, Any],
        verification: Mapping[str, Any] | None = None,
    ) -> list[Request]:
        """Mark requests that ``run_id`` claimed as applied, recording its timings (e.g. seconds
        per asset) and verification result (JSON)."""
        run = _text(run_id, "run_id")
        timings_ = normalise_json(dict(timings), "timings")
        check = None if verification is None else normalise_json(dict(verification), "verification")
        return self._change(
            ids,
            "applied",
            run_id=run,
            reason=None,
            of_run=run,
            values={"applied_at": datetime.now(UTC), "timings": timings_, "verification": check},
        )

    def release(self, ids: int | Iterable[int], run_id: str, reason: str) -> list[Request]:
        """Put requests that ``run_id`` claimed back to pending (the run failed), with why."""
        run = _text(run_id, "run_id")
        return self._change(ids, "pending", run_id=None, reason=_text(reason, "reason"), of_run=run)
