"""SqlStore: the Store over SQLite or PostgreSQL through SQLAlchemy Core.

This module holds the connections and transactions, and the SQL of the run role (what the
engine records and reads). The queue role's SQL is in ``queue.py``; the admin and view roles'
in ``admin_sql.py`` and the modules it gathers, loaded only when first used. Rows become
records in ``rows.py``. The two dialects differ only in how the engine is created and how a
write transaction begins (see ``_connect_sqlite``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from legato.errors import (
    IllegalTransition,
    RunNotFound,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from legato.models import (
    SOURCES,
    STOPPED_STATES,
    Artifact,
    FlowRun,
    Question,
    QuestionState,
    State,
    StateChange,
    TaskRun,
    check_transition,
)
from legato.store import fairness
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.migrate import check_schema
from legato.store.notify import DONE_CHANNEL, QUEUE_CHANNEL, Notifier, PostgresListener
from legato.store.ops import (
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
from legato.store.queue import QueueSql
from legato.store.reruns import RerunSql
from legato.store.retention import RetentionSql

_INSERT_TASK_RUN = insert(s.task_runs)
_INSERT_HISTORY = insert(s.state_history)
_INSERT_LOG = insert(s.logs)

# Where a flow's wait for a remote task run stops: it ended, or crashed for good.
_STOPS = STOPPED_STATES
# A run read unfinished is read again after this long even without a wake-up (a safety net;
# every way a task run stops signals its waiters).
UNENDED_FOR = 5.0


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


class _Batch:
    """One batch of operations being written in one transaction. Task run inserts, history
    rows and log lines are gathered and written together at the end (the hot path); other
    operations are executed as they come, in order.

    Every state change is checked against the transition table before anything is written:
    the states of the batch's runs are read once (``read_states``) and its changes replayed
    on them in order, so a change that an earlier one in the batch makes legal passes, and a
    refusal names exactly the op refused (``IllegalTransition.index``). The guarded UPDATEs
    (``WHERE state IN`` the legal sources) stay as the backstop against another writer
    changing a run between that read and the write (``raced``)."""

    def __init__(self, store: SqlStore, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.history: list[dict[str, Any]] = []
        self.new_tasks: dict[str, dict[str, Any]] = {}  # id -> row, in insertion order
        self.task_updates: list[dict[str, Any]] = []
        self.update_stored: list[bool] = []  # whether each of task_updates' runs is stored
        self.log_rows: list[dict[str, Any]] = []
        self.flow_pools: set[str] = set()
        self.index = 0  # the op being applied (an IllegalTransition names it)
        # The state of each run this batch changes, as of the op being applied: read from the
        # database first, then replayed. A run not in it is not stored (no error: an update of
        # a missing run changes nothing, as it always did).
        self.tasks: dict[str, State] = {}
        self.flows: dict[str, State] = {}
        self.pools: dict[str, str | None] = {}  # stored task runs' pools (requeued ones wake)

    def read_states(self, ops: Sequence[Op]) -> None:
        """Read the current state of every stored run that ``ops`` update: one SELECT per
        table."""
        # Runs inserted by this batch are not read: their states are known (the hot path of
        # a task inserted, started and finished in one commit reads nothing).
        new = {op.run.id for op in ops if isinstance(op, InsertTaskRun | InsertFlowRun)}
        task_ids = list({op.id for op in ops if isinstance(op, UpdateTaskRun)} - new)
        flow_ids = list({op.id for op in ops if isinstance(op, UpdateFlowRun)} - new)
        for id_, state, pool in self.store._rows(self.conn, "task_runs", task_ids):
            self.tasks[id_] = State(state)
            self.pools[id_] = pool
        for id_, state, _ in self.store._rows(self.conn, "flow_runs", flow_ids):
            self.flows[id_] = State(state)

    def check(self, what: str, old: State | None, new: State) -> None:
        try:
            check_transition(what, old, new)
        except IllegalTransition as exc:
            exc.index = self.index
            raise

    def insert_task_run(self, op: InsertTaskRun) -> None:
        run = op.run
        self.check(f"task run {run.id}", None, run.state)
        self.new_tasks[run.id] = rowmap.task_run_row(run)
        self.history.append(rowmap.history(run.id, "task", run.state, run.created_at, op.message))

    def update_task_run(self, op: UpdateTaskRun) -> None:
        values = rowmap.encode(op.values)
        values["state"] = op.state.value
        row = self.new_tasks.get(op.id)
        if row is not None:
            self.check(f"task run {op.id}", State(row["state"]), op.state)
            row.update(values)  # inserted in this batch: insert the final row at once
        else:
            old = self.tasks.get(op.id)
            if old is not None:
                self.check(f"task run {op.id}", old, op.state)
                self.tasks[op.id] = op.state
            values["_id"] = op.id
            self.task_updates.append(values)  # written in flush, guarded by its state
            self.update_stored.append(old is not None)
        self.history.append(rowmap.history(op.id, "task", op.state, op.at, op.message))

    def supersede_task_run(self, op: SupersedeTaskRun) -> None:
        # At once, not with the batch's updates: a new call inserted later in the batch may
        # take the key this record gives up.
        values: dict[str, Any] = {"superseded_at": op.at, "_id": op.id}
        if op.key is not None:
            values["key"] = op.key
        stmt = self.store._update_stmt(s.task_runs, frozenset(values) - {"_id"})
        self.conn.execute(stmt, [values])

    def insert_flow_run(self, op: InsertFlowRun) -> None:
        run = op.run
        self.check(f"flow run {run.id}", None, run.state)
        self.conn.execute(insert(s.flow_runs), [rowmap.flow_run_row(run)])
        if run.queued_at is not None and run.pool:
            self.flow_pools.add(run.pool)
        self.flows[run.id] = run.state
        self.history.append(rowmap.history(run.id, "flow", run.state, run.created_at, op.message))

    def update_flow_run(self, op: UpdateFlowRun) -> None:
        old = self.flows.get(op.id)
        if old is None:
            return  # no such run: nothing to update, as before
        self.check(f"flow run {op.id}", old, op.state)
        self.flows[op.id] = op.state
        values = rowmap.encode(op.values)
        values["state"] = op.state.value
        values["updated_at"] = op.at
        values["_id"] = op.id
        stmt = self.store._update_stmt(s.flow_runs, frozenset(values) - {"_id"}, op.state)
        if self.conn.execute(stmt, [values]).rowcount < 1:
            self.raced("flow run", [op.id])
        self.history.append(rowmap.history(op.id, "flow", op.state, op.at, op.message))

    def raced(self, kind: str, ids: list[str]) -> None:
        """A guarded UPDATE changed fewer rows than were checked: another writer changed (or
        deleted) one of these runs after this batch read its state. Which one cannot be told
        from the rows without guessing (a row this batch changed and one it was refused may
        both be at the new state), so the batch is refused as busy: tried again, it reads the
        states afresh and refuses exactly the change that is illegal now."""
        shown = ", ".join(ids[:3]) + (" ..." if len(ids) > 3 else "")
        raise StoreBusy(
            f"the state database {self.store.safe_url} is busy: another writer changed "
            f"{kind} {shown} while this batch was written"
        )

    def insert_logs(self, op: InsertLogs) -> None:
        self.log_rows.extend(rowmap.log_row(r) for r in op.records)

    def insert_artifact(self, op: InsertArtifact) -> None:
        self.conn.execute(insert(s.artifacts), [rowmap.artifact_row(op.artifact)])

    def insert_question(self, op: InsertQuestion) -> None:
        self.conn.execute(insert(s.questions), [rowmap.question_row(op.question)])

    def put_cache(self, op: PutCache) -> None:
        self.conn.execute(delete(s.cache_entries).where(s.cache_entries.c.key == op.key))
        row = {
            "key": op.key,
            "task": op.task,
            "task_run_id": op.task_run_id,
            "result": rowmap.dumps(op.result),
            "created_at": op.created_at,
            "expires_at": op.expires_at,
        }
        self.conn.execute(insert(s.cache_entries), [row])

    def place_in_queues(self) -> None:
        """Claim keys (fairness.py) for the task runs this batch queues: new ones inserted
        queued, and stored ones queued for their pool now (a retry's requeue keeps its key,
        set by the worker's outcome, not here)."""
        for row in self.new_tasks.values():
            row.setdefault("claim_key", None)  # one executemany: every row the same keys
        queued = [r for r in self.new_tasks.values() if r.get("queued_at") is not None]
        updates = [
            u
            for u in self.task_updates
            if u.get("queued_at") is not None and u["state"] == State.PENDING.value
        ]
        if updates:
            ids = [u["_id"] for u in updates]
            c = s.task_runs.c
            known = {
                r.id: r
                for r in self.conn.execute(
                    select(c.id, c.pool, c.priority, c.root_id, c.flow_run_id).where(c.id.in_(ids))
                )
            }
            for u in updates:
                r = known.get(u["_id"])
                new = self.new_tasks.get(u["_id"])  # inserted by this same batch
                if r is None and new is None:
                    continue
                got = new if new is not None else r._mapping  # type: ignore[union-attr]
                u["_where"] = {
                    "pool": u.get("pool") or got["pool"],
                    "priority": got["priority"],
                    "root_id": got["root_id"],
                    "flow_run_id": got["flow_run_id"],
                }
        places = [r for r in queued if r.get("pool")]
        places += [u["_where"] for u in updates if "_where" in u]
        if places:
            fairness.assign(self.conn, places)
        for u in updates:
            where = u.pop("_where", None)
            u["claim_key"] = where["claim_key"] if where else None

    def flush(self) -> None:
        """Write what was gathered: new task runs, wake-ups, updates, history, logs."""
        conn, store = self.conn, self.store
        self.place_in_queues()
        if self.new_tasks:
            store._bulk(conn, "task_runs", _INSERT_TASK_RUN, list(self.new_tasks.values()))
        queued = {r["pool"] for r in self.new_tasks.values() if r.get("queued_at") is not None}
        queued.update(
            u.get("pool") or self.pools.get(u["_id"])  # the pool it is queued in now
            for u in self.task_updates
            if u.get("queued_at") is not None
        )
        store._signal(conn, QUEUE_CHANNEL, {p for p in queued | self.flow_pools if p})
        # Task runs that stop here (a cancel, a flow's own end): their waiters learn of it.
        stops = {u["_id"] for u in self.task_updates if State(u["state"]) in _STOPS}
        store._signal(conn, DONE_CHANNEL, stops)
        # Updates of task runs inserted by an earlier batch, in order; consecutive updates
        # that set the same columns go in one executemany. Each was checked (read_states);
        # the WHERE state IN its legal sources is the backstop against a concurrent writer.
        updates = self.task_updates
        i = 0
        while i < len(updates):
            cols = frozenset(updates[i]) - {"_id"}
            new = updates[i]["state"]
            j = i + 1
            while (
                j < len(updates)
                and updates[j]["state"] == new
                and frozenset(updates[j]) - {"_id"} == cols
            ):
                j += 1
            group = updates[i:j]
            done = conn.execute(store._update_stmt(s.task_runs, cols, State(new)), group)
            if done.rowcount < sum(self.update_stored[i:j]):
                self.raced("task run", [u["_id"] for u in group])
            i = j
        if self.history:
            store._bulk(conn, "state_history", _INSERT_HISTORY, self.history)
        if self.log_rows:
            store._bulk(conn, "logs", _INSERT_LOG, self.log_rows)


_HANDLERS: dict[type[Any], Callable[[_Batch, Any], None]] = {
    InsertTaskRun: _Batch.insert_task_run,
    UpdateTaskRun: _Batch.update_task_run,
    SupersedeTaskRun: _Batch.supersede_task_run,
    InsertFlowRun: _Batch.insert_flow_run,
    UpdateFlowRun: _Batch.update_flow_run,
    InsertLogs: _Batch.insert_logs,
    InsertArtifact: _Batch.insert_artifact,
    InsertQuestion: _Batch.insert_question,
    PutCache: _Batch.put_cache,
}


class _AdminOnFirstUse:
    """Stands in for ``AdminSql`` (limits, deployments, pools, tokens, triggers, dashboard
    queries, statistics) until one of its methods is first asked for, then binds it from
    there: an embedded flow run never imports that SQL. Type checkers see ``AdminSql``."""

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__"):
            from legato.store.admin_sql import AdminSql

            for klass in AdminSql.__mro__[:-1]:  # not object's
                if name in vars(klass):
                    found = vars(klass)[name]
                    get = getattr(found, "__get__", None)
                    return found if get is None else get(self, type(self))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


if TYPE_CHECKING:
    from legato.store.admin_sql import AdminSql as _AdminPart
else:
    _AdminPart = _AdminOnFirstUse


class SqlStore(QueueSql, RerunSql, RetentionSql, _AdminPart):
    """The Store over a SQL database. ``auto_upgrade`` creates or upgrades the schema
    (embedded mode); ``create_empty`` only creates it in an empty database (the server);
    otherwise an old schema is an error that says to run `legato db upgrade`."""

    def __init__(
        self,
        url: str,
        *,
        auto_upgrade: bool = True,
        check: bool = True,
        create_empty: bool = False,
    ) -> None:
        self.url = url
        self._write_lock = threading.Lock()
        self._write_conn: Connection | None = None
        self._update_stmts: dict[tuple[str, frozenset[str], State | None], Any] = {}
        # task run id -> (its wake-up's version, "*"'s, when) when last read unfinished
        self._unended: dict[str, tuple[int, int, float]] = {}
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
                    check_schema(self.engine, auto_upgrade=auto_upgrade, create_empty=create_empty)
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

    def _update_stmt(self, table: Any, columns: frozenset[str], state: State | None = None) -> Any:
        """A prebuilt UPDATE ... WHERE id = :_id for this set of columns (built once); with a
        ``state``, only from the states the transition table allows to change to it."""
        key = (table.name, columns, state)
        stmt = self._update_stmts.get(key)
        if stmt is None:
            where = table.c.id == bindparam("_id")
            if state is not None:
                # Inlined constants (our enum's values): executemany takes no expanding IN.
                legal: list[Any] = [literal_column(f"'{x.value}'") for x in sorted(SOURCES[state])]
                where = and_(where, table.c.state.in_(legal))
            stmt = update(table).where(where).values({c: bindparam(c) for c in sorted(columns)})
            self._update_stmts[key] = stmt
        return stmt

    def _apply(self, conn: Connection, ops: Sequence[Op]) -> None:
        batch = _Batch(self, conn)
        batch.read_states(ops)
        for index, op in enumerate(ops):
            batch.index = index
            handler = _HANDLERS.get(type(op))
            if handler is None:  # pragma: no cover - a new Op type without a handler
                raise TypeError(f"unknown store operation {op!r}")
            handler(batch, op)
        batch.flush()

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

    def _rows(self, conn: Connection, table: str, ids: list[str]) -> Iterator[Any]:
        """(id, state, pool) of the stored runs among ``ids`` (task_runs or flow_runs), read
        in this transaction; on SQLite through the driver (the hot path, as ``_bulk``)."""
        t = s.metadata.tables[table]
        for at in range(0, len(ids), 500):  # within the drivers' limits on parameters
            part = ids[at : at + 500]
            if self.dialect != "sqlite":
                yield from conn.execute(select(t.c.id, t.c.state, t.c.pool).where(t.c.id.in_(part)))
                continue
            marks = ", ".join("?" * len(part))
            sql = f"SELECT id, state, pool FROM {table} WHERE id IN ({marks})"
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                yield from cursor.execute(sql, part).fetchall()
            except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
                raise OperationalError(sql, None, exc) from exc
            finally:
                cursor.close()

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

        for old in allowed_from:  # a compare-and-set may only name legal changes
            check_transition(f"flow run {run_id}", old, state)
        at = now()
        row = rowmap.encode(values or {})
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
                    insert(s.state_history), [rowmap.history(run_id, "flow", state, at, message)]
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
            return rowmap.flow_run(self._resolve_id(conn, s.flow_runs, run_id))

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
            return [rowmap.flow_run(r) for r in conn.execute(q)]

    def get_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        q = (
            select(s.task_runs)
            .where(s.task_runs.c.flow_run_id == flow_run_id)
            .order_by(s.task_runs.c.created_at, s.task_runs.c.id)
        )
        with self._read() as conn:
            return [rowmap.task_run(r) for r in conn.execute(q)]

    def get_task_run(self, task_run_id: str) -> TaskRun:
        with self._read() as conn:
            return rowmap.task_run(self._resolve_id(conn, s.task_runs, task_run_id))

    def get_history(self, run_id: str) -> list[StateChange]:
        q = (
            select(s.state_history)
            .where(s.state_history.c.run_id == run_id)
            .order_by(s.state_history.c.id)
        )
        with self._read() as conn:
            return [rowmap.state_change(r) for r in conn.execute(q)]

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
            return [rowmap.log_entry(r) for r in conn.execute(q)]

    def get_artifacts(self, flow_run_id: str) -> list[Artifact]:
        c = s.artifacts.c
        q = select(s.artifacts).where(c.flow_run_id == flow_run_id).order_by(c.created_at, c.id)
        with self._read() as conn:
            return [rowmap.artifact(r) for r in conn.execute(q)]

    def get_cached(self, key: str, now: float) -> Any | None:
        c = s.cache_entries.c
        q = select(c.result, c.expires_at).where(c.key == key)
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            return None
        return rowmap.loads(row.result)

    # -- questions ----------------------------------------------------------------------

    def get_question(self, question_id: str) -> Question:
        with self._read() as conn:
            return rowmap.question(self._resolve_id(conn, s.questions, question_id))

    def find_question(self, flow_run_id: str, key: str) -> Question | None:
        c = s.questions.c
        q = select(s.questions).where(c.flow_run_id == flow_run_id, c.key == key)
        with self._read() as conn:
            row = conn.execute(q).first()
        return None if row is None else rowmap.question(row)

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
            return [rowmap.question(r) for r in conn.execute(q)]

    def update_question(
        self,
        question_id: str,
        *,
        allowed_from: Sequence[QuestionState],
        state: QuestionState,
        values: dict[str, Any],
    ) -> bool:
        c = s.questions.c
        row = rowmap.encode(values)
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

    def wait_for_task_runs(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        """Wait until each of ``ids`` is final (or PAUSED), or ``timeout``; returns those that
        are. Used by a flow waiting on remote task runs."""
        self._listen()
        deadline = time.monotonic() + timeout
        keys = [f"done:{i}" for i in ids]
        while True:
            seen = self.notifier.versions(keys)
            ended = self._ended_task_runs(self._to_read(ids, seen), seen)
            left = deadline - time.monotonic()
            if ended or left <= 0:
                return ended
            self.notifier.wait(seen, self._wait_cap(left))

    async def wait_for_task_runs_async(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        """``wait_for_task_runs`` for an event loop (the server's long-polls): the reads run
        in a thread of their own, the waits hold none."""
        import asyncio

        await self._listen_async()
        deadline = time.monotonic() + timeout
        keys = [f"done:{i}" for i in ids]
        while True:
            seen = self.notifier.versions(keys)
            ended = await asyncio.to_thread(self._ended_task_runs, self._to_read(ids, seen), seen)
            left = deadline - time.monotonic()
            if ended or left <= 0:
                return ended
            await self.notifier.wait_async(seen, self._wait_cap(left))

    def _to_read(self, ids: Sequence[str], seen: dict[str, int]) -> list[str]:
        """The ids whose state must be read now. Where every end is signalled (PostgreSQL's
        LISTEN, or this process is the only writer), a run read unfinished is read again
        only once its wake-up moved (or every key's, "*", after a reconnect), and at the
        latest after UNENDED_FOR seconds: a flow waiting on thousands of runs reads the few
        that ended, not all of them, on every wake-up."""
        if not (self.dialect == "postgresql" or self.sole_writer):
            return list(ids)
        star, now = seen["*"], time.monotonic()
        known = self._unended
        return [
            i
            for i in ids
            if (mark := known.get(i)) is None
            or mark[0] != seen[f"done:{i}"]
            or mark[1] != star
            or now - mark[2] > UNENDED_FOR
        ]

    def _ended_task_runs(self, ids: Sequence[str], seen: dict[str, int]) -> list[TaskRun]:
        """The task runs among ``ids`` that are final, CRASHED or PAUSED; the others are
        remembered as unended at the versions ``seen`` before the read."""
        if not ids:
            return []
        c = s.task_runs.c
        stops = [st.value for st in _STOPS]
        with self._read() as conn:
            rows = conn.execute(
                select(s.task_runs).where(c.id.in_(list(ids)), c.state.in_(stops))
            ).all()
        ended = [rowmap.task_run(r) for r in rows]
        known = self._unended
        if len(known) > 100_000:  # runs nobody waits for any more
            known.clear()
        star, now = seen["*"], time.monotonic()
        for i in ids:
            known[i] = (seen.get(f"done:{i}", 0), star, now)
        for tr in ended:
            known.pop(tr.id, None)
        return ended

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._write_lock:
            if self._write_conn is not None:
                self._write_conn.close()
                self._write_conn = None
        self.engine.dispose()
