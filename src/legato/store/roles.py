"""The store's interfaces, one per role. Every backend (SqlStore, HttpStore) offers them all.

- ``RunStore``: what the engine records and reads back while it runs a flow: runs, states,
  results, logs, artifacts, questions, the cache.
- ``QueueStore``: what a worker needs: claim a batch, heartbeat, finish, hand back, requeue
  expired leases, wait for work, register itself, and the pool definition it serves.
- ``AdminStore``: what people and the server manage and look at: concurrency limits,
  deployments, pool definitions, tokens, dashboard sessions, schedules, triggers,
  notifications, statistics, the audit log, share links.

``AsyncWaits`` is not a role: the long-polls of a store that can wait on an event loop
without holding a thread (SqlStore); the server serves waits through it where it can.

``RunStore`` and ``QueueStore`` share ``Writes``: a worker also records its runs' logs and
marks the flow runs it holds. ``Store`` is every role together (the CLI and the server).
Each operation's HTTP route and wire model are declared once, in ``operations.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from legato.models import (
    ApiToken,
    Artifact,
    AuditEvent,
    DeletedRuns,
    Deployment,
    FlowRun,
    Notification,
    NotifyRule,
    Pool,
    Question,
    QuestionState,
    Role,
    Schedule,
    Share,
    ShareAccess,
    ShareItem,
    State,
    StateChange,
    StorageSummary,
    TaskRun,
    Trigger,
    Waiting,
    Worker,
)
from legato.rerun import Rerun
from legato.store.ops import Finish, LogEntry, Op


class Connected(Protocol):
    """An open store: where it is, and how to let it go."""

    url: str

    def close(self) -> None:
        """Release connections."""


class Writes(Connected, Protocol):
    """Batches of operations and compare-and-set of a flow run's state."""

    def apply(self, ops: Sequence[Op], *, request_id: str | None = None) -> None:
        """Commit every operation in one transaction, in order. A ``request_id`` makes the
        batch idempotent: sent again with the same id, it is not applied twice."""

    def transition_flow_run(
        self,
        run_id: str,
        state: State,
        *,
        allowed_from: Sequence[State],
        values: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> bool:
        """Compare-and-set: move the run to ``state`` only if it is in ``allowed_from``."""


class RunStore(Writes, Protocol):
    """What the engine records and reads while it runs a flow (embedded or remote)."""

    def get_flow_run(self, run_id: str) -> FlowRun:
        """The flow run with this id (or a unique id prefix); RunNotFound if none."""

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
        """Flow runs, newest first; ``top_level`` leaves out child flow runs."""

    def get_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """Every task run of a flow run, in creation order."""

    def get_task_run(self, task_run_id: str) -> TaskRun:
        """One task run; RunNotFound if none."""

    def get_history(self, run_id: str) -> list[StateChange]:
        """Every state change of one run (flow or task), oldest first."""

    def get_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        after_id: int = 0,
        min_level: int = 0,
        limit: int = 1000,
    ) -> list[LogEntry]:
        """Log records of a run after ``after_id``, oldest first."""

    def get_artifacts(self, flow_run_id: str) -> list[Artifact]:
        """Artifacts attached to a flow run or its task runs, oldest first."""

    def get_cached(self, key: str, now: float) -> Any | None:
        """The stored result for a cache key that has not expired, else None."""

    def get_question(self, question_id: str) -> Question:
        """One question by id; RunNotFound if none."""

    def find_question(self, flow_run_id: str, key: str) -> Question | None:
        """The question a flow run asked at a call key, if any."""

    def list_questions(
        self,
        *,
        states: Sequence[QuestionState] | None = None,
        flow_run_id: str | None = None,
        limit: int = 100,
    ) -> list[Question]:
        """Questions, oldest first."""

    def update_question(
        self,
        question_id: str,
        *,
        allowed_from: Sequence[QuestionState],
        state: QuestionState,
        values: dict[str, Any],
    ) -> bool:
        """Compare-and-set a question's state and fields (answer, answered_by, answered_at,
        error); False if it was not in ``allowed_from``."""

    def wait_for_task_runs(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        """Block until task runs among ``ids`` end (or pause); return those that did."""


class QueueStore(Writes, Protocol):
    """What a worker needs: claims with leases and fencing, heartbeats, outcomes, wake-ups."""

    def claim_task_runs(
        self,
        pool: str,
        worker: str,
        free: dict[str, float],
        *,
        limit: int = 1,
        lease_seconds: float = 30.0,
    ) -> list[TaskRun]:
        """Claim up to ``limit`` queued task runs of ``pool`` whose resources fit ``free``:
        RUNNING, attempts + 1 (the fencing token), leased to ``worker``."""

    def claim_flow_runs(
        self, pool: str, worker: str, *, limit: int = 1, lease_seconds: float = 30.0
    ) -> list[FlowRun]:
        """Claim flow runs queued for ``pool`` (deployment runs, answered paused runs)."""

    def heartbeat(
        self, worker_id: str, held: dict[str, int], lease_seconds: float, used: dict[str, float]
    ) -> list[str]:
        """Renew the leases of ``held`` (task run id -> attempt); return the ids lost."""

    def finish_task_run(
        self,
        task_run_id: str,
        attempt: int,
        state: State,
        values: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        """Record a claimed attempt's outcome; False if that attempt no longer holds the run."""

    def finish_task_runs(self, finishes: Sequence[Finish]) -> list[bool]:
        """Many outcomes in one transaction (one request); one answer for each."""

    def rerun_calls(
        self, task_run_ids: Sequence[str], *, by: str, pool: str | None = None
    ) -> Rerun:
        """A forced rerun of the chosen calls and their downstream (``legato.rerun``); the
        top-level run is reopened, and queued for ``pool`` when given."""

    def queue_flow_run(self, run_id: str, pool: str, *, allowed_from: Sequence[State]) -> bool:
        """Queue an existing flow run for ``pool`` (compare-and-set on its state)."""

    def requeue_expired(self, now: float | None = None) -> list[TaskRun]:
        """CRASHED for every expired lease, and queued again while attempts remain."""

    def requeue_expired_flow_runs(self, now: float | None = None) -> list[str]:
        """Flow runs whose lease expired: CRASHED, then queued again; returns their ids."""

    def queue_versions(self, pools: Sequence[str]) -> dict[str, int]:
        """Wake-up counters to pass to ``wait_for_queue`` (read before looking for work)."""

    def wait_for_queue(self, seen: dict[str, int], timeout: float) -> bool:
        """Block until work may have been queued in the pools of ``seen``, or timeout."""

    def next_queued_at(self, pool: str) -> float | None:
        """When the earliest queued task run of ``pool`` becomes claimable, if any."""

    def register_worker(self, worker: Worker) -> None:
        """Record a worker that just started."""

    def set_worker_state(self, worker_id: str, state: str) -> None:
        """online | draining | offline."""

    def list_workers(
        self, pool: str | None = None, *, include_offline: bool = False
    ) -> list[Worker]:
        """Workers by pool and name."""

    def queue_depths(self) -> dict[str, int]:
        """Queued task runs per pool."""

    def waiting(self, per_pool: int = 5) -> list[Waiting]:
        """Per pool, the flow runs waiting there, in the order claims serve them."""

    def get_pool(self, name: str) -> Pool | None:
        """A pool's definition; None for a pool nobody defined (served by process workers)."""

    def set_engine_job(self, task_run_id: str, attempt: int, job_id: str) -> bool:
        """Record the engine job id (Slurm job, Dask key, Job name) of a claimed attempt;
        False if that attempt no longer holds the run."""


class AdminStore(Connected, Protocol):
    """What people and the server's own services manage and look at."""

    # -- concurrency limits, deployments, pool definitions -----------------------------------

    def set_limit(self, name: str, limit: int) -> None:
        """At most ``limit`` task runs RUNNING at once for ``tag:X``, ``pool:X`` or ``flow:X``."""

    def list_limits(self) -> dict[str, int]:
        """Every concurrency limit."""

    def delete_limit(self, name: str) -> bool:
        """Remove a limit; False if there was none."""

    def put_deployment(self, dep: Deployment) -> None:
        """Create or replace a deployment."""

    def get_deployment(self, name: str) -> Deployment | None:
        """A deployment by name."""

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, by name."""

    def delete_deployment(self, name: str) -> bool:
        """Remove a deployment; False if there was none."""

    def delete_runs(self, run_ids: Sequence[str], *, skip_active: bool = False) -> DeletedRuns:
        """Delete stopped top-level runs with everything under them (retention)."""

    def prunable_runs(
        self, before: float, *, keep_failed: bool = False, limit: int = 200
    ) -> list[str]:
        """Top-level runs that stopped before ``before``, oldest first."""

    def count_prunable(self, before: float, *, keep_failed: bool = False) -> int:
        """How many top-level runs a prune before ``before`` would remove."""

    def storage_summary(self) -> StorageSummary:
        """Rows per table, top-level runs, the oldest, the database's size."""

    def start_deployment(
        self, name: str, parameters: dict[str, Any], *, priority: int | None = None
    ) -> FlowRun:
        """Queue a run of the deployment for its pool, its parameters checked against the
        deployment's schema; nothing is imported. ``priority`` overrides the deployment's."""

    def put_pool(self, pool: Pool) -> None:
        """Create or replace a pool definition (process, slurm, dask, kubernetes)."""

    def list_pools(self) -> list[Pool]:
        """Every defined pool, by name."""

    def delete_pool(self, name: str) -> bool:
        """Remove a pool definition; False if there was none."""

    # -- what /metrics shows (stats.py) ------------------------------------------------------

    def count_runs(self) -> dict[str, dict[str, int]]:
        """Flow runs and task runs per state: ``{"flow": {...}, "task": {...}}``."""

    def recent_task_durations(self, limit: int = 2000) -> list[tuple[str, str, float]]:
        """(task, state, seconds) of the task runs that ended among the newest ``limit``."""

    # -- API tokens (tokens.py) --------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: Role,
        *,
        pools: list[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (the secret is not stored); ``pools`` limits where it
        may work, ``expires_at`` when it stops working."""

    def verify_token(self, secret: str) -> ApiToken | None:
        """The live token with this secret."""

    def touch_token(self, token_id: str) -> None:
        """Record that a token was used now."""

    def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too."""

    def revoke_token(self, id_or_name: str) -> bool:
        """Revoke by id, id prefix or name; False if none matched."""

    # -- dashboard sessions (sessions.py; the server's own, no HTTP route) -------------------

    def create_session(self, token_id: str, expires_at: float) -> str:
        """A new dashboard session for a token; returns its random id."""

    def live_session(self, session_id: str) -> tuple[ApiToken, float] | None:
        """(token, expiry) of a live session: unexpired, not revoked, its token live."""

    def revoke_session(self, session_id: str) -> bool:
        """End a session (logout); False if it was not live."""

    # -- schedules, triggers, notifications (triggers.py) ------------------------------------

    def replace_schedules(self, deployment: str, schedules: Sequence[Schedule]) -> None:
        """Make ``schedules`` the deployment's only schedules."""

    def list_schedules(self, deployment: str | None = None) -> list[Schedule]:
        """Schedules, by deployment."""

    def due_schedules(self, now: float) -> list[Schedule]:
        """Schedules not paused whose next time has come."""

    def set_schedules_paused(self, id_or_deployment: str, paused: bool) -> int:
        """Pause or resume schedules by id, id prefix or deployment; how many changed."""

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next_at: float | None,
        next_at: float,
        last_at: float | None,
    ) -> bool:
        """Compare-and-set a schedule's next time."""

    def start_scheduled_run(
        self, run: FlowRun, schedule_id: str, scheduled_at: float, message: str | None = None
    ) -> bool:
        """Insert the run and its (deployment, scheduled time) key atomically; False if taken."""

    def scheduled_runs(self, deployment: str) -> list[tuple[float, str]]:
        """(scheduled time, flow run id) of the runs schedules started, oldest first."""

    def put_trigger(self, trigger: Trigger) -> None:
        """Create or replace a trigger by name."""

    def get_trigger(self, name: str) -> Trigger | None:
        """A trigger by name."""

    def list_triggers(self, kind: str | None = None) -> list[Trigger]:
        """Triggers (of one kind: files, webhook), by name."""

    def delete_trigger(self, name: str) -> bool:
        """Remove a trigger; False if there was none."""

    def set_trigger_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume a trigger; False if there is none."""

    def known_files(self, trigger: str, paths: Sequence[str]) -> set[tuple[str, int, float]]:
        """Which (path, size, mtime) among ``paths`` already started a run of ``trigger``."""

    def start_file_run(
        self,
        run: FlowRun,
        trigger: str,
        files: Sequence[tuple[str, int, float]],
        message: str | None = None,
    ) -> bool:
        """Insert the run and its files' keys atomically; False if a file already started one."""

    def count_trigger_files(self, trigger: str) -> int:
        """How many files started runs of ``trigger``."""

    def start_webhook_run(
        self, run: FlowRun, hook: str, delivery: str, message: str | None = None
    ) -> bool:
        """Insert the run and the delivery key atomically; False for a replayed delivery."""

    def forget_webhook_deliveries(self, before: float) -> int:
        """Drop delivery keys received before ``before``."""

    def add_notify_rule(self, rule: NotifyRule) -> None:
        """Add a notification rule."""

    def list_notify_rules(self) -> list[NotifyRule]:
        """Every notification rule, oldest first."""

    def delete_notify_rule(self, rule_id: str) -> bool:
        """Remove a rule by id or unique prefix; False if none matched."""

    def enqueue_notification(self, n: Notification) -> bool:
        """Add a message to the outbox; False if its ``dedup_key`` is there already."""

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        """Pending messages whose next attempt has come."""

    def claim_notification(self, notification_id: str, expected_at: float, until: float) -> bool:
        """Take a due message for sending (compare-and-set); False if another took it."""

    def update_notification(self, notification_id: str, values: dict[str, Any]) -> None:
        """Set a message's state, attempts, next_attempt_at, last_error, sent_at, payload."""

    def list_notifications(
        self, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Notification]:
        """Messages, newest first."""

    def get_cursor(self, name: str) -> int | None:
        """A background reader's position."""

    def set_cursor(self, name: str, position: int) -> None:
        """Move a cursor forward (never back)."""

    def last_history_id(self) -> int:
        """The newest state history row id (0 if none)."""

    def flow_events_after(self, position: int, limit: int = 500) -> list[tuple[int, StateChange]]:
        """Flow run state changes after history row ``position``, oldest first."""

    def due_question_timeouts(self, now: float, limit: int = 500) -> list[Question]:
        """Pending questions whose timeout has passed, the earliest first."""

    def late_flow_runs(self, queued_before: float, limit: int = 500) -> list[FlowRun]:
        """Flow runs still queued for workers since before ``queued_before``, oldest first."""

    def running_task_runs(self, limit: int = 1000) -> list[TaskRun]:
        """Task runs RUNNING now, longest running first."""

    def task_durations(self, task: str, limit: int = 100) -> list[float]:
        """Seconds the task's latest COMPLETED runs took."""

    def unannounced_questions(
        self, limit: int = 100, *, named_only: bool = False
    ) -> list[Question]:
        """Pending questions with no ``question:ID`` message in the outbox (with
        ``named_only``: only those whose ask() named channels)."""

    # -- the audit log (audit.py) ------------------------------------------------------------

    def record_audit(self, event: AuditEvent) -> None:
        """Add an event to the audit log (the server and the embedded CLI only: no route)."""

    def list_audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Audit events, newest first; ``action`` ending in a dot is a prefix."""

    # -- share links (shares.py) -------------------------------------------------------------

    def create_share(
        self,
        flow_run_id: str,
        items: Sequence[ShareItem],
        *,
        expires_at: float,
        created_by: str,
        note: str | None = None,
        password: str | None = None,
    ) -> tuple[Share, str]:
        """A new share link and its secret (the secret is not stored, a password only
        hashed). Which items a server will serve is ``legato.sharing``'s to check."""

    def list_shares(self, flow_run_id: str | None = None, *, limit: int = 1000) -> list[Share]:
        """Shares, newest first, revoked and expired ones too; of one run if given."""

    def get_share(self, share_id: str) -> Share | None:
        """The share with this id."""

    def revoke_share(self, share_id: str) -> bool:
        """Revoke a live share by id or id prefix; False if none matched."""

    def open_share(self, secret: str) -> tuple[Share, str | None] | None:
        """The share of a link's secret and its password hash (the server only: no route)."""

    def record_share_access(self, access: ShareAccess) -> None:
        """Add a row to a share's access log (the server only: no route)."""

    def list_share_accesses(self, share_id: str, *, limit: int = 100) -> list[ShareAccess]:
        """A share's accesses, newest first."""


class Store(RunStore, QueueStore, AdminStore, Protocol):
    """Every role together: what the CLI and the server use."""


@runtime_checkable
class AsyncWaits(Protocol):
    """``wait_for_queue`` and ``wait_for_task_runs`` as coroutines that hold no thread."""

    async def wait_for_queue_async(self, seen: dict[str, int], timeout: float) -> bool:
        """``QueueStore.wait_for_queue``, awaited."""

    async def wait_for_task_runs_async(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        """``RunStore.wait_for_task_runs``, awaited."""
