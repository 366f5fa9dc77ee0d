"""The SQL of schedules, triggers and notifications.

Exactly once, without locks held in memory: a run started by a schedule, a file or a webhook
is inserted in the same transaction as a row whose primary key names what started it
(deployment + scheduled time, trigger + path + size + mtime, hook + delivery). A second
scheduler, a restarted one or a replayed request collides with that key, its transaction
rolls back, and nothing is started twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, delete, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from legato.errors import UsageError
from legato.models import (
    FlowRun,
    Notification,
    NotifyRule,
    Question,
    Schedule,
    State,
    StateChange,
    TaskRun,
    Trigger,
)
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.ops import InsertFlowRun

FileKey = tuple[str, int, float]  # path, size, mtime


class TriggerSql:
    """Mixed into SqlStore: it provides ``_write``, ``_read`` and ``_apply``."""

    _write: Any
    _read: Any
    _apply: Any

    # -- schedules --------------------------------------------------------------------------

    def replace_schedules(self, deployment: str, schedules: Sequence[Schedule]) -> None:
        """Make ``schedules`` the deployment's only schedules (none: it has no schedule)."""
        with self._write() as conn:
            conn.execute(delete(s.schedules).where(s.schedules.c.deployment == deployment))
            if schedules:
                conn.execute(insert(s.schedules), [rowmap.schedule_row(x) for x in schedules])

    def list_schedules(self, deployment: str | None = None) -> list[Schedule]:
        c = s.schedules.c
        q = select(s.schedules).order_by(c.deployment, c.created_at, c.id)
        if deployment is not None:
            q = q.where(c.deployment == deployment)
        with self._read() as conn:
            return [rowmap.schedule(r) for r in conn.execute(q)]

    def due_schedules(self, now: float) -> list[Schedule]:
        """Schedules not paused whose next time has come (or was never set)."""
        c = s.schedules.c
        q = (
            select(s.schedules)
            .where(c.paused.is_(False), or_(c.next_at.is_(None), c.next_at <= now))
            .order_by(c.next_at)
        )
        with self._read() as conn:
            return [rowmap.schedule(r) for r in conn.execute(q)]

    def set_schedules_paused(self, id_or_deployment: str, paused: bool) -> int:
        """Pause or resume a schedule (by id or id prefix) or every schedule of a deployment;
        returns how many changed. Resuming sets ``next_at`` to null: the scheduler then
        starts from now instead of catching up the paused time."""
        c = s.schedules.c
        values: dict[str, Any] = {"paused": paused, "updated_at": time.time()}
        if not paused:
            values["next_at"] = None
        match = or_(c.deployment == id_or_deployment, c.id == id_or_deployment)
        if len(id_or_deployment) >= 4:
            match = or_(match, c.id.startswith(id_or_deployment, autoescape=True))
        with self._write() as conn:
            return int(
                conn.execute(
                    update(s.schedules).where(match, c.paused.is_(not paused)).values(values)
                ).rowcount
            )

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next_at: float | None,
        next_at: float,
        last_at: float | None,
    ) -> bool:
        """Compare-and-set a schedule's next time (another scheduler may have moved it)."""
        c = s.schedules.c
        cond = c.next_at.is_(None) if expected_next_at is None else c.next_at == expected_next_at
        values: dict[str, Any] = {"next_at": next_at, "updated_at": time.time()}
        if last_at is not None:
            values["last_at"] = last_at
        with self._write() as conn:
            done = conn.execute(
                update(s.schedules).where(c.id == schedule_id, cond).values(values)
            ).rowcount
        return bool(done)

    def start_scheduled_run(
        self, run: FlowRun, schedule_id: str, scheduled_at: float, message: str | None = None
    ) -> bool:
        """Insert ``run`` and its (deployment, scheduled time) key in one transaction; False
        (nothing inserted) if that time already started a run."""
        key = {
            "deployment": run.deployment or "",
            "scheduled_at": scheduled_at,
            "schedule_id": schedule_id,
            "flow_run_id": run.id,
            "created_at": run.created_at,
        }
        return self._insert_with(run, s.scheduled_runs, [key], message)

    def scheduled_runs(self, deployment: str) -> list[tuple[float, str]]:
        """(scheduled time, flow run id) of every run a schedule started, oldest first."""
        c = s.scheduled_runs.c
        q = (
            select(c.scheduled_at, c.flow_run_id)
            .where(c.deployment == deployment)
            .order_by(c.scheduled_at)
        )
        with self._read() as conn:
            return [(r.scheduled_at, r.flow_run_id) for r in conn.execute(q)]

    def _insert_with(
        self, run: FlowRun, table: Any, keys: list[dict[str, Any]], message: str | None
    ) -> bool:
        try:
            with self._write() as conn:
                conn.execute(insert(table), keys)
                self._apply(conn, [InsertFlowRun(run, message=message)])
        except IntegrityError:
            return False
        return True

    # -- triggers (files, webhooks) ---------------------------------------------------------

    def put_trigger(self, trigger: Trigger) -> None:
        """Create or replace a trigger by name."""
        row = {
            "name": trigger.name,
            "kind": trigger.kind,
            "deployment": trigger.deployment,
            "config": json.dumps(trigger.config),
            "paused": trigger.paused,
            "created_at": trigger.created_at,
            "updated_at": trigger.updated_at,
        }
        c = s.triggers.c
        with self._write() as conn:
            old = conn.execute(select(c.created_at).where(c.name == trigger.name)).first()
            if old is None:
                conn.execute(insert(s.triggers), [row])
            else:
                row["created_at"] = old.created_at
                conn.execute(update(s.triggers).where(c.name == trigger.name).values(row))

    def get_trigger(self, name: str) -> Trigger | None:
        with self._read() as conn:
            row = conn.execute(select(s.triggers).where(s.triggers.c.name == name)).first()
        return None if row is None else rowmap.trigger(row)

    def list_triggers(self, kind: str | None = None) -> list[Trigger]:
        c = s.triggers.c
        q = select(s.triggers).order_by(c.name)
        if kind is not None:
            q = q.where(c.kind == kind)
        with self._read() as conn:
            return [rowmap.trigger(r) for r in conn.execute(q)]

    def delete_trigger(self, name: str) -> bool:
        """Remove a trigger (what it recorded about files stays, so re-adding it does not
        start the same files again)."""
        with self._write() as conn:
            return bool(conn.execute(delete(s.triggers).where(s.triggers.c.name == name)).rowcount)

    def set_trigger_paused(self, name: str, paused: bool) -> bool:
        c = s.triggers.c
        with self._write() as conn:
            return bool(
                conn.execute(
                    update(s.triggers)
                    .where(c.name == name)
                    .values(paused=paused, updated_at=time.time())
                ).rowcount
            )

    def known_files(self, trigger: str, paths: Sequence[str]) -> set[FileKey]:
        """Which (path, size, mtime) among ``paths`` already started a run of ``trigger``."""
        c = s.trigger_files.c
        found: set[FileKey] = set()
        with self._read() as conn:
            for i in range(0, len(paths), 500):
                chunk = list(paths[i : i + 500])
                q = select(c.path, c.size, c.mtime).where(c.trigger == trigger, c.path.in_(chunk))
                found.update((r.path, int(r.size), float(r.mtime)) for r in conn.execute(q))
        return found

    def start_file_run(
        self, run: FlowRun, trigger: str, files: Sequence[FileKey], message: str | None = None
    ) -> bool:
        """Insert ``run`` and a row per file in one transaction; False (nothing inserted) if
        any of the files already started a run."""
        keys = [
            {
                "trigger": trigger,
                "path": path,
                "size": size,
                "mtime": mtime,
                "flow_run_id": run.id,
                "created_at": run.created_at,
            }
            for path, size, mtime in files
        ]
        return self._insert_with(run, s.trigger_files, keys, message)

    def count_trigger_files(self, trigger: str) -> int:
        from sqlalchemy import func

        c = s.trigger_files.c
        with self._read() as conn:
            return int(conn.execute(select(func.count()).where(c.trigger == trigger)).scalar_one())

    def start_webhook_run(
        self, run: FlowRun, hook: str, delivery: str, message: str | None = None
    ) -> bool:
        """Insert ``run`` and the delivery's key in one transaction; False for a replay."""
        key = {
            "hook": hook,
            "delivery": delivery,
            "received_at": run.created_at,
            "flow_run_id": run.id,
        }
        return self._insert_with(run, s.webhook_deliveries, [key], message)

    def forget_webhook_deliveries(self, before: float) -> int:
        """Drop delivery keys older than ``before`` (their timestamps are refused anyway)."""
        c = s.webhook_deliveries.c
        with self._write() as conn:
            return int(
                conn.execute(delete(s.webhook_deliveries).where(c.received_at < before)).rowcount
            )

    # -- notification rules and the outbox ---------------------------------------------------

    def add_notify_rule(self, rule: NotifyRule) -> None:
        with self._write() as conn:
            conn.execute(
                insert(s.notify_rules),
                [
                    {
                        "id": rule.id,
                        "events": json.dumps(rule.events),
                        "channel": rule.channel,
                        "flow": rule.flow,
                        "created_at": rule.created_at,
                    }
                ],
            )

    def list_notify_rules(self) -> list[NotifyRule]:
        c = s.notify_rules.c
        with self._read() as conn:
            rows = conn.execute(select(s.notify_rules).order_by(c.created_at, c.id))
            return [rowmap.rule(r) for r in rows]

    def delete_notify_rule(self, rule_id: str) -> bool:
        """Remove a rule by id or unique id prefix; False if none matched."""
        c = s.notify_rules.c
        with self._write() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    select(c.id).where(or_(c.id == rule_id, c.id.startswith(rule_id)))
                )
            ]
            if len(ids) > 1:
                raise UsageError(f"{rule_id!r} matches {len(ids)} rules: give more characters")
            if not ids:
                return False
            conn.execute(delete(s.notify_rules).where(c.id == ids[0]))
        return True

    def enqueue_notification(self, n: Notification) -> bool:
        """Add a message to the outbox; False if one with its ``dedup_key`` is there."""
        row = n.to_json()
        row["payload"] = json.dumps(n.payload)
        try:
            with self._write() as conn:
                conn.execute(insert(s.notifications), [row])
        except IntegrityError:
            return False
        return True

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        c = s.notifications.c
        q = (
            select(s.notifications)
            .where(c.state == "pending", c.next_attempt_at <= now)
            .order_by(c.next_attempt_at, c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.notification(r) for r in conn.execute(q)]

    def claim_notification(self, notification_id: str, expected_at: float, until: float) -> bool:
        """Take a due message for sending (compare-and-set on its next attempt time), so two
        servers never send the same one; it becomes due again at ``until`` if not finished."""
        c = s.notifications.c
        with self._write() as conn:
            done = conn.execute(
                update(s.notifications)
                .where(
                    c.id == notification_id,
                    c.state == "pending",
                    c.next_attempt_at == expected_at,
                )
                .values(next_attempt_at=until)
            ).rowcount
        return bool(done)

    def update_notification(self, notification_id: str, values: dict[str, Any]) -> None:
        """Set outbox columns: state, attempts, next_attempt_at, last_error, sent_at, payload."""
        row = dict(values)
        if "payload" in row:
            row["payload"] = json.dumps(row["payload"])
        with self._write() as conn:
            conn.execute(
                update(s.notifications).where(s.notifications.c.id == notification_id).values(row)
            )

    def list_notifications(
        self, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Notification]:
        """Messages, newest first (``failed`` ones are what the dashboard shows in red)."""
        c = s.notifications.c
        q = select(s.notifications).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        if states:
            q = q.where(c.state.in_(list(states)))
        with self._read() as conn:
            return [rowmap.notification(r) for r in conn.execute(q)]

    # -- what the notifier reads: the history after a cursor, unannounced questions ----------

    def get_cursor(self, name: str) -> int | None:
        with self._read() as conn:
            row = conn.execute(select(s.cursors.c.position).where(s.cursors.c.name == name)).first()
        return None if row is None else int(row.position)

    def set_cursor(self, name: str, position: int) -> None:
        """Move a cursor forward (never back: another process may be ahead)."""
        c = s.cursors.c
        now = time.time()
        for _ in range(2):
            try:
                with self._write() as conn:
                    done = conn.execute(
                        update(s.cursors)
                        .where(c.name == name, c.position < position)
                        .values(position=position, updated_at=now)
                    ).rowcount
                    if (
                        not done
                        and conn.execute(select(c.name).where(c.name == name)).first() is None
                    ):
                        conn.execute(
                            insert(s.cursors),
                            [{"name": name, "position": position, "updated_at": now}],
                        )
                return
            except IntegrityError:
                continue  # another process inserted it meanwhile: update it

    def last_history_id(self) -> int:
        from sqlalchemy import func

        with self._read() as conn:
            return int(conn.execute(select(func.max(s.state_history.c.id))).scalar() or 0)

    def flow_events_after(self, position: int, limit: int = 500) -> list[tuple[int, StateChange]]:
        """Flow run state changes after history row ``position``, oldest first."""
        c = s.state_history.c
        q = (
            select(s.state_history)
            .where(c.id > position, c.kind == "flow")
            .order_by(c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [
                (r.id, StateChange(r.run_id, r.kind, State(r.state), r.at, r.message))
                for r in conn.execute(q)
            ]

    def due_question_timeouts(self, now: float, limit: int = 500) -> list[Question]:
        """Pending questions whose timeout has passed, the earliest first."""
        c = s.questions.c
        q = (
            select(s.questions)
            .where(c.state == "pending", c.timeout_at.is_not(None), c.timeout_at <= now)
            .order_by(c.timeout_at, c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.question(r) for r in conn.execute(q)]

    def late_flow_runs(self, queued_before: float, limit: int = 500) -> list[FlowRun]:
        """Flow runs still queued for workers since before ``queued_before``, oldest first
        (a claim moves a run to RUNNING and clears ``queued_at``)."""
        c = s.flow_runs.c
        q = (
            select(s.flow_runs)
            .where(
                c.state == State.PENDING.value,
                c.queued_at.is_not(None),
                c.queued_at < queued_before,
            )
            .order_by(c.queued_at, c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.flow_run(r) for r in conn.execute(q)]

    def running_task_runs(self, limit: int = 1000) -> list[TaskRun]:
        """Task runs RUNNING now, longest running first (the long-run alert)."""
        c = s.task_runs.c
        q = (
            select(s.task_runs)
            .where(c.state == State.RUNNING.value, c.started_at.is_not(None))
            .order_by(c.started_at)
            .limit(limit)
        )
        with self._read() as conn:
            return [rowmap.task_run(r) for r in conn.execute(q)]

    def task_durations(self, task: str, limit: int = 100) -> list[float]:
        """How long the task's latest COMPLETED runs took, in seconds (newest first)."""
        c = s.task_runs.c
        q = (
            select(c.ended_at - c.started_at)
            .where(
                c.task == task,
                c.state == State.COMPLETED.value,
                c.started_at.is_not(None),
                c.ended_at.is_not(None),
            )
            .order_by(c.ended_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [float(d) for (d,) in conn.execute(q)]

    def unannounced_questions(
        self, limit: int = 100, *, named_only: bool = False
    ) -> list[Question]:
        """Pending questions with no ``question:ID`` message in the outbox yet; with
        ``named_only``, only those whose ask() named channels (``notify``)."""
        q_ = s.questions.c
        n = s.notifications.c
        key = literal("question:", String) + q_.id
        q = (
            select(s.questions)
            .outerjoin(s.notifications, n.dedup_key == key)
            .where(q_.state == "pending", n.id.is_(None))
            .order_by(q_.created_at, q_.id)
            .limit(limit)
        )
        if named_only:  # no channel is configured: only questions that named their own
            q = q.where(q_.notify.is_not(None), q_.notify != "[]")
        with self._read() as conn:
            return [rowmap.question(r) for r in conn.execute(q)]
