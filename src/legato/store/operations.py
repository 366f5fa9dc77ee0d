"""Every store operation that travels over HTTP, declared once: its name, HTTP method, path
(under ``/api/v1``), the role a token needs, the request body's wire model, the answer's
type, and which role of the store it belongs to.

HttpStore sends each request through its operation here (``HttpStore._send``), so it cannot
use a method or path this table does not declare; the server's routes are checked against
this table by ``tests/server/test_operations.py`` (same method, path, role, body model,
answer type and status code, and no store route left out), so the two cannot drift apart.
A few operations only the server's own threads perform (the scheduler, the file watcher,
the notifier) have no route: HttpStore says so when asked (``SERVER_ONLY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

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
    Role,
    Schedule,
    Share,
    ShareAccess,
    StateChange,
    StorageSummary,
    TaskRun,
    Waiting,
    Worker,
)
from legato.rerun import Rerun
from legato.store import wire as w
from legato.store.ops import LogEntry

API = "/api/v1"
VERSION_HEADER = "X-Legato-Version"  # what a client says it is; server/app.VersionCheck
StoreRole = Literal["run", "queue", "admin"]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str  # under API; {name} marks a path segment
    role: Role  # what a token needs
    store: StoreRole  # which store role the operation belongs to
    body: type[Any] | None = None  # the request body's wire model
    answer: Any = None  # the answer's type (None: no body)
    status: int = 200
    tag: str = ""

    def url(self, **segments: str) -> str:
        """The path under API with each segment escaped (ids and names may hold any
        character)."""
        return self.path.format(**{k: quote(v, safe="") for k, v in segments.items()})


V, O, R, A = Role.VIEWER, Role.OPERATOR, Role.RUNNER, Role.ADMIN  # noqa: E741

_ALL = [
    # -- run store: what the engine records and reads ----------------------------------------
    Operation("apply_ops", "POST", "/ops", R, "run", w.OpsIn, None, 204, "runs"),
    Operation("list_flow_runs", "GET", "/flow-runs", V, "run", None, list[FlowRun], tag="runs"),
    Operation("get_flow_run", "GET", "/flow-runs/{run_id}", V, "run", None, FlowRun, tag="runs"),
    Operation(
        "transition_flow_run",
        "POST",
        "/flow-runs/{run_id}/transition",
        O,
        "run",
        w.TransitionIn,
        w.Changed,
        tag="runs",
    ),
    Operation(
        "get_task_runs",
        "GET",
        "/flow-runs/{run_id}/task-runs",
        V,
        "run",
        None,
        list[TaskRun],
        tag="runs",
    ),
    Operation(
        "get_logs", "GET", "/flow-runs/{run_id}/logs", V, "run", None, list[LogEntry], tag="runs"
    ),
    Operation(
        "get_artifacts",
        "GET",
        "/flow-runs/{run_id}/artifacts",
        V,
        "run",
        None,
        list[Artifact],
        tag="runs",
    ),
    Operation(
        "get_history",
        "GET",
        "/runs/{run_id}/history",
        V,
        "run",
        None,
        list[StateChange],
        tag="runs",
    ),
    Operation(
        "get_task_run", "GET", "/task-runs/{task_run_id}", V, "run", None, TaskRun, tag="runs"
    ),
    Operation(
        "wait_for_task_runs",
        "POST",
        "/task-runs/wait",
        V,
        "run",
        w.WaitTaskRunsIn,
        list[TaskRun],
        tag="runs",
    ),
    Operation("get_cached", "GET", "/cache", V, "run", None, w.Cached, tag="runs"),
    Operation(
        "list_questions", "GET", "/questions", V, "run", None, list[Question], tag="questions"
    ),
    Operation(
        "get_question",
        "GET",
        "/questions/{question_id}",
        V,
        "run",
        None,
        Question,
        tag="questions",
    ),
    Operation(
        "find_question",
        "GET",
        "/flow-runs/{run_id}/question",
        V,
        "run",
        None,
        w.FoundQuestion,
        tag="questions",
    ),
    Operation(
        "update_question",
        "POST",
        "/questions/{question_id}/update",
        R,
        "run",
        w.QuestionUpdateIn,
        w.Changed,
        tag="questions",
    ),
    Operation(
        "answer",
        "POST",
        "/questions/{question_id}/answer",
        O,
        "run",
        w.AnswerIn,
        Question,
        tag="questions",
    ),
    # -- queue store: what workers do ----------------------------------------------------------
    Operation(
        "claim_task_runs", "POST", "/claims", R, "queue", w.ClaimIn, list[TaskRun], tag="queues"
    ),
    Operation(
        "finish_task_run",
        "POST",
        "/task-runs/{task_run_id}/finish",
        R,
        "queue",
        w.FinishIn,
        w.Changed,
        tag="queues",
    ),
    Operation(
        "finish_task_runs",
        "POST",
        "/task-runs/finish",
        R,
        "queue",
        w.FinishManyIn,
        w.ChangedMany,
        tag="queues",
    ),
    Operation(
        "requeue_expired",
        "POST",
        "/task-runs/requeue-expired",
        R,
        "queue",
        w.RequeueIn,
        list[TaskRun],
        tag="queues",
    ),
    Operation(
        "queue_depths", "GET", "/queues/depths", V, "queue", None, dict[str, int], tag="queues"
    ),
    Operation("waiting", "GET", "/queues/waiting", V, "queue", None, list[Waiting], tag="queues"),
    Operation(
        "queue_versions",
        "GET",
        "/queues/versions",
        V,
        "queue",
        None,
        dict[str, int],
        tag="queues",
    ),
    Operation(
        "next_queued_at", "GET", "/queues/{pool}/next", V, "queue", None, w.NextAt, tag="queues"
    ),
    Operation(
        "wait_for_queue",
        "POST",
        "/queues/wait",
        R,
        "queue",
        w.WaitQueueIn,
        w.Woke,
        tag="queues",
    ),
    Operation("list_workers", "GET", "/workers", V, "queue", None, list[Worker], tag="workers"),
    Operation("register_worker", "POST", "/workers", R, "queue", w.WorkerIn, None, 204, "workers"),
    Operation(
        "set_worker_state",
        "PUT",
        "/workers/{worker_id}/state",
        R,
        "queue",
        w.WorkerStateIn,
        None,
        204,
        "workers",
    ),
    Operation(
        "heartbeat",
        "POST",
        "/workers/{worker_id}/heartbeat",
        R,
        "queue",
        w.HeartbeatIn,
        w.Lost,
        tag="workers",
    ),
    Operation(
        "claim_flow_runs",
        "POST",
        "/flow-claims",
        R,
        "queue",
        w.FlowClaimIn,
        list[FlowRun],
        tag="queues",
    ),
    Operation(
        "queue_flow_run",
        "POST",
        "/flow-runs/{run_id}/queue",
        O,
        "queue",
        w.QueueFlowRunIn,
        w.Changed,
        tag="queues",
    ),
    Operation(
        "delete_runs",
        "POST",
        "/retention/delete",
        A,
        "admin",
        w.DeleteRunsIn,
        DeletedRuns,
        tag="retention",
    ),
    Operation(
        "prunable_runs",
        "GET",
        "/retention/prunable",
        A,
        "admin",
        None,
        list[str],
        tag="retention",
    ),
    Operation(
        "count_prunable",
        "GET",
        "/retention/prunable-count",
        A,
        "admin",
        None,
        int,
        tag="retention",
    ),
    Operation(
        "storage_summary",
        "GET",
        "/retention/storage",
        A,
        "admin",
        None,
        StorageSummary,
        tag="retention",
    ),
    Operation(
        "rerun_calls",
        "POST",
        "/flow-runs/rerun",
        O,
        "queue",
        w.RerunIn,
        Rerun,
        tag="queues",
    ),
    Operation(
        "requeue_expired_flow_runs",
        "POST",
        "/flow-runs/requeue-expired",
        R,
        "queue",
        w.RequeueIn,
        w.Ids,
        tag="queues",
    ),
    Operation("get_pool", "GET", "/pools/{name}", V, "queue", None, w.FoundPool, tag="pools"),
    Operation(
        "set_engine_job",
        "POST",
        "/task-runs/{task_run_id}/engine-job",
        R,
        "queue",
        w.EngineJobIn,
        w.Changed,
        tag="queues",
    ),
    # -- admin store: what people and the server manage ----------------------------------------
    Operation("list_limits", "GET", "/limits", V, "admin", None, dict[str, int], tag="limits"),
    Operation("set_limit", "PUT", "/limits/{name}", A, "admin", w.LimitIn, None, 204, "limits"),
    Operation(
        "delete_limit", "DELETE", "/limits/{name}", A, "admin", None, w.Changed, tag="limits"
    ),
    Operation(
        "list_deployments",
        "GET",
        "/deployments",
        V,
        "admin",
        None,
        list[Deployment],
        tag="deployments",
    ),
    Operation(
        "get_deployment",
        "GET",
        "/deployments/{name}",
        V,
        "admin",
        None,
        w.FoundDeployment,
        tag="deployments",
    ),
    Operation(
        "put_deployment",
        "PUT",
        "/deployments/{name}",
        R,
        "admin",
        w.DeploymentIn,
        None,
        204,
        "deployments",
    ),
    Operation(
        "delete_deployment",
        "DELETE",
        "/deployments/{name}",
        R,
        "admin",
        None,
        w.Changed,
        tag="deployments",
    ),
    # Operators start only what a runner or admin registered: the run is built from the
    # deployment (its code, pool, tags, version), never from the request.
    Operation(
        "start_deployment",
        "POST",
        "/deployments/{name}/runs",
        O,
        "admin",
        w.StartDeploymentIn,
        FlowRun,
        201,
        "deployments",
    ),
    Operation("list_pools", "GET", "/pools", V, "admin", None, list[Pool], tag="pools"),
    Operation("put_pool", "PUT", "/pools/{name}", A, "admin", w.PoolIn, None, 204, "pools"),
    Operation("delete_pool", "DELETE", "/pools/{name}", A, "admin", None, w.Changed, tag="pools"),
    Operation(
        "count_runs",
        "GET",
        "/stats/runs",
        V,
        "admin",
        None,
        dict[str, dict[str, int]],
        tag="server",
    ),
    Operation(
        "recent_task_durations",
        "GET",
        "/stats/task-durations",
        V,
        "admin",
        None,
        list[tuple[str, str, float]],
        tag="server",
    ),
    Operation("list_tokens", "GET", "/tokens", A, "admin", None, list[ApiToken], tag="tokens"),
    Operation(
        "create_token",
        "POST",
        "/tokens",
        A,
        "admin",
        w.TokenCreateIn,
        w.NewToken,
        201,
        "tokens",
    ),
    Operation(
        "revoke_token",
        "DELETE",
        "/tokens/{id_or_name}",
        A,
        "admin",
        None,
        w.Changed,
        tag="tokens",
    ),
    Operation(
        "verify_token",
        "POST",
        "/tokens/verify",
        A,
        "admin",
        w.TokenVerifyIn,
        w.TokenOrNone,
        tag="tokens",
    ),
    Operation(
        "touch_token", "POST", "/tokens/{token_id}/touch", A, "admin", None, None, 204, "tokens"
    ),
    Operation(
        "list_schedules",
        "GET",
        "/schedules",
        V,
        "admin",
        None,
        list[Schedule],
        tag="schedules",
    ),
    Operation(
        "replace_schedules",
        "PUT",
        "/deployments/{name}/schedules",
        R,
        "admin",
        w.SchedulesIn,
        None,
        204,
        "schedules",
    ),
    Operation(
        "pause_schedules",
        "POST",
        "/schedules/{ref}/pause",
        R,
        "admin",
        None,
        w.Count,
        tag="schedules",
    ),
    Operation(
        "resume_schedules",
        "POST",
        "/schedules/{ref}/resume",
        R,
        "admin",
        None,
        w.Count,
        tag="schedules",
    ),
    Operation(
        "scheduled_runs",
        "GET",
        "/deployments/{name}/scheduled-runs",
        V,
        "admin",
        None,
        list[tuple[float, str]],
        tag="schedules",
    ),
    Operation(
        "list_triggers",
        "GET",
        "/triggers",
        V,
        "admin",
        None,
        list[dict[str, Any]],
        tag="triggers",
    ),
    Operation(
        "get_trigger",
        "GET",
        "/triggers/{name}",
        V,
        "admin",
        None,
        w.FoundTrigger,
        tag="triggers",
    ),
    Operation(
        "put_trigger",
        "PUT",
        "/triggers/{name}",
        A,
        "admin",
        w.TriggerIn,
        None,
        204,
        "triggers",
    ),
    Operation(
        "delete_trigger",
        "DELETE",
        "/triggers/{name}",
        A,
        "admin",
        None,
        w.Changed,
        tag="triggers",
    ),
    Operation(
        "pause_trigger",
        "POST",
        "/triggers/{name}/pause",
        A,
        "admin",
        None,
        w.Changed,
        tag="triggers",
    ),
    Operation(
        "resume_trigger",
        "POST",
        "/triggers/{name}/resume",
        A,
        "admin",
        None,
        w.Changed,
        tag="triggers",
    ),
    Operation(
        "count_trigger_files",
        "GET",
        "/triggers/{name}/files/count",
        V,
        "admin",
        None,
        w.Count,
        tag="triggers",
    ),
    Operation(
        "list_rules",
        "GET",
        "/notify-rules",
        V,
        "admin",
        None,
        list[NotifyRule],
        tag="notifications",
    ),
    Operation(
        "add_rule", "POST", "/notify-rules", A, "admin", w.RuleIn, None, 204, "notifications"
    ),
    Operation(
        "delete_rule",
        "DELETE",
        "/notify-rules/{rule_id}",
        A,
        "admin",
        None,
        w.Changed,
        tag="notifications",
    ),
    Operation(
        "list_notifications",
        "GET",
        "/notifications",
        V,
        "admin",
        None,
        list[Notification],
        tag="notifications",
    ),
    # Share links (legato.sharing): the link pages themselves are /s/{token}, not the API.
    Operation("list_shares", "GET", "/shares", O, "admin", None, list[Share], tag="shares"),
    Operation("create_share", "POST", "/shares", O, "admin", w.ShareIn, w.NewShare, 201, "shares"),
    Operation("get_share", "GET", "/shares/{share_id}", O, "admin", None, Share, tag="shares"),
    Operation(
        "revoke_share", "DELETE", "/shares/{share_id}", O, "admin", None, w.Changed, tag="shares"
    ),
    Operation(
        "list_share_accesses",
        "GET",
        "/shares/{share_id}/accesses",
        O,
        "admin",
        None,
        list[ShareAccess],
        tag="shares",
    ),
    # Read only: rows are written by the server itself (record_audit is SERVER_ONLY).
    Operation("list_audit", "GET", "/audit", A, "admin", None, list[AuditEvent], tag="audit"),
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in _ALL}
assert len(OPERATIONS) == len(_ALL), "two operations share a name"

# Store methods no HTTP route serves: only the server's own threads call them, on its
# database (HttpStore raises UsageError saying so).
SERVER_ONLY = frozenset(
    {
        "due_schedules",
        "advance_schedule",
        "start_scheduled_run",
        "known_files",
        "start_file_run",
        "start_webhook_run",
        "forget_webhook_deliveries",
        "enqueue_notification",
        "due_notifications",
        "claim_notification",
        "update_notification",
        "get_cursor",
        "set_cursor",
        "last_history_id",
        "flow_events_after",
        "unannounced_questions",
        "running_task_runs",
        "due_question_timeouts",
        "late_flow_runs",
        "task_durations",
        "record_audit",
        "create_session",
        "live_session",
        "revoke_session",
        "open_share",
        "record_share_access",
    }
)
