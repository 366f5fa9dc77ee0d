"""SqlStore: the Store over SQLite or PostgreSQL through SQLAlchemy Core.

Every SQL statement Legato runs lives in this module. The two dialects differ only in how
the engine is created and how a write transaction begins (see ``_connect_sqlite``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from legato.errors import RunNotFound, StoreBusy, StoreError, StoreUnavailable
from legato.models import (
    Artifact,
    FlowRun,
    LogRecord,
    Question,
    QuestionState,
    State,
    StateChange,
    TaskRun,
)
from legato.store import schema as s
from legato.store.base import (
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    LogEntry,
    Op,
    PutCache,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)
from legato.store.migrate import check_schema
from legato.store.notify import QUEUE_CHANNEL, Notifier, PostgresListener
from legato.store.pools import PoolSql
from legato.store.queue import QueueSql
from legato.store.stats import StatsSql
from legato.store.tokens import TokenSql
from legato.store.triggers import TriggerSql
from legato.store.views import ViewsSql

_dumps = json.dumps
_JSON_COLUMNS = frozenset(
    {
        "parameters",
        "tags",
        "resources",
        "depends_on",
        "result",
        "answer",
        "default",
        "schema",
        "payload",
        "input_hashes",
        "capacity",
        "used",
    }
)


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (_dumps(v) if k in _JSON_COLUMNS and v is not None else v) for k, v in values.items()
    }


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _flow_run(row: Any) -> FlowRun:
    return FlowRun(
        id=row.id,
        flow=row.flow,
        state=State(row.state),
        parameters=json.loads(row.parameters),
        parent_task_run_id=row.parent_task_run_id,
        pool=row.pool,
        tags=json.loads(row.tags),
        result=_loads(row.result),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        source=row.source,
        owner=row.owner,
        deployment=row.deployment,
        version=row.version,
        worker=row.worker,
        attempts=row.attempts,
        queued_at=row.queued_at,
        lease_expires_at=row.lease_expires_at,
    )


def _task_run(row: Any) -> TaskRun:
    """A task run from a row; a row that leaves out the heavy columns (resources, tags,
    cache_key, result, payload: the dashboard's light selects) gets their empty values."""
    m = row._mapping
    return TaskRun(
        id=row.id,
        flow_run_id=row.flow_run_id,
        task=row.task,
        key=row.key,
        state=State(row.state),
        attempts=row.attempts,
        pool=row.pool,
        worker=row.worker,
        resources=json.loads(m["resources"]) if "resources" in m else {},
        tags=json.loads(m["tags"]) if "tags" in m else [],
        depends_on=json.loads(row.depends_on),
        cache_key=m.get("cache_key"),
        result=_loads(m.get("result")),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        child_flow_run_id=row.child_flow_run_id,
        queued_at=row.queued_at,
        lease_expires_at=row.lease_expires_at,
        max_attempts=row.max_attempts,
        payload=_loads(m.get("payload")),
        engine_job_id=row.engine_job_id,
        fingerprint=m.get("fingerprint"),
        input_hashes=_loads(m.get("input_hashes")),
        superseded_at=m.get("superseded_at"),
    )


def _question(row: Any) -> Question:
    return Question(
        id=row.id,
        flow_run_id=row.flow_run_id,
        key=row.key,
        prompt=row.prompt,
        schema=json.loads(row.schema),
        state=QuestionState(row.state),
        default=_loads(row.default),
        answer=_loads(row.answer),
        answered_by=row.answered_by,
        answered_at=row.answered_at,
        error=row.error,
        created_at=row.created_at,
        timeout_at=row.timeout_at,
    )


def _flow_run_row(run: FlowRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow": run.flow,
        "state": run.state.value,
        "parameters": _dumps(run.parameters),
        "parent_task_run_id": run.parent_task_run_id,
        "pool": run.pool,
        "tags": _dumps(run.tags),
        "result": None if run.result is None else _dumps(run.result),
        "error": run.error,
        "source": run.source,
        "owner": run.owner,
        "deployment": run.deployment,
        "version": run.version,
        "worker": run.worker,
        "attempts": run.attempts,
        "queued_at": run.queued_at,
        "lease_expires_at": run.lease_expires_at,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "updated_at": run.created_at,
    }


def _task_run_row(run: TaskRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "task": run.task,
        "key": run.key,
        "state": run.state.value,
        "attempts": run.attempts,
        "pool": run.pool,
        "worker": run.worker,
        "resources": _dumps(run.resources),
        "tags": _dumps(run.tags),
        "depends_on": _dumps(run.depends_on),
        "cache_key": run.cache_key,
        "result": None if run.result is None else _dumps(run.result),
        "error": run.error,
        "child_flow_run_id": run.child_flow_run_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "queued_at": run.queued_at,
        "lease_expires_at": run.lease_expires_at,
        "max_attempts": run.max_attempts,
        "payload": None if run.payload is None else _dumps(run.payload),
        "engine_job_id": run.engine_job_id,
        "fingerprint": run.fingerprint,
        "input_hashes": None if run.input_hashes is None else _dumps(run.input_hashes),
        "superseded_at": run.superseded_at,
    }


_INSERT_TASK_RUN = insert(s.task_runs)
_INSERT_HISTORY = insert(s.state_history)
_INSERT_LOG = insert(s.logs)


def _sqlite_insert(table: Any) -> str:
    """The INSERT of every column but an autoincrement id, with named parameters: the hot
    path's rows go straight to the SQLite driver (SQLAlchemy's per-statement work cost more
    than SQLite's own on a flow of small tasks)."""
    cols = [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]
    names = ", ".join(f'"{c}"' for c in cols)
    return f"INSERT INTO {table.name} ({names}) VALUES ({', '.join(':' + c for c in cols)})"


_SQLITE_BULK = {
    "task_runs": _sqlite_insert(s.task_runs),
    "state_history": _sqlite_insert(s.state_history),
    "logs": _sqlite_insert(s.logs),
}


def _history(run_id: str, kind: str, state: State, at: float, msg: str | None) -> dict[str, Any]:
    return {"run_id": run_id, "kind": kind, "state": state.value, "at": at, "message": msg}


# SQLite primary result codes, and PostgreSQL SQLSTATEs, of a refused write: writing again
# cannot help (full, read-only, failing or damaged storage) or may (locked, dropped connection).
_SQLITE_UNAVAILABLE = {
    3: "PERM",
    8: "READONLY",
    10: "IOERR",
    11: "CORRUPT",
    13: "FULL",
    14: "CANTOPEN",
}
_SQLITE_BUSY = {5: "BUSY", 6: "LOCKED"}
_PG_UNAVAILABLE = ("53100", "53400", "25006", "58030", "XX001", "XX002")
_PG_BUSY = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53200", "53300")


def _write_failure(url: str, exc: DBAPIError) -> StoreError:
    """The error for a write the database refused, naming the database (password masked):
    StoreUnavailable (disk full, read-only, I/O error), StoreBusy (try again), or StoreError."""
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    state = getattr(orig, "sqlstate", None) or ""
    if (isinstance(code, int) and code & 0xFF in _SQLITE_UNAVAILABLE) or (
        state.startswith(_PG_UNAVAILABLE)
    ):
        return StoreUnavailable(f"the state database {url} cannot take writes: {orig}")
    if (
        (isinstance(code, int) and code & 0xFF in _SQLITE_BUSY)
        or state.startswith(_PG_BUSY)
        or exc.connection_invalidated
    ):
        return StoreBusy(f"the state database {url} is busy or unreachable: {orig}")
    return StoreError(f"the state database {url} refused a write: {orig}")


def _connect_sqlite(url: str) -> Engine:
    engine = create_engine(url, pool_size=8, max_overflow=16, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below), so the driver must not.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL + synchronous=NORMAL: a commit survives a killed process (not a power cut of the
        # last few transactions), and costs no fsync per commit.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that later writes can fail
        # with "database is locked" instead of waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


class SqlStore(QueueSql, TokenSql, StatsSql, PoolSql, TriggerSql, ViewsSql):
    """The Store over a SQL database. ``auto_upgrade`` creates or upgrades the schema
    (embedded mode); otherwise an old schema is an error that says to run `legato db upgrade`."""

    def __init__(self, url: str, *, auto_upgrade: bool = True, check: bool = True) -> None:
        self.url = url
        self._write_lock = threading.Lock()
        self._write_conn: Connection | None = None
        self._update_stmts: dict[tuple[str, frozenset[str]], Any] = {}
        self.notifier = Notifier()
        self._listener: PostgresListener | None = None
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        try:
            if self.dialect == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    from pathlib import Path

                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self.engine = _connect_sqlite(url)
            else:
                if parsed.drivername == "postgresql":
                    parsed = parsed.set(drivername="postgresql+psycopg")
                self.engine = create_engine(
                    parsed, pool_size=10, max_overflow=20, pool_pre_ping=True
                )
            if check:
                try:
                    check_schema(self.engine, auto_upgrade=auto_upgrade)
                except BaseException:
                    self.engine.dispose()  # a refused database keeps no connection open
                    raise
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot open the state database {parsed!r}: {exc.orig}") from None

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.dialect == "postgresql":
            # PostgreSQL takes concurrent writers: each transaction on a pooled connection.
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        # SQLite has one writer at a time anyway: one long-lived connection, no pool
        # checkout and reset per commit, and writers queue on this lock, not on the file's.
        with self._write_lock:
            if self._write_conn is None or self._write_conn.closed:
                self._write_conn = self.engine.connect()
                self._write_conn.info["write"] = True
            conn = self._write_conn
            try:
                with conn.begin():
                    yield conn
                if self.dialect != "postgresql":
                    self._deliver_local(conn)
            except BaseException:
                conn.info.pop("legato_signals", None)
                if conn.invalidated:
                    conn.close()
                    self._write_conn = None
                raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.info["write"] = False
            with conn.begin():
                yield conn

    # -- writes -------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op], *, request_id: str | None = None) -> None:
        if not ops:
            return
        try:
            with self._write() as conn:
                if request_id is not None and not self._first_time(conn, request_id):
                    return  # this batch was committed before: its answer was lost
                self._apply(conn, ops)
        except DBAPIError as exc:  # nothing of the batch was committed
            raise _write_failure(self.safe_url, exc) from exc

    def _update_stmt(self, table: Any, columns: frozenset[str]) -> Any:
        """A prebuilt UPDATE ... WHERE id = :_id for this set of columns (built once)."""
        key = (table.name, columns)
        stmt = self._update_stmts.get(key)
        if stmt is None:
            stmt = (
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in sorted(columns)})
            )
            self._update_stmts[key] = stmt
        return stmt

    def _apply(self, conn: Connection, ops: Sequence[Op]) -> None:
        history: list[dict[str, Any]] = []
        new_tasks: dict[str, dict[str, Any]] = {}  # id -> row, in insertion order
        task_updates: list[dict[str, Any]] = []
        log_rows: list[dict[str, Any]] = []
        flow_pools: set[str] = set()

        for op in ops:
            if isinstance(op, InsertTaskRun):
                run = op.run
                new_tasks[run.id] = _task_run_row(run)
                history.append(_history(run.id, "task", run.state, run.created_at, op.message))
            elif isinstance(op, UpdateTaskRun):
                values = _encode(op.values)
                values["state"] = op.state.value
                row = new_tasks.get(op.id)
                if row is not None:
                    row.update(values)  # inserted in this batch: insert the final row at once
                else:
                    values["_id"] = op.id
                    task_updates.append(values)
                history.append(_history(op.id, "task", op.state, op.at, op.message))
            elif isinstance(op, SupersedeTaskRun):
                # At once, not with the batch's updates: a new call inserted below may take
                # the key this record gives up.
                values = {"superseded_at": op.at, "_id": op.id}
                if op.key is not None:
                    values["key"] = op.key
                conn.execute(self._update_stmt(s.task_runs, frozenset(values) - {"_id"}), [values])
            elif isinstance(op, InsertFlowRun):
                conn.execute(insert(s.flow_runs), [_flow_run_row(op.run)])
                if op.run.queued_at is not None and op.run.pool:
                    flow_pools.add(op.run.pool)
                history.append(
                    _history(op.run.id, "flow", op.run.state, op.run.created_at, op.message)
                )
            elif isinstance(op, UpdateFlowRun):
                values = _encode(op.values)
                values["state"] = op.state.value
                values["updated_at"] = op.at
                values["_id"] = op.id
                conn.execute(self._update_stmt(s.flow_runs, frozenset(values) - {"_id"}), [values])
                history.append(_history(op.id, "flow", op.state, op.at, op.message))
            elif isinstance(op, InsertLogs):
                log_rows.extend(
                    {
                        "flow_run_id": r.flow_run_id,
                        "task_run_id": r.task_run_id,
                        "at": r.at,
                        "level": r.level,
                        "logger": r.logger,
                        "message": r.message,
                    }
                    for r in op.records
                )
            elif isinstance(op, InsertArtifact):
                a = op.artifact
                conn.execute(
                    insert(s.artifacts),
                    [
                        {
                            "id": a.id,
                            "flow_run_id": a.flow_run_id,
                            "task_run_id": a.task_run_id,
                            "kind": a.kind,
                            "title": a.title,
                            "data": _dumps(a.data),
                            "created_at": a.created_at,
                        }
                    ],
                )
            elif isinstance(op, InsertQuestion):
                q = op.question
                conn.execute(
                    insert(s.questions),
                    [
                        {
                            "id": q.id,
                            "flow_run_id": q.flow_run_id,
                            "key": q.key,
                            "prompt": q.prompt,
                            "schema": _dumps(q.schema),
                            "state": q.state.value,
                            "default": None if q.default is None else _dumps(q.default),
                            "answer": None if q.answer is None else _dumps(q.answer),
                            "answered_by": q.answered_by,
                            "answered_at": q.answered_at,
                            "error": q.error,
                            "created_at": q.created_at,
                            "timeout_at": q.timeout_at,
                        }
                    ],
                )
            elif isinstance(op, PutCache):
                conn.execute(delete(s.cache_entries).where(s.cache_entries.c.key == op.key))
                conn.execute(
                    insert(s.cache_entries),
                    [
                        {
                            "key": op.key,
                            "task": op.task,
                            "task_run_id": op.task_run_id,
                            "result": _dumps(op.result),
                            "created_at": op.created_at,
                            "expires_at": op.expires_at,
                        }
                    ],
                )
            else:  # pragma: no cover - a new Op type without a branch here
                raise TypeError(f"unknown store operation {op!r}")
        if new_tasks:
            self._bulk(conn, "task_runs", _INSERT_TASK_RUN, list(new_tasks.values()))
        queued = {r["pool"] for r in new_tasks.values() if r.get("queued_at") is not None}
        requeued = [u["_id"] for u in task_updates if u.get("queued_at") is not None]
        if requeued:
            c = s.task_runs.c
            queued.update(
                p for (p,) in conn.execute(select(c.pool).where(c.id.in_(requeued))).all()
            )
        self._signal(conn, QUEUE_CHANNEL, {p for p in queued | flow_pools if p})
        # Updates of task runs inserted by an earlier batch, in order; consecutive updates
        # that set the same columns go in one executemany.
        i = 0
        while i < len(task_updates):
            cols = frozenset(task_updates[i]) - {"_id"}
            j = i + 1
            while j < len(task_updates) and frozenset(task_updates[j]) - {"_id"} == cols:
                j += 1
            conn.execute(self._update_stmt(s.task_runs, cols), task_updates[i:j])
            i = j
        if history:
            self._bulk(conn, "state_history", _INSERT_HISTORY, history)
        if log_rows:
            self._bulk(conn, "logs", _INSERT_LOG, log_rows)

    def _first_time(self, conn: Connection, request_id: str) -> bool:
        """Record a batch's id in its own transaction; False if it was recorded before."""
        from legato.models import now

        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        t = now()
        stmt = (
            dialect_insert(s.applied_requests)
            .values(id=request_id, at=t)
            .on_conflict_do_nothing()
            .returning(s.applied_requests.c.id)
        )
        fresh = conn.execute(stmt).first() is not None
        if fresh and int(t * 1000) % 997 == 0:  # now and then, forget day-old ids
            conn.execute(delete(s.applied_requests).where(s.applied_requests.c.at < t - 86400))
        return fresh

    def _bulk(self, conn: Connection, table: str, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows in this transaction (on SQLite, through the driver's executemany)."""
        if self.dialect == "sqlite":
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(_SQLITE_BULK[table], rows)
            except sqlite3.IntegrityError as exc:  # as SQLAlchemy would have raised it
                raise IntegrityError(_SQLITE_BULK[table], None, exc) from exc
            except sqlite3.Error as exc:
                raise OperationalError(_SQLITE_BULK[table], None, exc) from exc
            finally:
                cursor.close()
        else:
            conn.execute(stmt, rows)

    def transition_flow_run(
        self,
        run_id: str,
        state: State,
        *,
        allowed_from: Sequence[State],
        values: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> bool:
        from legato.models import now

        at = now()
        row = _encode(values or {})
        row.update(state=state.value, updated_at=at)
        with self._write() as conn:
            done = conn.execute(
                update(s.flow_runs)
                .where(
                    and_(
                        s.flow_runs.c.id == run_id,
                        s.flow_runs.c.state.in_([a.value for a in allowed_from]),
                    )
                )
                .values(row)
            ).rowcount
            if done:
                conn.execute(
                    insert(s.state_history), [_history(run_id, "flow", state, at, message)]
                )
        return bool(done)

    # -- reads --------------------------------------------------------------------------

    def _resolve_id(self, conn: Connection, table: Any, run_id: str) -> Any:
        row = conn.execute(select(table).where(table.c.id == run_id)).first()
        if row is None and 4 <= len(run_id) < 36:
            # A unique prefix is enough, as with git hashes.
            rows = conn.execute(
                select(table).where(table.c.id.startswith(run_id, autoescape=True)).limit(2)
            ).all()
            if len(rows) == 1:
                row = rows[0]
            elif len(rows) > 1:
                raise RunNotFound(f"run id prefix {run_id!r} is ambiguous: give more characters")
        if row is None:
            raise RunNotFound(f"no run has id {run_id!r} in {self.safe_url}")
        return row

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def get_flow_run(self, run_id: str) -> FlowRun:
        with self._read() as conn:
            return _flow_run(self._resolve_id(conn, s.flow_runs, run_id))

    def list_flow_runs(
        self,
        *,
        flow: str | None = None,
        states: Sequence[State] | None = None,
        parent_task_run_id: str | None = None,
        top_level: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[FlowRun]:
        q = select(s.flow_runs)
        if top_level:
            q = q.where(s.flow_runs.c.parent_task_run_id.is_(None))
        if flow is not None:
            q = q.where(s.flow_runs.c.flow == flow)
        if states:
            q = q.where(s.flow_runs.c.state.in_([st.value for st in states]))
        if parent_task_run_id is not None:
            q = q.where(s.flow_runs.c.parent_task_run_id == parent_task_run_id)
        q = q.order_by(s.flow_runs.c.created_at.desc(), s.flow_runs.c.id.desc())
        q = q.limit(limit).offset(offset)
        with self._read() as conn:
            return [_flow_run(r) for r in conn.execute(q)]

    def get_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        q = (
            select(s.task_runs)
            .where(s.task_runs.c.flow_run_id == flow_run_id)
            .order_by(s.task_runs.c.created_at, s.task_runs.c.id)
        )
        with self._read() as conn:
            return [_task_run(r) for r in conn.execute(q)]

    def get_task_run(self, task_run_id: str) -> TaskRun:
        with self._read() as conn:
            return _task_run(self._resolve_id(conn, s.task_runs, task_run_id))

    def get_history(self, run_id: str) -> list[StateChange]:
        q = (
            select(s.state_history)
            .where(s.state_history.c.run_id == run_id)
            .order_by(s.state_history.c.id)
        )
        with self._read() as conn:
            return [
                StateChange(r.run_id, r.kind, State(r.state), r.at, r.message)
                for r in conn.execute(q)
            ]

    def get_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        after_id: int = 0,
        min_level: int = 0,
        limit: int = 1000,
    ) -> list[LogEntry]:
        c = s.logs.c
        q = select(s.logs).where(c.flow_run_id == flow_run_id, c.id > after_id)
        if task_run_id is not None:
            q = q.where(c.task_run_id == task_run_id)
        if min_level:
            q = q.where(c.level >= min_level)
        q = q.order_by(c.id).limit(limit)
        with self._read() as conn:
            return [
                LogEntry(
                    r.id,
                    LogRecord(r.flow_run_id, r.task_run_id, r.at, r.level, r.logger, r.message),
                )
                for r in conn.execute(q)
            ]

    def get_artifacts(self, flow_run_id: str) -> list[Artifact]:
        c = s.artifacts.c
        q = select(s.artifacts).where(c.flow_run_id == flow_run_id).order_by(c.created_at, c.id)
        with self._read() as conn:
            return [
                Artifact(
                    r.id,
                    r.flow_run_id,
                    r.task_run_id,
                    r.kind,
                    json.loads(r.data),
                    r.title,
                    r.created_at,
                )
                for r in conn.execute(q)
            ]

    def get_cached(self, key: str, now: float) -> Any | None:
        c = s.cache_entries.c
        q = select(c.result, c.expires_at).where(c.key == key)
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            return None
        return json.loads(row.result)

    # -- questions ----------------------------------------------------------------------

    def get_question(self, question_id: str) -> Question:
        with self._read() as conn:
            return _question(self._resolve_id(conn, s.questions, question_id))

    def find_question(self, flow_run_id: str, key: str) -> Question | None:
        c = s.questions.c
        q = select(s.questions).where(c.flow_run_id == flow_run_id, c.key == key)
        with self._read() as conn:
            row = conn.execute(q).first()
        return None if row is None else _question(row)

    def list_questions(
        self,
        *,
        states: Sequence[QuestionState] | None = None,
        flow_run_id: str | None = None,
        limit: int = 100,
    ) -> list[Question]:
        c = s.questions.c
        q = select(s.questions)
        if states:
            q = q.where(c.state.in_([st.value for st in states]))
        if flow_run_id is not None:
            q = q.where(c.flow_run_id == flow_run_id)
        q = q.order_by(c.created_at, c.id).limit(limit)
        with self._read() as conn:
            return [_question(r) for r in conn.execute(q)]

    def update_question(
        self,
        question_id: str,
        *,
        allowed_from: Sequence[QuestionState],
        state: QuestionState,
        values: dict[str, Any],
    ) -> bool:
        c = s.questions.c
        row = _encode(values)
        row["state"] = state.value
        stmt = (
            update(s.questions)
            .where(c.id == question_id, c.state.in_([a.value for a in allowed_from]))
            .values(row)
        )
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount)

    def _listen(self) -> None:
        """Start the LISTEN thread on first wait (PostgreSQL only)."""
        if self.dialect == "postgresql" and self._listener is None:
            with self._write_lock:
                if self._listener is None:
                    url = make_url(self.url).set(drivername="postgresql")
                    conninfo = url.render_as_string(hide_password=False)
                    self._listener = PostgresListener(conninfo, self.notifier)

    def queue_versions(self, pools: Sequence[str]) -> dict[str, int]:
        self._listen()
        return super().queue_versions(pools)

    def wait_for_task_runs(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        self._listen()
        return super().wait_for_task_runs(ids, timeout)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._write_lock:
            if self._write_conn is not None:
                self._write_conn.close()
                self._write_conn = None
        self.engine.dispose()
