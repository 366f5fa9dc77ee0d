"""The shared vocabulary: run states, their legal transitions, and run records."""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal


class State(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    AWAITING_RETRY = "AWAITING_RETRY"
    COMPLETED = "COMPLETED"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_success(self) -> bool:
        return self in (State.COMPLETED, State.CACHED)


FINAL_STATES = frozenset({State.COMPLETED, State.CACHED, State.FAILED, State.CANCELLED})
# Stopped for now: final, or crashed (nothing runs it until someone resumes it).
STOPPED_STATES = FINAL_STATES | {State.CRASHED}
# The stopped runs a person may carry on by queueing them for their pool's workers (the
# dashboard, Slack, the CLI and the API's queue route): retried, or resumed.
RETRY_FROM = (State.FAILED, State.CANCELLED, State.CRASHED)
RESUME_FROM = (State.PAUSED, State.CRASHED)
SUCCESS_STATES = frozenset({State.COMPLETED, State.CACHED})

# Which state may follow which; the store refuses any other change (IllegalTransition).
# CRASHED is not final: a crashed run is retried or resumed. FAILED and CANCELLED may go back
# to PENDING/SCHEDULED through an explicit retry. PENDING -> PENDING is a call being queued
# for its pool; CANCELLED -> CANCELLED is a run's own process acknowledging a cancellation
# that `legato runs cancel` already recorded. COMPLETED and CACHED are for good.
_S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    _S.SCHEDULED: frozenset({_S.PENDING, _S.RUNNING, _S.CANCELLED, _S.FAILED, _S.CACHED}),
    _S.PENDING: frozenset(
        {
            _S.PENDING,
            _S.RUNNING,
            _S.CANCELLED,
            _S.FAILED,
            _S.CACHED,
            _S.COMPLETED,
            _S.CRASHED,
            _S.PAUSED,
        }
    ),
    _S.RUNNING: frozenset(
        {
            _S.COMPLETED,
            _S.FAILED,
            _S.CRASHED,
            _S.CANCELLED,
            _S.AWAITING_RETRY,
            _S.PAUSED,
            _S.PENDING,
            _S.RUNNING,
        }
    ),
    _S.PAUSED: frozenset({_S.PENDING, _S.RUNNING, _S.FAILED, _S.CANCELLED, _S.CRASHED}),
    _S.AWAITING_RETRY: frozenset({_S.RUNNING, _S.PENDING, _S.CANCELLED, _S.FAILED, _S.CRASHED}),
    _S.CRASHED: frozenset({_S.PENDING, _S.RUNNING, _S.FAILED, _S.CANCELLED, _S.AWAITING_RETRY}),
    _S.FAILED: frozenset({_S.PENDING, _S.RUNNING, _S.SCHEDULED}),
    _S.CANCELLED: frozenset({_S.PENDING, _S.RUNNING, _S.SCHEDULED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.CACHED: frozenset(),
}


CREATED_AS = frozenset({_S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.CACHED, _S.COMPLETED, _S.FAILED})
# For each state, the states a run may come to it from (what a guarded UPDATE checks).
SOURCES: dict[State, frozenset[State]] = {
    new: frozenset(old for old, targets in TRANSITIONS.items() if new in targets) for new in State
}


# Priorities: higher is claimed first. A task run's is its flow run's plus its task's own,
# held to this range.
PRIORITY_MIN, PRIORITY_MAX = -100, 100


def check_priority(value: object, what: str) -> int:
    """``value`` as a priority, or UsageError naming ``what`` (a task, a flow, an option)."""
    from legato.errors import UsageError

    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what}: priority must be a whole number, got {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise UsageError(
            f"{what}: priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {value}"
        )
    return value


def clamp_priority(value: int) -> int:
    """A sum of priorities, held to the range."""
    return max(PRIORITY_MIN, min(PRIORITY_MAX, value))


def can_transition(old: State | None, new: State) -> bool:
    """True when ``old -> new`` is legal (``None`` is a run being created)."""
    if old is None:
        return new in CREATED_AS
    return new in TRANSITIONS[old]


def check_transition(what: str, old: State | None, new: State) -> None:
    """Raise IllegalTransition, naming ``what`` (e.g. "task run ID") and both states, unless
    ``old -> new`` is legal."""
    if not can_transition(old, new):
        from legato.errors import IllegalTransition

        was = "a new run" if old is None else old.value
        raise IllegalTransition(f"{what}: {was} -> {new.value} is not a legal state change")


def now() -> float:
    """Wall-clock time as epoch seconds (UTC). Every timestamp Legato stores is one of these."""
    return time.time()


def new_id() -> str:
    """A time-ordered unique id (UUIDv7 layout): sorts by creation time, indexes stay local."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class FlowRun:
    id: str
    flow: str
    state: State
    parameters: dict[str, Any] = field(default_factory=dict)
    parent_task_run_id: str | None = None
    pool: str | None = None
    tags: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    source: str | None = None
    owner: str | None = None
    deployment: str | None = None
    version: str | None = None
    worker: str | None = None
    attempts: int = 0
    queued_at: float | None = None
    lease_expires_at: float | None = None
    priority: int = 0  # claimed before lower ones; its task runs' priorities add to it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": self.flow,
            "state": self.state.value,
            "parameters": self.parameters,
            "parent_task_run_id": self.parent_task_run_id,
            "pool": self.pool,
            "tags": self.tags,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "source": self.source,
            "owner": self.owner,
            "deployment": self.deployment,
            "version": self.version,
            "worker": self.worker,
            "attempts": self.attempts,
            "queued_at": self.queued_at,
            "lease_expires_at": self.lease_expires_at,
            "priority": self.priority,
        }


@dataclass
class TaskRun:
    id: str
    flow_run_id: str
    task: str
    key: str
    state: State
    attempts: int = 0
    pool: str | None = None
    worker: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    cache_key: str | None = None
    result: Any = None
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    child_flow_run_id: str | None = None
    queued_at: float | None = None
    lease_expires_at: float | None = None
    max_attempts: int = 1
    payload: Any = None
    engine_job_id: str | None = None  # Slurm job id, Dask key or Job name of the attempt
    # Replay: the call's input fingerprint, a hash per argument (named by position or
    # keyword), and when a resume found its inputs changed (the record is then never reused).
    fingerprint: str | None = None
    input_hashes: dict[str, str] | None = None
    superseded_at: float | None = None
    rerun_by: str | None = None  # superseded by a forced rerun this person asked for
    priority: int = 0  # its flow run's plus its task's: claimed before lower ones
    root_id: str | None = None  # its top-level flow run's id: a pool shares out by it
    expected_duration: float | None = None  # seconds; longer is the `long` alert

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow_run_id": self.flow_run_id,
            "task": self.task,
            "key": self.key,
            "state": self.state.value,
            "attempts": self.attempts,
            "pool": self.pool,
            "worker": self.worker,
            "resources": self.resources,
            "tags": self.tags,
            "depends_on": self.depends_on,
            "cache_key": self.cache_key,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "child_flow_run_id": self.child_flow_run_id,
            "queued_at": self.queued_at,
            "lease_expires_at": self.lease_expires_at,
            "max_attempts": self.max_attempts,
            "payload": self.payload,
            "engine_job_id": self.engine_job_id,
            "fingerprint": self.fingerprint,
            "input_hashes": self.input_hashes,
            "superseded_at": self.superseded_at,
            "rerun_by": self.rerun_by,
            "priority": self.priority,
            "root_id": self.root_id,
            "expected_duration": self.expected_duration,
        }


@dataclass
class StateChange:
    """One row of the history table: the timeline and the audit."""

    run_id: str
    kind: str  # "flow" | "task"
    state: State
    at: float
    message: str | None = None


@dataclass
class LogRecord:
    flow_run_id: str
    task_run_id: str | None
    at: float
    level: int
    logger: str
    message: str


@dataclass
class Artifact:
    id: str
    flow_run_id: str
    task_run_id: str | None
    kind: str  # markdown | table | image | link
    data: Any
    title: str | None = None
    created_at: float = 0.0


class QuestionState(enum.StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    EXPIRED = "expired"


@dataclass
class Question:
    """A question ``ask()`` put to a person, and its answer (who, when, what)."""

    id: str
    flow_run_id: str
    key: str
    prompt: str
    schema: dict[str, Any]
    state: QuestionState = QuestionState.PENDING
    default: Any = None  # {"v": value} when the question has a default
    answer: Any = None
    answered_by: str | None = None
    answered_at: float | None = None
    error: str | None = None
    created_at: float = 0.0
    timeout_at: float | None = None
    # Channels told besides the configured Slack channel (ask(notify=...)): slack:#qc,
    # email:someone@lab.org, webhook:https://...
    notify: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow_run_id": self.flow_run_id,
            "key": self.key,
            "prompt": self.prompt,
            "schema": self.schema,
            "state": self.state.value,
            "default": self.default,
            "answer": self.answer,
            "answered_by": self.answered_by,
            "answered_at": self.answered_at,
            "error": self.error,
            "created_at": self.created_at,
            "timeout_at": self.timeout_at,
            "notify": self.notify,
        }


class WorkerState(enum.StrEnum):
    ONLINE = "online"  # claiming work
    DRAINING = "draining"  # stopping: no new claims, running work finishes or is handed back
    OFFLINE = "offline"  # stopped, or gone without a word (its leases expire)


@dataclass
class Worker:
    """A process serving one pool: its capacity, what it uses, when it was last heard of."""

    id: str
    name: str
    pool: str
    capacity: dict[str, float]
    used: dict[str, float] = field(default_factory=dict)
    state: WorkerState = WorkerState.ONLINE
    host: str | None = None
    pid: int | None = None
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    version: str | None = None
    token_id: str | None = None  # the token that registered it (set by the server)

    def __post_init__(self) -> None:
        self.state = WorkerState(self.state)  # as read back from a row or the wire

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "pool": self.pool,
            "capacity": self.capacity,
            "used": self.used,
            "state": self.state,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "last_heartbeat": self.last_heartbeat,
            "version": self.version,
            "token_id": self.token_id,
        }


class Role(enum.StrEnum):
    """What a token may do, each role including the ones before it: a viewer reads; an
    operator (a person in the loop) also answers, starts registered deployments, cancels,
    retries and resumes; a runner (flow processes, workers, whoever registers code) also
    records runs, claims and finishes work; an admin also manages tokens, triggers, rules,
    pools and limits. Runner sits above operator because a runner token runs code on its
    pools' workers, which can do anything an operator can."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    RUNNER = "runner"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.RUNNER, Role.ADMIN)
        return order.index(self) >= order.index(needed)


@dataclass
class ApiToken:
    """An API token's record; the secret itself is never stored, only its SHA-256."""

    id: str
    name: str
    role: Role
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None
    pools: list[str] | None = None  # the only pools it may work for; None: every pool
    expires_at: float | None = None  # it stops working then; None: never

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "pools": self.pools,
            "expires_at": self.expires_at,
        }

    def live(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def may_use_pool(self, pool: str | None) -> bool:
        """Whether work in ``pool`` is within this token's scope (admins: every pool)."""
        return self.role is Role.ADMIN or self.pools is None or (pool or "") in self.pools


@dataclass
class Deployment:
    """A flow registered to run on a pool's workers: ``legato run NAME`` starts it."""

    name: str
    flow: str
    source: str
    pool: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    version: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    # The flow's parameters as a JSON schema, recorded at deploy: the server checks a run's
    # parameters against it and never imports the flow. None: deployed before it was kept.
    parameter_schema: dict[str, Any] | None = None
    priority: int = 0  # its runs' priority

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flow": self.flow,
            "source": self.source,
            "pool": self.pool,
            "parameters": self.parameters,
            "tags": self.tags,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parameter_schema": self.parameter_schema,
            "priority": self.priority,
        }


# -- schedules, triggers, notifications (legato.triggers, legato.notify) ---------------------

CATCHUP_POLICIES = ("skip", "latest", "all")


@dataclass
class Schedule:
    """When a deployment starts by itself: a cron expression in a time zone, or every
    ``every`` seconds. ``next_at`` is the next scheduled time not yet started; ``catchup`` says
    what happens to times missed while no scheduler ran (skip, latest, all)."""

    id: str
    deployment: str
    cron: str | None = None
    timezone: str = "UTC"
    every: float | None = None
    catchup: str = "skip"
    paused: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    next_at: float | None = None
    last_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every:g} s"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "cron": self.cron,
            "timezone": self.timezone,
            "every": self.every,
            "catchup": self.catchup,
            "paused": self.paused,
            "parameters": self.parameters,
            "next_at": self.next_at,
            "last_at": self.last_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class Trigger:
    """Something outside that starts a deployment: ``kind`` is ``files`` (new files matching
    a glob) or ``webhook`` (``POST /api/v1/hooks/NAME``); ``config`` holds its settings."""

    name: str
    kind: str
    deployment: str
    config: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self, *, secrets: bool = False) -> dict[str, Any]:
        config = dict(self.config)
        if not secrets and config.get("secret"):
            config["secret"] = "***"
        return {
            "name": self.name,
            "kind": self.kind,
            "deployment": self.deployment,
            "config": config,
            "paused": self.paused,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class NotifyRule:
    """Send ``events`` (flow run states such as failed, crashed, paused) of ``flow`` (any flow
    when None) to ``channel`` (``slack:#lab``, ``email:a@lab.org``, ``webhook:https://...``)."""

    id: str
    events: list[str]
    channel: str
    flow: str | None = None
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "events": self.events,
            "channel": self.channel,
            "flow": self.flow,
            "created_at": self.created_at,
        }


@dataclass
class Notification:
    """One message to send (the outbox): retried with backoff until ``sent`` or ``failed``."""

    id: str
    channel: str
    event: str
    dedup_key: str
    payload: dict[str, Any] = field(default_factory=dict)
    rule_id: str | None = None
    flow_run_id: str | None = None
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    created_at: float = 0.0
    sent_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "event": self.event,
            "dedup_key": self.dedup_key,
            "payload": self.payload,
            "rule_id": self.rule_id,
            "flow_run_id": self.flow_run_id,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "sent_at": self.sent_at,
        }


@dataclass
class Waiting:
    """A flow run with task runs queued in a pool (`legato pools ls`: who is waiting)."""

    pool: str
    flow_run_id: str
    flow: str
    priority: int  # the highest of its queued task runs
    queued: int
    running: int  # its task runs RUNNING in the pool now
    since: float  # when its oldest queued task run was queued
    kind: str = "task"  # "flow": the flow run itself waits for a worker (a deployment's run)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pool": self.pool,
            "flow_run_id": self.flow_run_id,
            "flow": self.flow,
            "priority": self.priority,
            "queued": self.queued,
            "running": self.running,
            "since": self.since,
        }


@dataclass
class DeletedRuns:
    """What deleting runs removed; ``refs``: the result files their rows named (for the
    holder of the result storage to remove), ``kept_cached``: results of cached calls kept."""

    runs: int = 0
    child_runs: int = 0
    task_runs: int = 0
    logs: int = 0
    artifacts: int = 0
    kept_cached: int = 0
    refs: list[str] = field(default_factory=list)
    files_removed: int = 0

    def add(self, other: DeletedRuns) -> None:
        for name in ("runs", "child_runs", "task_runs", "logs", "artifacts", "kept_cached"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.files_removed += other.files_removed


@dataclass
class StorageSummary:
    """What the store holds: rows per table, top-level runs, the oldest, bytes on disk."""

    rows: dict[str, int] = field(default_factory=dict)
    top_level_runs: int = 0
    oldest_run_at: float | None = None
    database_bytes: int | None = None
    result_files: int | None = None  # in the result storage, when this process can see it
    result_bytes: int | None = None


def human_bytes(n: int) -> str:
    """``n`` bytes for people: 512 B, 3.4 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class PoolType(enum.StrEnum):
    PROCESS = "process"  # Legato's own workers
    SLURM = "slurm"
    DASK = "dask"
    KUBERNETES = "kubernetes"


POOL_TYPES = tuple(t.value for t in PoolType)


@dataclass
class Pool:
    """A pool's definition: served by Legato's own workers (``process``) or by an engine that
    already runs there (``slurm``, ``dask``, ``kubernetes``) through a bridge process."""

    name: str
    type: PoolType = PoolType.PROCESS
    options: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0

    def __post_init__(self) -> None:
        if self.type in POOL_TYPES:  # an unknown type is refused, naming it, by check_pool
            self.type = PoolType(self.type)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "options": self.options,
            "created_at": self.created_at,
        }


@dataclass
class AuditEvent:
    """One line of the audit log: ``actor`` (a token's name, ``local:USER`` for the CLI on
    the database itself, ``slack:NAME``) with ``role`` did ``action`` (``run.cancel``,
    ``token.create``...) to ``target`` (a run id, a token id, a name). ``detail`` is small
    JSON and never holds a secret. ``id`` is given by the store."""

    actor: str
    role: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


@dataclass
class ShareItem:
    """One thing a share link gives: ``artifacts`` (the run's artifacts, rendered),
    ``results`` (the files of its stored results), or ``path`` (a file or a prefix, under one
    of the roots the server serves from: ``path`` is its URL or absolute folder)."""

    kind: Literal["artifacts", "results", "path"]
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}


@dataclass
class Share:
    """A link that lets someone without an account read what a run's owner chose to give
    (``legato.sharing``). The link's secret is never stored, only its SHA-256, and a password
    only as a scrypt hash; ``has_password`` says whether one is asked."""

    id: str
    flow_run_id: str
    items: list[ShareItem]
    created_at: float
    expires_at: float
    created_by: str
    note: str | None = None
    revoked_at: float | None = None
    has_password: bool = False

    def live(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow_run_id": self.flow_run_id,
            "items": [item.to_json() for item in self.items],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "created_by": self.created_by,
            "note": self.note,
            "revoked_at": self.revoked_at,
            "has_password": self.has_password,
        }


@dataclass
class ShareAccess:
    """One use of a share link: the page opened, a file (or part of one) or the zip sent.
    ``item`` names what (``page``, ``zip``, ``results/NAME``, ``files/N/PATH``), ``bytes`` how
    much of it went out, ``status`` the HTTP status answered."""

    share_id: str
    at: float
    client: str
    item: str
    bytes: int
    status: int
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "share_id": self.share_id,
            "at": self.at,
            "client": self.client,
            "item": self.item,
            "bytes": self.bytes,
            "status": self.status,
        }
