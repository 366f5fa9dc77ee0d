"""A forced rerun in the store, on every backend: the planned calls are superseded in one
transaction, the runs holding them reopened, the top-level run queued when a pool is given."""

from __future__ import annotations

import pytest

from legato.errors import IllegalTransition, UsageError
from legato.models import State
from legato.store import InsertFlowRun, InsertTaskRun, Store
from tests.store.records import flow_run, task_run


def _week(store: Store) -> dict[str, str]:
    """A finished parent with two children (load -> extract -> qc each) and a summary that
    depends on both children's calls."""
    parent = flow_run(state=State.COMPLETED, pool="lab")
    ops: list[object] = [InsertFlowRun(parent)]
    ids = {"parent": parent.id}
    calls = []
    for i in range(2):
        child = flow_run(state=State.COMPLETED, flow="recording")
        call = task_run(
            parent.id,
            f"recording:0[{i}]",
            task="recording",
            state=State.COMPLETED,
            child_flow_run_id=child.id,
        )
        child.parent_task_run_id = call.id
        load = task_run(child.id, "load:0", state=State.COMPLETED)
        extract = task_run(child.id, "extract:0", state=State.COMPLETED, depends_on=[load.id])
        qc = task_run(child.id, "qc:0", state=State.COMPLETED, depends_on=[extract.id])
        ops += [InsertTaskRun(call), InsertFlowRun(child)]
        ops += [InsertTaskRun(t) for t in (load, extract, qc)]
        ids.update({f"child{i}": child.id, f"call{i}": call.id, f"extract{i}": extract.id})
        ids.update({f"load{i}": load.id, f"qc{i}": qc.id})
        calls.append(call.id)
    summary = task_run(parent.id, "summary:0", state=State.COMPLETED, depends_on=calls)
    ids["summary"] = summary.id
    ops.append(InsertTaskRun(summary))
    store.apply(ops)  # type: ignore[arg-type]
    return ids


def _asker(store: Store, claimed: str) -> str:
    """Who the rerun is recorded as: the caller's claim on the database itself; through the
    server its token's name, whatever the client claims."""
    return "test-admin" if store.url.startswith("http") else claimed


def test_a_rerun_supersedes_the_call_its_downstream_and_the_path_up(store: Store) -> None:
    ids = _week(store)
    done = store.rerun_calls([ids["extract1"]], by="ana", pool="lab")
    ana = _asker(store, "ana")
    assert done.root == ids["parent"]
    assert (done.calls, done.downstream, done.runs, done.pool) == (4, 3, 2, "lab")
    moved = {t.id: t for run in ("child1", "parent") for t in store.get_task_runs(ids[run])}
    for name in ("extract1", "qc1", "call1", "summary"):
        record = moved[ids[name]]
        assert record.superseded_at is not None and record.rerun_by == ana
        assert record.key.endswith("@" + record.id[-8:])  # its key is free for the rerun
        assert record.state is State.COMPLETED  # a completed record stays completed
    assert moved[ids["load1"]].superseded_at is None  # upstream of the chosen call
    assert moved[ids["call0"]].superseded_at is None  # the other item
    assert all(t.superseded_at is None for t in store.get_task_runs(ids["child0"]))
    parent = store.get_flow_run(ids["parent"])
    assert parent.state is State.PENDING and parent.queued_at is not None
    assert store.get_flow_run(ids["child1"]).state is State.PENDING
    assert store.get_flow_run(ids["child0"]).state is State.COMPLETED
    said = [h.message for h in store.get_history(ids["parent"])]
    assert said[-1] == f"rerun from 'extract:0' by {ana}"
    assert any("superseded: rerun" in (h.message or "") for h in store.get_history(ids["qc1"]))


def test_a_rerun_is_refused_while_the_run_is_not_stopped_and_changes_nothing(
    store: Store,
) -> None:
    ids = _week(store)
    with pytest.raises(IllegalTransition):  # only a rerun reopens a completed run
        store.transition_flow_run(ids["parent"], State.PENDING, allowed_from=[State.COMPLETED])
    store.rerun_calls([ids["extract0"]], by="ana")
    with pytest.raises(UsageError, match="PENDING: only a COMPLETED, FAILED, CANCELLED run"):
        store.rerun_calls([ids["load0"]], by="bo")
    assert store.get_task_run(ids["load0"]).superseded_at is None


def test_a_superseded_record_cannot_be_chosen_again(store: Store) -> None:
    ids = _week(store)
    store.rerun_calls([ids["qc0"]], by="ana")
    store.transition_flow_run(ids["parent"], State.FAILED, allowed_from=[State.PENDING])
    with pytest.raises(UsageError, match="already superseded"):
        store.rerun_calls([ids["qc0"]], by="ana")
