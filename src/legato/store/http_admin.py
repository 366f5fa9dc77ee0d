"""HttpStore's admin and view role: limits, deployments, pool definitions, statistics,
tokens, schedules, triggers and notifications, each sent through its declared operation.

What only the server's own background threads do (claiming due schedules, starting triggered
runs, sending the outbox) needs the database: those methods say so (``SERVER_ONLY``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from legato.errors import RunNotFound, UsageError
from legato.models import (
    ApiToken,
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
    ShareItem,
    StateChange,
    StorageSummary,
    TaskRun,
    Trigger,
)
from legato.store.operations import OPERATIONS
from legato.store.wire import decode, encode


def _server_only(what: str) -> NoReturn:
    raise UsageError(
        f"{what} runs inside the Legato server (or `legato serve`) against the database, "
        "not through its HTTP API"
    )


class HttpAdmin:
    """Mixed into HttpStore: it provides ``_send``."""

    _send: Any

    def replace_schedules(self, deployment: str, schedules: Sequence[Schedule]) -> None:
        self._send(
            OPERATIONS["replace_schedules"],
            name=deployment,
            json={"schedules": [encode(s) for s in schedules]},
        )

    def list_schedules(self, deployment: str | None = None) -> list[Schedule]:
        params = {"deployment": deployment} if deployment is not None else None
        return decode(list[Schedule], self._send(OPERATIONS["list_schedules"], params=params))

    def set_schedules_paused(self, id_or_deployment: str, paused: bool) -> int:
        op = OPERATIONS["pause_schedules" if paused else "resume_schedules"]
        return int(self._send(op, ref=id_or_deployment)["count"])

    def scheduled_runs(self, deployment: str) -> list[tuple[float, str]]:
        data = self._send(OPERATIONS["scheduled_runs"], name=deployment)
        return [(float(a), str(b)) for a, b in data]

    def put_trigger(self, trigger: Trigger) -> None:
        self._send(
            OPERATIONS["put_trigger"],
            name=trigger.name,
            json={"trigger": trigger.to_json(secrets=True)},
        )

    def get_trigger(self, name: str) -> Trigger | None:
        data = self._send(OPERATIONS["get_trigger"], name=name)["trigger"]
        return None if data is None else decode(Trigger, data)

    def list_triggers(self, kind: str | None = None) -> list[Trigger]:
        params = {"kind": kind} if kind is not None else None
        return decode(list[Trigger], self._send(OPERATIONS["list_triggers"], params=params))

    def delete_trigger(self, name: str) -> bool:
        return bool(self._send(OPERATIONS["delete_trigger"], name=name)["changed"])

    def set_trigger_paused(self, name: str, paused: bool) -> bool:
        op = OPERATIONS["pause_trigger" if paused else "resume_trigger"]
        return bool(self._send(op, name=name)["changed"])

    def count_trigger_files(self, trigger: str) -> int:
        return int(self._send(OPERATIONS["count_trigger_files"], name=trigger)["count"])

    def add_notify_rule(self, rule: NotifyRule) -> None:
        self._send(OPERATIONS["add_rule"], json={"rule": encode(rule)})

    def list_notify_rules(self) -> list[NotifyRule]:
        return decode(list[NotifyRule], self._send(OPERATIONS["list_rules"]))

    def delete_notify_rule(self, rule_id: str) -> bool:
        return bool(self._send(OPERATIONS["delete_rule"], rule_id=rule_id)["changed"])

    def list_notifications(
        self, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Notification]:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = list(states)
        return decode(
            list[Notification], self._send(OPERATIONS["list_notifications"], params=params)
        )

    # -- limits, deployments, pool definitions -------------------------------------------------

    def set_limit(self, name: str, limit: int) -> None:
        self._send(OPERATIONS["set_limit"], name=name, json={"limit": limit})

    def list_limits(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._send(OPERATIONS["list_limits"]).items()}

    def delete_limit(self, name: str) -> bool:
        return bool(self._send(OPERATIONS["delete_limit"], name=name)["changed"])

    def put_deployment(self, dep: Deployment) -> None:
        self._send(OPERATIONS["put_deployment"], name=dep.name, json={"deployment": encode(dep)})

    def get_deployment(self, name: str) -> Deployment | None:
        data = self._send(OPERATIONS["get_deployment"], name=name)
        return None if data["deployment"] is None else decode(Deployment, data["deployment"])

    def list_deployments(self) -> list[Deployment]:
        return decode(list[Deployment], self._send(OPERATIONS["list_deployments"]))

    def start_deployment(
        self, name: str, parameters: dict[str, Any], *, priority: int | None = None
    ) -> FlowRun:
        op = OPERATIONS["start_deployment"]
        body: dict[str, Any] = {"parameters": parameters}
        if priority is not None:
            body["priority"] = priority
        return decode(FlowRun, self._send(op, name=name, json=body))

    def delete_runs(self, run_ids: Sequence[str], *, skip_active: bool = False) -> DeletedRuns:
        """The server deletes the rows and their result files (it holds the storage)."""
        body = {"run_ids": list(run_ids), "skip_active": skip_active}
        return decode(DeletedRuns, self._send(OPERATIONS["delete_runs"], json=body))

    def prunable_runs(
        self, before: float, *, keep_failed: bool = False, limit: int = 200
    ) -> list[str]:
        params = {"before": before, "keep_failed": keep_failed, "limit": limit}
        return [str(i) for i in self._send(OPERATIONS["prunable_runs"], params=params)]

    def count_prunable(self, before: float, *, keep_failed: bool = False) -> int:
        params = {"before": before, "keep_failed": keep_failed}
        return int(self._send(OPERATIONS["count_prunable"], params=params))

    def storage_summary(self) -> StorageSummary:
        return decode(StorageSummary, self._send(OPERATIONS["storage_summary"]))

    def delete_deployment(self, name: str) -> bool:
        return bool(self._send(OPERATIONS["delete_deployment"], name=name)["changed"])

    def put_pool(self, pool: Pool) -> None:
        self._send(OPERATIONS["put_pool"], name=pool.name, json={"pool": encode(pool)})

    def list_pools(self) -> list[Pool]:
        return decode(list[Pool], self._send(OPERATIONS["list_pools"]))

    def delete_pool(self, name: str) -> bool:
        return bool(self._send(OPERATIONS["delete_pool"], name=name)["changed"])

    # -- statistics -------------------------------------------------------------------------------

    def count_runs(self) -> dict[str, dict[str, int]]:
        return decode(dict[str, dict[str, int]], self._send(OPERATIONS["count_runs"]))

    def recent_task_durations(self, limit: int = 2000) -> list[tuple[str, str, float]]:
        data = self._send(OPERATIONS["recent_task_durations"], params={"limit": limit})
        return decode(list[tuple[str, str, float]], data)

    # -- API tokens ----------------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: Role,
        *,
        pools: list[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiToken, str]:
        body = {"name": name, "role": Role(role).value, "pools": pools, "expires_at": expires_at}
        data = self._send(OPERATIONS["create_token"], json=body)
        return decode(ApiToken, data["token"]), str(data["secret"])

    def verify_token(self, secret: str) -> ApiToken | None:
        data = self._send(OPERATIONS["verify_token"], json={"secret": secret})
        return None if data["token"] is None else decode(ApiToken, data["token"])

    def touch_token(self, token_id: str) -> None:
        self._send(OPERATIONS["touch_token"], token_id=token_id)

    def list_tokens(self) -> list[ApiToken]:
        return decode(list[ApiToken], self._send(OPERATIONS["list_tokens"]))

    def revoke_token(self, id_or_name: str) -> bool:
        return bool(self._send(OPERATIONS["revoke_token"], id_or_name=id_or_name)["changed"])

    # -- the audit log --------------------------------------------------------------------------

    def list_audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        given = {"action": action, "actor": actor, "target": target, "since": since}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        params["limit"] = limit
        return decode(list[AuditEvent], self._send(OPERATIONS["list_audit"], params=params))

    def record_audit(self, event: AuditEvent) -> None:
        # A client must not write who did what: the server records its own routes' actions.
        _server_only("the audit log")

    # -- share links ----------------------------------------------------------------------------

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
        # created_by is not sent: the server names the token that asked.
        share, secret, _url = self.create_share_link(
            flow_run_id, items, expires_at=expires_at, note=note, password=password
        )
        return share, secret

    def create_share_link(
        self,
        flow_run_id: str,
        items: Sequence[ShareItem],
        *,
        expires_at: float | None,
        note: str | None = None,
        password: str | None = None,
    ) -> tuple[Share, str, str]:
        """``create_share`` with the link as the server spells it (LEGATO_PUBLIC_URL)."""
        body = {
            "flow_run_id": flow_run_id,
            "items": [item.to_json() for item in items],
            "expires_at": expires_at,
            "note": note,
            "password": password,
        }
        data = self._send(OPERATIONS["create_share"], json=body)
        return decode(Share, data["share"]), str(data["secret"]), str(data["url"])

    def list_shares(self, flow_run_id: str | None = None, *, limit: int = 1000) -> list[Share]:
        params: dict[str, Any] = {"limit": limit}
        if flow_run_id is not None:
            params["flow_run_id"] = flow_run_id
        return decode(list[Share], self._send(OPERATIONS["list_shares"], params=params))

    def get_share(self, share_id: str) -> Share | None:
        try:
            return decode(Share, self._send(OPERATIONS["get_share"], share_id=share_id))
        except RunNotFound:
            return None

    def revoke_share(self, share_id: str) -> bool:
        return bool(self._send(OPERATIONS["revoke_share"], share_id=share_id)["changed"])

    def list_share_accesses(self, share_id: str, *, limit: int = 100) -> list[ShareAccess]:
        data = self._send(
            OPERATIONS["list_share_accesses"], share_id=share_id, params={"limit": limit}
        )
        return decode(list[ShareAccess], data)

    def open_share(self, secret: str) -> tuple[Share, str | None] | None:
        _server_only("a share link")

    def record_share_access(self, access: ShareAccess) -> None:
        _server_only("a share link")

    # -- the server's own work ------------------------------------------------------------------

    def create_session(self, token_id: str, expires_at: float) -> str:
        _server_only("the dashboard")

    def live_session(self, session_id: str) -> tuple[ApiToken, float] | None:
        _server_only("the dashboard")

    def revoke_session(self, session_id: str) -> bool:
        _server_only("the dashboard")

    def due_schedules(self, now: float) -> list[Schedule]:
        _server_only("the scheduler")

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next_at: float | None,
        next_at: float,
        last_at: float | None,
    ) -> bool:
        _server_only("the scheduler")

    def start_scheduled_run(
        self, run: FlowRun, schedule_id: str, scheduled_at: float, message: str | None = None
    ) -> bool:
        _server_only("the scheduler")

    def known_files(self, trigger: str, paths: Sequence[str]) -> set[tuple[str, int, float]]:
        _server_only("the file watcher")

    def start_file_run(
        self,
        run: FlowRun,
        trigger: str,
        files: Sequence[tuple[str, int, float]],
        message: str | None = None,
    ) -> bool:
        _server_only("the file watcher")

    def start_webhook_run(
        self, run: FlowRun, hook: str, delivery: str, message: str | None = None
    ) -> bool:
        _server_only("a webhook")

    def forget_webhook_deliveries(self, before: float) -> int:
        _server_only("a webhook")

    def enqueue_notification(self, n: Notification) -> bool:
        _server_only("the notifier")

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        _server_only("the notifier")

    def claim_notification(self, notification_id: str, expected_at: float, until: float) -> bool:
        _server_only("the notifier")

    def update_notification(self, notification_id: str, values: dict[str, Any]) -> None:
        _server_only("the notifier")

    def get_cursor(self, name: str) -> int | None:
        _server_only("the notifier")

    def set_cursor(self, name: str, position: int) -> None:
        _server_only("the notifier")

    def last_history_id(self) -> int:
        _server_only("the notifier")

    def flow_events_after(self, position: int, limit: int = 500) -> list[tuple[int, StateChange]]:
        _server_only("the notifier")

    def due_question_timeouts(self, now: float, limit: int = 500) -> list[Question]:
        _server_only("the scheduler")

    def late_flow_runs(self, queued_before: float, limit: int = 500) -> list[FlowRun]:
        _server_only("the notifier")

    def running_task_runs(self, limit: int = 1000) -> list[TaskRun]:
        _server_only("the notifier")

    def task_durations(self, task: str, limit: int = 100) -> list[float]:
        _server_only("the notifier")

    def unannounced_questions(
        self, limit: int = 100, *, named_only: bool = False
    ) -> list[Question]:
        _server_only("the notifier")
