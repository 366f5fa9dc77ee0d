"""Replay checked against inputs: a resumed run matches calls by task and input fingerprint,
whatever their order, and never serves a result computed from other inputs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from legato import State, artifact, ask, flow, get_logger, task
from legato.engine import run_flow
from legato.errors import ReplayMismatch
from legato.models import QuestionState
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run


def store() -> Store:
    return get_runtime().store


class Stop(Exception):
    """Ends the first run part-way, as a crash would (the run is left to resume)."""


def test_a_changed_iteration_order_gives_each_call_its_own_result() -> None:
    order = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    ran: list[str] = []

    @task
    def upper(s: str) -> str:
        ran.append(s)
        if len(ran) == 4 and state["stop"]:
            raise Stop
        return s.upper()

    state = {"stop": True}

    @flow
    def shout() -> dict[str, str]:
        return {w: upper(w) for w in order}

    with pytest.raises(Stop):
        shout()
    run = last_flow_run(store())
    order.reverse()  # the resumed run meets the words in another order
    state["stop"] = False
    ran.clear()
    value, _ = run_flow(shout, {}, run_id=run.id, resume=True)
    assert value == {w: w.upper() for w in order}
    # The three completed calls replay; the failed one and the two never reached run.
    assert sorted(ran) == ["delta", "epsilon", "zeta"]
    live = [t for t in store().get_task_runs(run.id) if t.superseded_at is None]
    assert sorted(t.result["v"] for t in live) == sorted(w.upper() for w in order)


def test_an_input_changed_between_crash_and_resume_runs_the_call_again() -> None:
    arg = {"value": 1, "stop": True}
    calls: list[int] = []

    @task
    def scale(x: int) -> int:
        calls.append(x)
        return x + 3

    @task
    def after() -> None:
        if arg["stop"]:
            raise Stop

    @flow
    def from_env() -> dict[str, int]:
        x = arg["value"]  # read from outside the flow's parameters: may change on resume
        scaled = scale(x)
        after()
        return {"arg": x, "scaled": scaled}

    with pytest.raises(Stop):
        from_env()
    run = last_flow_run(store())
    arg.update(value=7, stop=False)
    value, _ = run_flow(from_env, {}, run_id=run.id, resume=True)
    assert value == {"arg": 7, "scaled": 10}
    assert calls == [1, 7]
    by_key = {t.key: t for t in store().get_task_runs(run.id)}
    old, new = by_key["scale:0"], by_key["scale:1"]
    assert old.result == {"v": 4} and old.superseded_at is not None
    assert new.result == {"v": 10} and new.superseded_at is None
    assert old.input_hashes is not None and new.input_hashes is not None
    assert old.input_hashes["x"] != new.input_hashes["x"]


def test_a_changed_input_upstream_changes_every_fingerprint_downstream() -> None:
    source = {"n": 1, "stop": True}
    ran: list[str] = []

    @task
    def load(n: int) -> int:
        ran.append("load")
        return n % 2  # 1 and 3 load the same value

    @task
    def double(x: int) -> int:
        ran.append("double")
        return 2 * x

    @task
    def end() -> None:
        if source["stop"]:
            raise Stop

    @flow
    def chain() -> int:
        doubled = double.submit(load.submit(source["n"]))
        end()
        return doubled.result()

    with pytest.raises(Stop):
        chain()
    run = last_flow_run(store())
    before = {t.task: t for t in store().get_task_runs(run.id)}
    source.update(n=3, stop=False)
    ran.clear()
    assert run_flow(chain, {}, run_id=run.id, resume=True)[0] == 2
    # double's input is a future: it counts by load's fingerprint, which changed, so double
    # runs again although the value it is given is the same.
    assert ran == ["load", "double"]
    after = {t.task: t for t in store().get_task_runs(run.id) if t.superseded_at is None}
    assert after["double"].fingerprint != before["double"].fingerprint
    assert after["double"].id != before["double"].id


def test_strict_mode_names_the_argument_that_changed() -> None:
    arg = {"threshold": 0.5}

    @task
    def measure(path: str, threshold: float) -> float:
        return threshold

    @task
    def fail() -> None:
        raise Stop

    @flow(replay="strict")
    def strict_flow() -> float:
        v = measure("a.h5", threshold=arg["threshold"])
        fail()
        return v

    with pytest.raises(Stop):
        strict_flow()
    run = last_flow_run(store())
    arg["threshold"] = 0.9
    with pytest.raises(ReplayMismatch, match=r"'measure:0' of 'measure'.*'threshold'") as err:
        run_flow(strict_flow, {}, run_id=run.id, resume=True)
    assert "'path'" not in str(err.value)
    [tr] = [t for t in store().get_task_runs(run.id) if t.task == "measure"]
    assert tr.result == {"v": 0.5} and tr.superseded_at is None  # nothing re-ran


def test_an_explicit_key_is_checked_against_the_inputs() -> None:
    arg = {"value": 1, "stop": True}

    @task
    def square(x: int) -> int:
        if arg["stop"]:
            raise Stop
        return x * x

    @task
    def keep(x: int) -> int:
        return x

    @flow
    def keyed() -> int:
        first = keep(arg["value"], key="the-input")
        return square(first, key="the-square")

    with pytest.raises(Stop):
        keyed()
    run = last_flow_run(store())
    arg.update(value=3, stop=False)
    value, _ = run_flow(keyed, {}, run_id=run.id, resume=True)
    assert value == 9
    rows = store().get_task_runs(run.id)
    current = {t.key: t for t in rows if t.superseded_at is None}
    assert current["the-input"].result == {"v": 3}
    old = {t.key.partition("@")[0]: t for t in rows if t.superseded_at is not None}
    # Both named calls moved aside: the first's input changed, and so did the second's
    # (its argument is the first's result).
    assert set(old) == {"the-input", "the-square"}
    assert old["the-input"].result == {"v": 1} and old["the-input"].key != "the-input"
    assert old["the-square"].state is State.FAILED


def test_identical_calls_are_told_apart_by_their_order_among_themselves() -> None:
    ran: list[int] = []

    @task
    def tick(x: int) -> int:
        ran.append(x)
        if len(ran) == 3 and stop["yes"]:
            raise Stop
        return len(ran)

    stop = {"yes": True}

    @flow
    def ticks() -> list[int]:
        return [tick(7) for _ in range(4)]

    with pytest.raises(Stop):
        ticks()
    run = last_flow_run(store())
    stop["yes"] = False
    value, _ = run_flow(ticks, {}, run_id=run.id, resume=True)
    assert value[:2] == [1, 2]  # the two completed calls replay, each with its own result
    assert len(ran) == 5  # the failed third and the fourth ran on resume


def test_a_version_bump_runs_the_task_again_and_a_source_change_does_not() -> None:
    stop = {"yes": True}

    def make(version: str | None, plus: int) -> Any:
        @task(name="step", version=version)
        def step(x: int) -> int:
            return x + plus

        return step

    @task
    def end() -> None:
        if stop["yes"]:
            raise Stop

    tasks = {"step": make(None, 1)}

    @flow
    def versioned() -> int:
        v = tasks["step"](1)
        end()
        return int(v)

    with pytest.raises(Stop):
        versioned()
    run = last_flow_run(store())
    stop["yes"] = False
    tasks["step"] = make(None, 100)  # a bug fix, same identity: what completed is reused
    assert run_flow(versioned, {}, run_id=run.id, resume=True)[0] == 2

    stop["yes"] = True
    tasks["step"] = make(None, 1)
    with pytest.raises(Stop):
        versioned()
    run = last_flow_run(store())
    stop["yes"] = False
    tasks["step"] = make("2", 100)  # version= bumped: the call runs again
    assert run_flow(versioned, {}, run_id=run.id, resume=True)[0] == 101


def test_unfingerprintable_arguments_fall_back_to_the_call_key_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = {"yes": True}
    ran: list[int] = []

    @task
    def use_lock(lock: Any, n: int) -> int:
        ran.append(n)
        return n

    @task
    def end() -> None:
        if stop["yes"]:
            raise Stop

    @flow
    def locked() -> list[int]:
        lock = threading.Lock()
        out = [use_lock(lock, n) for n in range(3)]
        end()
        return out

    with caplog.at_level(logging.WARNING, logger="legato.engine"), pytest.raises(Stop):
        locked()
    warnings = [r for r in caplog.records if "cannot be fingerprinted" in r.getMessage()]
    assert len(warnings) == 1 and "'lock'" in warnings[0].getMessage()
    run = last_flow_run(store())
    stop["yes"] = False
    ran.clear()
    assert run_flow(locked, {}, run_id=run.id, resume=True)[0] == [0, 1, 2]
    assert ran == []  # matched by key alone
    logs = [e.record.message for e in store().get_logs(run.id)]
    assert sum("cannot be fingerprinted" in m for m in logs) == 2  # once per run of the flow


def test_flow_body_artifacts_and_logs_are_recorded_once_per_logical_call() -> None:
    stop = {"yes": True}

    @task
    def end() -> None:
        if stop["yes"]:
            raise Stop

    @flow
    def reporting() -> str:
        get_logger().info("starting the report")
        artifact.markdown("# QC\nall good", title="qc")
        end()
        get_logger().info("finished")
        return "ok"

    with pytest.raises(Stop):
        reporting()
    run = last_flow_run(store())
    stop["yes"] = False
    assert run_flow(reporting, {}, run_id=run.id, resume=True)[0] == "ok"
    arts = store().get_artifacts(run.id)
    assert [a.title for a in arts] == ["qc"]
    messages = [e.record.message for e in store().get_logs(run.id)]
    assert messages.count("starting the report") == 1
    assert messages.count("finished") == 1


def test_questions_are_matched_by_prompt_when_their_order_changes() -> None:
    order = ["left", "right"]

    @flow
    def asking() -> dict[str, bool]:
        return {side: ask(f"{side} camera OK?") for side in order}

    from legato.ask import answer_question
    from legato.errors import Paused

    with pytest.raises(Paused):
        asking()
    run = last_flow_run(store())
    [q] = store().list_questions(flow_run_id=run.id)
    assert q.prompt == "left camera OK?"
    answer_question(store(), q, False, by="test")
    order.reverse()  # now the flow asks about the right camera first
    with pytest.raises(Paused):
        run_flow(asking, {}, run_id=run.id, resume=True)
    questions = {q.prompt: q for q in store().list_questions(flow_run_id=run.id)}
    assert questions["left camera OK?"].state is QuestionState.ANSWERED
    right = questions["right camera OK?"]
    assert right.state is QuestionState.PENDING and right.key != q.key
    answer_question(store(), right, True, by="test")
    value, _ = run_flow(asking, {}, run_id=run.id, resume=True)
    assert value == {"right": True, "left": False}


def test_a_missing_result_file_runs_the_call_again(tmp_path: Path) -> None:
    stop = {"yes": True}
    ran: list[int] = []

    @task
    def big(n: int) -> str:
        ran.append(n)
        return "x" * 100_000  # over the inline limit: written to result storage

    @task
    def end() -> None:
        if stop["yes"]:
            raise Stop

    @flow
    def stored() -> int:
        v = big(1)
        end()
        return len(v)

    with pytest.raises(Stop):
        stored()
    run = last_flow_run(store())
    [rec] = [t for t in store().get_task_runs(run.id) if t.task == "big"]
    Path(rec.result["ref"].removeprefix("file://")).unlink()
    stop["yes"] = False
    assert run_flow(stored, {}, run_id=run.id, resume=True)[0] == 100_000
    assert ran == [1, 1]
    rows = [t for t in store().get_task_runs(run.id) if t.task == "big"]
    assert {t.superseded_at is None for t in rows} == {True, False}
    messages = [e.record.message for e in store().get_logs(run.id)]
    assert any("running the call again" in m for m in messages)
    assert store().get_flow_run(run.id).state is State.COMPLETED
