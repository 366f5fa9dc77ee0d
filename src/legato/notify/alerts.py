"""Alerts that come from the clock, not from a state change: reminders of questions still
waiting, runs queued too long without starting (``late``), task runs running longer than
they should (``long``). Collected into the outbox by the notifier on each pass, each at most
once (a dedup key per question and span, per rule and run), so a restart or a second server
sends nothing twice.

- A **reminder** goes to the channels the question was posted to (``LEGATO_SLACK_CHANNEL``
  and its ``ask(notify=...)``) after ``LEGATO_REMIND_AFTER_HOURS`` (default 24), and again
  after each such span.
- A run is **late** when it has been queued for workers ``LEGATO_LATE_AFTER_MINUTES``
  (default 15) without starting: a scheduled run whose pool has no worker, a deployment
  started while its workers are down.
- A task run is **long** once it has run past its ``@task(expected_duration=...)``, or, for
  a task without one that completed at least ``P95_SAMPLES`` times, past the 95th percentile
  of its latest 100 completed runs.

``late`` and ``long`` go to the notification rules that name them (`legato notify add --on
late,long slack:#lab-alerts`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from legato.models import Notification, NotifyRule, QuestionState, TaskRun, new_id
from legato.settings import Settings

log = logging.getLogger("legato.notify")
P95_SAMPLES = 20  # completed runs of a task before its p95 is trusted
SEEN_MAX = 100_000
LOOKED_AT = 500  # questions, queued runs and running task runs looked at per pass


def p95(durations: list[float]) -> float | None:
    if len(durations) < P95_SAMPLES:
        return None
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class Alerts:
    def __init__(self, store: Any, settings: Settings, now: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.now = now
        # Dedup keys already in the outbox: a key seen is not offered again on every pass
        # (the outbox's unique key would refuse it, but at the cost of a write each time).
        self._seen: set[str] = set()

    def _enqueue(self, n: Notification) -> int:
        if n.dedup_key in self._seen:
            return 0
        if len(self._seen) > SEEN_MAX:
            self._seen.clear()
        added = int(self.store.enqueue_notification(n))
        self._seen.add(n.dedup_key)
        return added

    def collect(self, rules: list[NotifyRule]) -> int:
        added = 0
        for part in (self._reminders, lambda: self._late(rules), lambda: self._long(rules)):
            try:
                added += part()
            except Exception:
                log.exception("could not collect alerts")
        return added

    def _notification(
        self, channel: str, event: str, key: str, rule_id: str | None = None, **payload: Any
    ) -> Notification:
        return Notification(
            id=new_id(),
            channel=channel,
            event=event,
            dedup_key=key,
            payload=payload,
            rule_id=rule_id,
            flow_run_id=payload.get("flow_run_id"),
            next_attempt_at=self.now(),
            created_at=self.now(),
        )

    def _reminders(self) -> int:
        from legato.notify.sender import _short_hash, question_channel

        hours = self.settings.remind_after_hours
        if hours is None:
            return 0
        span = hours * 3600.0
        now = self.now()
        configured = question_channel(self.settings)
        added = 0
        for q in self.store.list_questions(states=[QuestionState.PENDING], limit=LOOKED_AT):
            spans = int((now - q.created_at) // span)
            if spans < 1:
                continue
            channels = [configured] if configured else []
            channels += [c for c in q.notify if c != configured]
            for channel in channels:
                key = f"reminder:{q.id}:{spans}:{_short_hash(channel)}"  # within 300
                added += self._enqueue(
                    self._notification(
                        channel,
                        "reminder",
                        key,
                        question_id=q.id,
                        flow_run_id=q.flow_run_id,
                        waited_hours=round((now - q.created_at) / 3600.0, 1),
                    )
                )
        return added

    def _late(self, rules: list[NotifyRule]) -> int:
        wanted = [r for r in rules if "late" in r.events]
        if not wanted:
            return 0
        cutoff = self.now() - self.settings.late_after_minutes * 60.0
        added = 0
        for run in self.store.late_flow_runs(cutoff, limit=LOOKED_AT):
            assert run.queued_at is not None
            for rule in wanted:
                if rule.flow is None or rule.flow == run.flow:
                    added += self._enqueue(
                        self._notification(
                            rule.channel,
                            "late",
                            f"late:{rule.id}:{run.id}:{run.queued_at:.0f}",  # each wait
                            rule_id=rule.id,
                            flow_run_id=run.id,
                            waited_minutes=round((self.now() - run.queued_at) / 60.0, 1),
                            pool=run.pool,
                        )
                    )
        return added

    def _long(self, rules: list[NotifyRule]) -> int:
        wanted = [r for r in rules if "long" in r.events]
        if not wanted:
            return 0
        now = self.now()
        usual: dict[str, float | None] = {}
        added = 0
        for tr in self.store.running_task_runs(limit=LOOKED_AT):
            limit = self._limit_of(tr, usual)
            ran = now - (tr.started_at or now)
            if limit is None or ran <= limit:
                continue
            run = self.store.get_flow_run(tr.flow_run_id)
            for rule in wanted:
                if rule.flow is None or rule.flow == run.flow:
                    added += self._enqueue(
                        self._notification(
                            rule.channel,
                            "long",
                            f"long:{rule.id}:{tr.id}:{tr.attempts}",
                            rule_id=rule.id,
                            flow_run_id=run.id,
                            task_run_id=tr.id,
                            call=tr.key,
                            running_seconds=round(ran),
                            limit_seconds=round(limit, 1),
                            measure="expected_duration" if tr.expected_duration else "p95",
                        )
                    )
        return added

    def _limit_of(self, tr: TaskRun, usual: dict[str, float | None]) -> float | None:
        if tr.expected_duration:
            return tr.expected_duration
        if tr.task not in usual:
            usual[tr.task] = p95(self.store.task_durations(tr.task))
        return usual[tr.task]
