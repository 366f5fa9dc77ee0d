"""Forced reruns in-process, checked with a side-effect ledger: the chosen call and what
depends on it run again, nothing upstream or beside it does."""

from __future__ import annotations

import pytest

from legato import flow, task
from legato.errors import UsageError
from legato.models import State
from legato.rerun import pick_calls, plan_rerun
from legato.resume import continue_run
from legato.runtime import Runtime

LEDGER: list[str] = []
VERSION = {"extract": 1}


@task
def load(i: int) -> int:
    LEDGER.append(f"load {i}")
    return i


@task
def extract(x: int) -> int:
    LEDGER.append(f"extract {x}")
    return x * 10 + VERSION["extract"]


@task
def qc(y: int) -> int:
    LEDGER.append(f"qc {y}")
    return y


@task
def beside(i: int) -> int:
    LEDGER.append(f"beside {i}")
    return -i


@task
def summary(values: list[tuple[int, int]]) -> int:
    LEDGER.append("summary")
    return sum(v[0] for v in values)


@flow
def recording(i: int) -> tuple[int, int]:
    checked = qc.submit(extract.submit(load.submit(i)))
    return checked.result(), beside.submit(i).result()


@flow
def week(n: int) -> int:
    return summary(recording.map(range(n)))


def _rerun(rt: Runtime, run_id: str, step: str, **pick: object) -> None:
    run = rt.store.get_flow_run(run_id)
    chosen = pick_calls(rt.store, run, step, **pick)  # type: ignore[arg-type]
    rt.store.rerun_calls([t.id for t in chosen], by="ana")
    finished, error = continue_run(run_id)
    assert error is None, error
    assert finished.state is State.COMPLETED


def test_rerun_from_a_step_runs_it_and_its_downstream_only(rt: Runtime) -> None:
    LEDGER.clear()
    recording(1)
    [run] = rt.store.list_flow_runs()
    LEDGER.clear()
    VERSION["extract"] = 2  # a new model
    try:
        _rerun(rt, run.id, "extract")
    finally:
        VERSION["extract"] = 1
    assert LEDGER == ["extract 1", "qc 12"]  # not load (upstream), not beside
    assert rt.results.decode(rt.store.get_flow_run(run.id).result) == (12, -1)
    current = [t for t in rt.store.get_task_runs(run.id) if t.superseded_at is None]
    assert sorted(t.key for t in current) == ["beside:0", "extract:0", "load:0", "qc:0"]
    old = [t for t in rt.store.get_task_runs(run.id) if t.superseded_at is not None]
    assert sorted(t.task for t in old) == ["extract", "qc"]
    assert all(t.rerun_by == "ana" and t.state is State.COMPLETED for t in old)


def test_rerun_twice_and_by_key(rt: Runtime) -> None:
    LEDGER.clear()
    recording(2)
    [run] = rt.store.list_flow_runs()
    _rerun(rt, run.id, "qc:0")
    _rerun(rt, run.id, "qc:0")
    assert LEDGER.count("qc 21") == 3 and LEDGER.count("extract 2") == 1
    assert len([t for t in rt.store.get_task_runs(run.id) if t.task == "qc"]) == 3


def test_rerun_a_step_in_chosen_items_of_a_parent(rt: Runtime) -> None:
    LEDGER.clear()
    week(3)
    [parent] = rt.store.list_flow_runs(top_level=True)
    children = {
        t.key: t.child_flow_run_id for t in rt.store.get_task_runs(parent.id) if t.child_flow_run_id
    }
    LEDGER.clear()
    _rerun(rt, parent.id, "extract", items=["1", "recording:0[2]"])
    assert sorted(LEDGER) == ["extract 1", "extract 2", "qc 11", "qc 21", "summary"]
    now = {
        t.key: t
        for t in rt.store.get_task_runs(parent.id)
        if t.superseded_at is None and t.child_flow_run_id
    }
    # The same child runs carried on in place, under their parent's new calls.
    assert {k: t.child_flow_run_id for k, t in now.items()} == children
    for key in ("recording:0[1]", "recording:0[2]"):
        child = rt.store.get_flow_run(now[key].child_flow_run_id)  # type: ignore[arg-type]
        assert child.parent_task_run_id == now[key].id and child.state is State.COMPLETED
    assert len(rt.store.list_flow_runs()) == 4  # no new child run


def test_rerun_a_child_flow_call_runs_that_child_again_whole(rt: Runtime) -> None:
    LEDGER.clear()
    week(2)
    [parent] = rt.store.list_flow_runs(top_level=True)
    LEDGER.clear()
    plan = plan_rerun(rt.store, [t.id for t in pick_calls(rt.store, parent, "recording:0[0]")])
    assert (len(plan.superseded), plan.downstream) == (6, 5)  # its 4 calls and the summary
    _rerun(rt, parent.id, "recording:0[0]")
    assert sorted(LEDGER) == ["beside 0", "extract 0", "load 0", "qc 1", "summary"]


def test_rerun_only_failed_calls_of_a_step_and_refusals(rt: Runtime) -> None:
    LEDGER.clear()
    week(2)
    [parent] = rt.store.list_flow_runs(top_level=True)
    with pytest.raises(UsageError, match=r"no call has key or task 'nope'.*its tasks: recording"):
        pick_calls(rt.store, parent, "nope")
    with pytest.raises(UsageError, match="in state FAILED"):
        pick_calls(rt.store, parent, "extract", states=[State.FAILED])
    with pytest.raises(UsageError, match=r"no child run .* matches --item 7"):
        pick_calls(rt.store, parent, "extract", items=["7"])
    [one] = pick_calls(rt.store, parent, "extract", items=["0"])
    rt.store.rerun_calls([one.id], by="ana")
    with pytest.raises(UsageError, match="is PENDING"):  # reopened: replay it, not rerun
        rt.store.rerun_calls([one.id], by="ana")
    LEDGER.clear()
    finished, _ = continue_run(parent.id)  # a reopened run is carried on by a resume
    assert finished.state is State.COMPLETED
    assert sorted(LEDGER) == ["extract 0", "qc 1", "summary"]


@task
def measure(x: int) -> int:
    LEDGER.append(f"measure {x} v{VERSION['extract']}")
    return x * 10 + VERSION["extract"]


@flow
def twins() -> list[int]:
    first, second = measure.submit(5), measure.submit(5)  # the same inputs twice
    return [first.result(), second.result()]


def test_rerun_of_one_of_two_identical_calls_runs_that_one(rt: Runtime) -> None:
    LEDGER.clear()
    twins()
    [run] = rt.store.list_flow_runs()
    VERSION["extract"] = 2
    try:
        _rerun(rt, run.id, "measure:0")
    finally:
        VERSION["extract"] = 1
    # The chosen call ran again under its own key; the other kept its record and result.
    assert rt.results.decode(rt.store.get_flow_run(run.id).result) == [52, 51]
    current = {t.key for t in rt.store.get_task_runs(run.id) if t.superseded_at is None}
    assert current == {"measure:0", "measure:1"}
    assert LEDGER.count("measure 5 v2") == 1


@flow
def chain_of_children() -> int:
    a = recording.submit(1)
    b = recording.submit(2, wait_for=[a])  # recorded as depending on the first child
    return b.result()[0]


def test_a_plan_does_not_depend_on_the_order_of_the_chosen_calls(rt: Runtime) -> None:
    LEDGER.clear()
    chain_of_children()
    [top] = rt.store.list_flow_runs(top_level=True)
    calls = {t.key: t for t in rt.store.get_task_runs(top.id)}
    first = rt.store.get_task_runs(calls["recording:0"].child_flow_run_id or "")
    second = rt.store.get_task_runs(calls["recording:1"].child_flow_run_id or "")
    a_qc = next(t.id for t in first if t.task == "qc")
    b_load = next(t.id for t in second if t.task == "load")
    one = plan_rerun(rt.store, [a_qc, b_load])
    other = plan_rerun(rt.store, [b_load, a_qc])
    assert {t.id for t in one.superseded} == {t.id for t in other.superseded}
    # The second child depends on the first's value: it runs again whole, every call of it.
    assert {t.id for t in second} <= {t.id for t in one.superseded}
