"""The notifier: turns run events into outbox messages, and sends the outbox.

``collect()`` reads the flow runs' state history after a stored cursor, and adds a message
per matching rule (dedup key: rule + history row, so a restart or a second server adds none
twice), plus one Slack question per pending question when Slack is configured. ``deliver()``
claims due messages (compare-and-set, so two servers never send one twice), sends each with
a per-channel rate limit, and on failure retries with exponential backoff and jitter, up to
``max_attempts``; then the message is ``failed``, logged, and listed for the dashboard. A
webhook the outbound-URL policy refuses (``legato.outbound``) fails at once, with the reason.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from legato.errors import OutboundRefused
from legato.models import Artifact, FlowRun, Notification, Question, State, new_id
from legato.notify.channels import Message, send
from legato.notify.rules import matches
from legato.outbound import mask_channel
from legato.settings import Settings
from legato.store import Store

log = logging.getLogger("legato.notify")
CURSOR = "notify"
Sender = Callable[[str, Message, Settings], dict[str, Any]]


def run_link(settings: Settings, run_id: str) -> str | None:
    if not settings.public_url:
        return None
    return f"{settings.public_url.rstrip('/')}/runs/{run_id}"


def backoff(attempt: int, base: float = 5.0, cap: float = 900.0) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, capped, with +-20% jitter."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (0.8 + 0.4 * random.random())


def question_channel(settings: Settings) -> str | None:
    """Where every question goes besides its own ``notify`` channels: LEGATO_SLACK_CHANNEL,
    when Slack is configured."""
    if settings.slack_bot_token and settings.slack_channel:
        return f"slack:{settings.slack_channel}"
    return None


def _short_hash(text: str) -> str:
    """A fixed-length stand-in for ``text`` in a dedup key (a channel may be 500 long)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:24]


MESSAGE_LINKS = 5  # link artifacts a run's message carries


def link_artifacts(artifacts: list[Artifact]) -> list[tuple[str, str]]:
    """(title, URL) of a run's ``artifact.link`` artifacts that Slack and mail can carry: an
    http(s) URL with none of the characters Slack's link syntax uses."""
    links = []
    for a in artifacts:
        url = a.data.get("url") if isinstance(a.data, dict) else a.data
        if a.kind != "link" or not isinstance(url, str) or len(url) > 2000:
            continue
        if url.startswith(("https://", "http://")) and not any(c in url for c in "<>| \n"):
            links.append(((a.title or url)[:200], url))
    return links[:MESSAGE_LINKS]


def run_message(
    run: FlowRun, state: State, settings: Settings, links: list[tuple[str, str]] | None = None
) -> Message:
    verb = {
        State.FAILED: "failed",
        State.CRASHED: "crashed",
        State.PAUSED: "is waiting for an answer",
        State.COMPLETED: "completed",
        State.CANCELLED: "was cancelled",
    }.get(state, f"is {state.value}")
    where = f" (deployment {run.deployment})" if run.deployment else ""
    return Message(
        title=f"{run.flow} {verb}",
        text=f"Flow run {run.id}{where} is {state.value}.",
        link=run_link(settings, run.id),
        error=run.error if state in (State.FAILED, State.CRASHED) else None,
        fields={"flow_run_id": run.id, "flow": run.flow, "state": state.value},
        links=links or [],
    )


class Notifier:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Callable[[], float] = time.time,
        sender: Sender = send,
        max_attempts: int = 8,
        backoff_base: float = 5.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.now = now
        self.sender = sender
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self._sent: dict[str, collections.deque[float]] = {}
        from legato.notify.alerts import Alerts

        self.alerts = Alerts(store, settings, now)

    def tick(self) -> int:
        """Collect, then deliver; returns how many messages were sent."""
        self.collect()
        return self.deliver()

    # -- events -> outbox -----------------------------------------------------------------

    def collect(self) -> int:
        added = 0
        position = self.store.get_cursor(CURSOR)
        if position is None:  # first start: from now on, not the whole past
            self.store.set_cursor(CURSOR, self.store.last_history_id())
            position = self.store.get_cursor(CURSOR) or 0
        rules = self.store.list_notify_rules()
        added += self.alerts.collect(rules)
        while True:
            events = self.store.flow_events_after(position, limit=500)
            if not events:
                break
            for hid, change in events:
                added += self._event(hid, change.run_id, change.state, rules)
            position = events[-1][0]
            self.store.set_cursor(CURSOR, position)
        configured = question_channel(self.settings)
        for q in self.store.unannounced_questions(named_only=configured is None):
            channels = [c for c in q.notify if c != configured]
            if configured:
                channels.insert(0, configured)
            # The first channel's message marks the question announced: it goes in last, so
            # a stop half-way announces the rest again rather than never. One question that
            # cannot be queued must not keep the others (and this tick's sends) back.
            try:
                for i in reversed(range(len(channels))):
                    n = self._question(q, channels[i], i == 0)
                    added += self.store.enqueue_notification(n)
            except Exception:
                log.exception("could not queue the announcements of question %s", q.id)
        return added

    def _event(self, hid: int, run_id: str, state: State, rules: list[Any]) -> int:
        if not rules:
            return 0
        wanted = state.value.lower()
        if not any(wanted in r.events for r in rules):
            return 0
        try:
            run = self.store.get_flow_run(run_id)
        except Exception:
            return 0
        added = 0
        for rule in rules:
            if matches(rule, run.flow, state):
                n = Notification(
                    id=new_id(),
                    channel=rule.channel,
                    event=wanted,
                    dedup_key=f"rule:{rule.id}:{hid}",
                    payload={"flow_run_id": run.id, "state": state.value},
                    rule_id=rule.id,
                    flow_run_id=run.id,
                    next_attempt_at=self.now(),
                    created_at=self.now(),
                )
                added += self.store.enqueue_notification(n)
        return added

    def _question(self, q: Question, channel: str, first: bool) -> Notification:
        return Notification(
            id=new_id(),
            channel=channel,
            event="question",
            dedup_key=f"question:{q.id}" if first else f"question:{q.id}:{_short_hash(channel)}",
            payload={"question_id": q.id},
            flow_run_id=q.flow_run_id,
            next_attempt_at=self.now(),
            created_at=self.now(),
        )

    # -- outbox -> channels ---------------------------------------------------------------

    def _rate_ok(self, channel: str, now: float) -> float | None:
        """None if a message may go to ``channel`` now, else when it may."""
        sent = self._sent.setdefault(channel, collections.deque())
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        if len(sent) < self.settings.notify_rate_per_minute:
            return None
        return sent[0] + 60.0

    def deliver(self, limit: int = 100) -> int:
        done = 0
        for n in self.store.due_notifications(self.now(), limit=limit):
            now = self.now()
            later = self._rate_ok(n.channel, now)
            if later is not None:
                self.store.claim_notification(n.id, n.next_attempt_at, later)
                continue
            if not self.store.claim_notification(n.id, n.next_attempt_at, now + 300.0):
                continue  # another server took it
            done += self._send(n, now)
        return done

    def _message(self, n: Notification) -> Message | None:
        if n.event == "question":
            from legato.integrations.slack import question_message

            q = self.store.get_question(str(n.payload["question_id"]))
            if q.state.value != "pending":
                return None  # answered before we could ask: nothing to post
            run = self.store.get_flow_run(q.flow_run_id)
            message = question_message(q, run, self.settings)
            if not n.channel.startswith("slack:"):  # no buttons there: say how to answer
                message.text += f"\n\nAnswer it with: legato answer {q.flow_run_id} VALUE"
                message.link = run_link(self.settings, run.id)
            return message
        if n.event in ("reminder", "late", "long"):
            return self._alert_message(n)
        run = self.store.get_flow_run(str(n.payload["flow_run_id"]))
        links = link_artifacts(self.store.get_artifacts(run.id))
        return run_message(run, State(str(n.payload["state"])), self.settings, links)

    def _alert_message(self, n: Notification) -> Message | None:
        p = n.payload
        run = self.store.get_flow_run(str(p["flow_run_id"]))
        link = run_link(self.settings, run.id)
        fields = {"flow_run_id": run.id, "flow": run.flow, "event": n.event}
        if n.event == "reminder":
            q = self.store.get_question(str(p["question_id"]))
            if q.state.value != "pending":
                return None  # answered since: nothing to remind of
            return Message(
                title=f"Still waiting for an answer: {run.flow}",
                text=f"{q.prompt!r} has waited {p['waited_hours']} hours.\n\n"
                f"Answer it with: legato answer {q.flow_run_id} VALUE",
                link=link,
                fields={**fields, "question_id": q.id},
            )
        if n.event == "late":
            if run.state is not State.PENDING or run.queued_at is None:
                return None  # a worker took it since
            return Message(
                title=f"{run.flow} is late",
                text=f"Flow run {run.id} has waited {p['waited_minutes']} minutes for a worker "
                f"of pool {p.get('pool') or 'default'} (is one running?).",
                link=link,
                fields=fields,
            )
        tr = self.store.get_task_run(str(p["task_run_id"]))
        if tr.state is not State.RUNNING:
            return None  # it ended since
        measure = "its expected duration" if p["measure"] == "expected_duration" else "its p95"
        return Message(
            title=f"{run.flow}: {tr.key} is running long",
            text=f"Task run {tr.key} of flow run {run.id} has run {p['running_seconds']} s, "
            f"past {measure} of {p['limit_seconds']} s.",
            link=link,
            fields={**fields, "task_run_id": tr.id},
        )

    def _send(self, n: Notification, now: float) -> int:
        attempts = n.attempts + 1
        try:
            message = self._message(n)
            if message is None:
                self.store.update_notification(
                    n.id, {"state": "skipped", "attempts": attempts, "sent_at": now}
                )
                return 0
            answer = self.sender(n.channel, message, self.settings)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            # A refused URL stays refused: failed now, not retried for hours.
            if attempts >= self.max_attempts or isinstance(exc, OutboundRefused):
                log.error(
                    "notification %s to %s failed for good after %d attempts: %s",
                    n.id,
                    mask_channel(n.channel),
                    attempts,
                    error,
                )
                values: dict[str, Any] = {"state": "failed", "attempts": attempts}
            else:
                delay = backoff(attempts, self.backoff_base)
                log.warning(
                    "notification %s to %s failed (attempt %d, next in %.0f s): %s",
                    n.id,
                    mask_channel(n.channel),
                    attempts,
                    delay,
                    error,
                )
                values = {"attempts": attempts, "next_attempt_at": now + delay}
            values["last_error"] = error
            self.store.update_notification(n.id, values)
            return 0
        self._sent.setdefault(n.channel, collections.deque()).append(now)
        self.store.update_notification(
            n.id,
            {
                "state": "sent",
                "attempts": attempts,
                "sent_at": now,
                "last_error": None,
                "payload": {**n.payload, **answer},
            },
        )
        return 1
