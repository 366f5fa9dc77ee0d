"""Alerts that come from the clock, with a clock the test moves: question timeouts expired on
time by the server's pass, reminders of questions still waiting, late runs, long task runs
(past an expected duration, or past the task's usual p95). Sent to the fake Slack."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato.errors import Paused
from legato.loader import load_flow
from legato.models import FlowRun, QuestionState, State, TaskRun, new_id
from legato.notify.rules import make_rule
from legato.notify.sender import Notifier
from legato.resume import continue_run
from legato.runtime import Runtime
from legato.store import InsertFlowRun, InsertTaskRun
from legato.triggers.service import TriggerService

from .fake_slack import FakeSlack
from .test_notify import Clock, _settings


def _texts(fake: FakeSlack) -> list[str]:
    return [str(p.body.get("text")) for p in fake.of("chat.postMessage")]


def test_a_question_times_out_on_time_and_its_run_carries_on(
    rt: Runtime, flows_file: Path, fake_slack: FakeSlack
) -> None:
    with pytest.raises(Paused):
        load_flow(f"{flows_file}:deadline")("S-1")
    (q,) = rt.store.list_questions(states=[QuestionState.PENDING])
    (run,) = rt.store.list_flow_runs(flow="deadline")
    for i in range(3):  # older questions without a timeout do not hide it
        with pytest.raises(Paused):
            load_flow(f"{flows_file}:review")(f"old-{i}")
    clock = Clock(q.created_at + 30)
    service = TriggerService(rt.store, _settings(fake_slack), now=clock, notify=False)
    service.tick()
    assert rt.store.get_question(q.id).state is QuestionState.PENDING  # not yet
    clock.t = q.created_at + 61
    from legato.triggers.timeouts import expire_questions

    assert expire_questions(rt.store, clock.t, limit=1) == 1  # the one that is due
    expired = rt.store.get_question(q.id)
    assert expired.state is QuestionState.EXPIRED and expired.answered_by == "timeout"
    queued = rt.store.get_flow_run(run.id)
    assert queued.state is State.PENDING and queued.pool == "default"  # for a worker
    finished, error = continue_run(run.id)  # what the worker does with it
    assert error is None and finished.state is State.COMPLETED
    assert rt.results.decode(finished.result) is True  # the question's default


def test_a_waiting_question_is_posted_again_after_each_span(
    rt: Runtime, flows_file: Path, fake_slack: FakeSlack
) -> None:
    with pytest.raises(Paused):
        load_flow(f"{flows_file}:review")("S-2")
    (q,) = rt.store.list_questions(states=[QuestionState.PENDING])
    clock = Clock(q.created_at + 3600)
    settings = _settings(fake_slack, slack_channel="lab-qc", remind_after_hours=2)
    notifier = Notifier(rt.store, settings, now=clock)
    notifier.tick()
    assert len(_texts(fake_slack)) == 1  # the question itself, no reminder after 1 h
    clock.t = q.created_at + 2.5 * 3600
    assert notifier.tick() == 1
    assert notifier.tick() == 0  # once per span
    assert "Still waiting for an answer" in _texts(fake_slack)[-1]
    assert "waited 2.5 hours" in _texts(fake_slack)[-1]
    clock.t = q.created_at + 4.2 * 3600
    assert notifier.tick() == 1  # the next span
    from legato.ask import answer_question

    answer_question(rt.store, q, True, "ana")
    clock.t = q.created_at + 6.5 * 3600
    notifier.collect()
    assert notifier.deliver() == 0  # answered: nothing more to remind of


def test_a_run_queued_too_long_is_late(
    rt: Runtime, flows_file: Path, fake_slack: FakeSlack
) -> None:
    from tests.triggers.conftest import deploy_flow

    dep = deploy_flow(rt.store, flows_file, "nightly")
    first = rt.store.start_deployment(dep.name, {})
    # It started once, then went back to the queue (its worker stopped): late all the same.
    [claimed] = rt.store.claim_flow_runs("default", "w1")
    assert claimed.started_at is not None
    assert rt.store.queue_flow_run(first.id, "default", allowed_from=[State.RUNNING])
    run = rt.store.get_flow_run(first.id)
    rt.store.add_notify_rule(make_rule(["late"], "slack:#ops"))
    assert run.queued_at is not None
    clock = Clock(run.queued_at + 10 * 60)
    notifier = Notifier(rt.store, _settings(fake_slack), now=clock)
    assert notifier.tick() == 0
    clock.t = run.queued_at + 16 * 60
    assert notifier.tick() == 1
    assert notifier.tick() == 0  # once per run and rule
    [post] = fake_slack.of("chat.postMessage")
    assert post.body["channel"] == "ops" and "nightly is late" in post.body["text"]


def _running(rt: Runtime, task: str, started: float, expected: float | None = None) -> TaskRun:
    run = FlowRun(new_id(), "lab", State.RUNNING, created_at=started, started_at=started)
    tr = TaskRun(
        new_id(),
        run.id,
        task,
        f"{task}:0",
        State.RUNNING,
        attempts=1,
        created_at=started,
        started_at=started,
        expected_duration=expected,
    )
    rt.store.apply([InsertFlowRun(run), InsertTaskRun(tr)])
    return tr


def test_a_task_run_past_its_expected_duration_or_usual_p95_is_long(
    rt: Runtime, fake_slack: FakeSlack
) -> None:
    t0 = 1_700_000_000.0
    history = FlowRun(new_id(), "lab", State.COMPLETED, created_at=t0 - 9000)
    done = [
        TaskRun(
            new_id(),
            history.id,
            "sort",
            f"sort:{i}",
            State.COMPLETED,
            created_at=t0 - 9000,
            started_at=t0 - 9000,
            ended_at=t0 - 9000 + (i + 1),
        )
        for i in range(25)  # took 1 s .. 25 s: the p95 is 24 s
    ]
    rt.store.apply([InsertFlowRun(history), *[InsertTaskRun(t) for t in done]])
    extract = _running(rt, "extract", t0, expected=60)
    sort = _running(rt, "sort", t0)
    _running(rt, "fresh_task", t0)  # never completed before: no usual time to go by
    rt.store.add_notify_rule(make_rule(["long"], "slack:#ops"))
    clock = Clock(t0 + 20)
    notifier = Notifier(rt.store, _settings(fake_slack), now=clock)
    assert notifier.tick() == 0
    clock.t = t0 + 30
    assert notifier.tick() == 1  # sort, past its p95 of 24 s
    clock.t = t0 + 61
    assert notifier.tick() == 1  # extract, past its expected 60 s
    clock.t = t0 + 3600
    offered: list[str] = []
    enqueue = rt.store.enqueue_notification

    def counted(n: object) -> bool:
        offered.append(getattr(n, "dedup_key", ""))
        return bool(enqueue(n))  # type: ignore[arg-type]

    rt.store.enqueue_notification = counted  # type: ignore[method-assign]
    assert notifier.tick() == 0  # once per attempt
    assert offered == []  # and not offered to the outbox again on every pass
    texts = _texts(fake_slack)
    assert any(f"{sort.key} is running long" in t and "its p95 of 24" in t for t in texts)
    assert any(
        f"{extract.key} is running long" in t and "expected duration of 60" in t for t in texts
    )
