"""HttpStore's part of schedules, triggers and notifications (routes in legato.triggers.routes).

What people manage (schedules, triggers, rules, the outbox listing) goes over HTTP. What only
the server's own background threads do (claiming due schedules, starting triggered runs,
sending the outbox) needs the database: those methods say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn
from urllib.parse import quote

from legato.errors import UsageError
from legato.models import (
    FlowRun,
    Notification,
    NotifyRule,
    Question,
    Schedule,
    StateChange,
    Trigger,
)
from legato.store.wire import decode, encode


def _q(part: str) -> str:
    return quote(part, safe="")


def _server_only(what: str) -> NoReturn:
    raise UsageError(
        f"{what} runs inside the Legato server (or `legato serve`) against the database, "
        "not through its HTTP API"
    )


class HttpTriggers:
    """Mixed into HttpStore: it provides ``_call``."""

    _call: Any

    def replace_schedules(self, deployment: str, schedules: Sequence[Schedule]) -> None:
        self._call(
            "PUT",
            f"/deployments/{_q(deployment)}/schedules",
            json={"schedules": [encode(s) for s in schedules]},
        )

    def list_schedules(self, deployment: str | None = None) -> list[Schedule]:
        params = {"deployment": deployment} if deployment is not None else None
        return decode(list[Schedule], self._call("GET", "/schedules", params=params))

    def set_schedules_paused(self, id_or_deployment: str, paused: bool) -> int:
        verb = "pause" if paused else "resume"
        return int(self._call("POST", f"/schedules/{_q(id_or_deployment)}/{verb}")["count"])

    def scheduled_runs(self, deployment: str) -> list[tuple[float, str]]:
        data = self._call("GET", f"/deployments/{_q(deployment)}/scheduled-runs")
        return [(float(a), str(b)) for a, b in data]

    def put_trigger(self, trigger: Trigger) -> None:
        self._call(
            "PUT",
            f"/triggers/{_q(trigger.name)}",
            json={"trigger": trigger.to_json(secrets=True)},
        )

    def get_trigger(self, name: str) -> Trigger | None:
        data = self._call("GET", f"/triggers/{_q(name)}")["trigger"]
        return None if data is None else decode(Trigger, data)

    def list_triggers(self, kind: str | None = None) -> list[Trigger]:
        params = {"kind": kind} if kind is not None else None
        return decode(list[Trigger], self._call("GET", "/triggers", params=params))

    def delete_trigger(self, name: str) -> bool:
        return bool(self._call("DELETE", f"/triggers/{_q(name)}")["changed"])

    def set_trigger_paused(self, name: str, paused: bool) -> bool:
        verb = "pause" if paused else "resume"
        return bool(self._call("POST", f"/triggers/{_q(name)}/{verb}")["changed"])

    def count_trigger_files(self, trigger: str) -> int:
        return int(self._call("GET", f"/triggers/{_q(trigger)}/files/count")["count"])

    def add_notify_rule(self, rule: NotifyRule) -> None:
        self._call("POST", "/notify-rules", json={"rule": encode(rule)})

    def list_notify_rules(self) -> list[NotifyRule]:
        return decode(list[NotifyRule], self._call("GET", "/notify-rules"))

    def delete_notify_rule(self, rule_id: str) -> bool:
        return bool(self._call("DELETE", f"/notify-rules/{_q(rule_id)}")["changed"])

    def list_notifications(
        self, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Notification]:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = list(states)
        return decode(list[Notification], self._call("GET", "/notifications", params=params))

    # -- the server's own work ------------------------------------------------------------------

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

    def unannounced_questions(self, limit: int = 100) -> list[Question]:
        _server_only("the notifier")
