"""The run store's contract (``RunStore``: what the engine records and reads): what every
backend (SQLite, PostgreSQL, HTTP) must do, tested the same way on each. Only the public
interface is used here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from legato.errors import RunNotFound
from legato.models import (
    Artifact,
    Question,
    QuestionState,
    State,
    new_id,
    now,
)
from legato.store import (
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    PutCache,
    Store,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)
from tests.store.records import T0, flow_run, log, states, task_run

# -- flow runs -------------------------------------------------------------------------------


def test_a_flow_run_round_trips(store: Store) -> None:
    run = flow_run(pool="io", parent_task_run_id=None)
    store.apply([InsertFlowRun(run, message="created")])
    got = store.get_flow_run(run.id)
    assert got.to_json() == run.to_json()
    [change] = store.get_history(run.id)
    assert (change.run_id, change.kind, change.state, change.at, change.message) == (
        run.id,
        "flow",
        State.RUNNING,
        T0,
        "created",
    )


def test_a_missing_flow_run_is_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound, match="no-such-run"):
        store.get_flow_run("no-such-run")
    with pytest.raises(RunNotFound):
        store.get_task_run(new_id())


def test_a_run_is_found_by_a_unique_id_prefix(store: Store) -> None:
    a = flow_run(id="aaaa1111-0000-7000-8000-000000000001")
    b = flow_run(id="aaaa2222-0000-7000-8000-000000000002")
    store.apply([InsertFlowRun(a), InsertFlowRun(b)])
    assert store.get_flow_run("aaaa1").id == a.id
    assert store.get_flow_run("aaaa2222").id == b.id
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.get_flow_run("aaaa")
    with pytest.raises(RunNotFound):
        store.get_flow_run("aaaa3")


def test_updating_a_flow_run_sets_columns_and_adds_history(store: Store) -> None:
    run = flow_run()
    store.apply([InsertFlowRun(run)])
    store.apply(
        [
            UpdateFlowRun(
                run.id, State.CRASHED, T0 + 5, {"result": {"v": [1, 2]}, "ended_at": T0 + 5}
            )
        ]
    )
    got = store.get_flow_run(run.id)
    assert (got.state, got.result, got.ended_at) == (State.CRASHED, {"v": [1, 2]}, T0 + 5)
    assert got.parameters == run.parameters
    assert states(store, run.id) == [State.RUNNING, State.CRASHED]
    store.apply([UpdateFlowRun(run.id, State.FAILED, T0 + 6, {"error": "Boom: x"}, "why")])
    got = store.get_flow_run(run.id)
    assert (got.state, got.error, got.result) == (State.FAILED, "Boom: x", {"v": [1, 2]})
    assert store.get_history(run.id)[-1].message == "why"


def test_list_flow_runs_newest_first_with_filters(store: Store) -> None:
    runs = [
        flow_run(flow="a", created_at=T0 + 1),
        flow_run(flow="b", created_at=T0 + 2, state=State.FAILED),
        flow_run(flow="a", created_at=T0 + 3, state=State.COMPLETED),
        flow_run(flow="a", created_at=T0 + 4),
    ]
    store.apply([InsertFlowRun(r) for r in runs])
    ids = [r.id for r in runs]
    assert [r.id for r in store.list_flow_runs()] == ids[::-1]
    assert [r.id for r in store.list_flow_runs(flow="a")] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in store.list_flow_runs(states=[State.FAILED, State.COMPLETED])] == [
        ids[2],
        ids[1],
    ]
    assert [r.id for r in store.list_flow_runs(flow="a", states=[State.RUNNING])] == [
        ids[3],
        ids[0],
    ]
    assert [r.id for r in store.list_flow_runs(limit=2)] == [ids[3], ids[2]]
    assert [r.id for r in store.list_flow_runs(limit=2, offset=2)] == [ids[1], ids[0]]
    assert store.list_flow_runs(flow="none") == []


def test_list_flow_runs_by_parent_and_top_level(store: Store) -> None:
    parent = flow_run(flow="parent", created_at=T0)
    call = task_run(parent.id, "child:0", state=State.RUNNING)
    child = flow_run(flow="child", parent_task_run_id=call.id, created_at=T0 + 1)
    store.apply([InsertFlowRun(parent), InsertTaskRun(call), InsertFlowRun(child)])
    assert [r.id for r in store.list_flow_runs(parent_task_run_id=call.id)] == [child.id]
    assert [r.id for r in store.list_flow_runs(top_level=True)] == [parent.id]
    assert store.get_flow_run(child.id).parent_task_run_id == call.id


def test_transition_flow_run_is_compare_and_set(store: Store) -> None:
    run = flow_run()
    store.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.PAUSED, T0 + 1)])
    assert not store.transition_flow_run(
        run.id, State.RUNNING, allowed_from=[State.FAILED, State.CRASHED], message="no"
    )
    assert store.get_flow_run(run.id).state is State.PAUSED
    assert states(store, run.id) == [State.RUNNING, State.PAUSED]
    assert store.transition_flow_run(
        run.id,
        State.RUNNING,
        allowed_from=[State.PAUSED],
        values={"error": None, "ended_at": None},
        message="resumed",
    )
    assert store.get_flow_run(run.id).state is State.RUNNING
    history = store.get_history(run.id)
    assert [h.state for h in history] == [State.RUNNING, State.PAUSED, State.RUNNING]
    assert history[-1].message == "resumed"
    # The second of two identical transitions loses.
    assert not store.transition_flow_run(run.id, State.RUNNING, allowed_from=[State.PAUSED])
    assert not store.transition_flow_run(new_id(), State.RUNNING, allowed_from=[State.PAUSED])


def test_only_one_of_many_concurrent_transitions_wins(store_factory: Callable[..., Store]) -> None:
    first = store_factory()
    run = flow_run()
    first.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.CRASHED, T0 + 1)])
    stores = [first] + [store_factory() for _ in range(3)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(stores) * 2)

    def claim(store: Store) -> None:
        barrier.wait()
        wins.append(store.transition_flow_run(run.id, State.RUNNING, allowed_from=[State.CRASHED]))

    threads = [threading.Thread(target=claim, args=(st,)) for st in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert states(first, run.id) == [State.RUNNING, State.CRASHED, State.RUNNING]


# -- task runs -------------------------------------------------------------------------------


def test_a_task_run_round_trips(store: Store) -> None:
    parent = flow_run()
    dep = task_run(parent.id, "extract:0", state=State.COMPLETED, result={"v": "s3://x"})
    run = task_run(
        parent.id,
        "stats:0",
        state=State.RUNNING,
        attempts=1,
        pool="gpu",
        worker="box-1",
        resources={"gpu": 1.0, "mem_gb": 16.0},
        tags=["heavy"],
        depends_on=[dep.id],
        cache_key="c" * 64,
        started_at=T0 + 1,
        created_at=T0 + 2,
    )
    store.apply([InsertFlowRun(parent), InsertTaskRun(dep), InsertTaskRun(run, "queued")])
    assert store.get_task_run(run.id).to_json() == run.to_json()
    assert store.get_task_run(dep.id).result == {"v": "s3://x"}
    assert [tr.id for tr in store.get_task_runs(parent.id)] == [dep.id, run.id]
    assert store.get_history(run.id)[0].message == "queued"
    assert store.get_history(run.id)[0].kind == "task"


def test_fingerprints_round_trip_and_a_superseded_record_gives_up_its_key(store: Store) -> None:
    parent = flow_run()
    hashes = {"path": "a" * 16, "threshold": "b" * 16}
    old = task_run(
        parent.id, "measure", state=State.COMPLETED, fingerprint="f" * 32, input_hashes=hashes
    )
    store.apply([InsertFlowRun(parent), InsertTaskRun(old)])
    got = store.get_task_run(old.id)
    assert (got.fingerprint, got.input_hashes, got.superseded_at) == ("f" * 32, hashes, None)
    history = len(store.get_history(old.id))
    # One batch: the old record moves aside, a new call takes its key.
    new = task_run(parent.id, "measure", fingerprint="e" * 32)
    store.apply([SupersedeTaskRun(old.id, T0 + 5, "measure@old"), InsertTaskRun(new)])
    moved = store.get_task_run(old.id)
    assert (moved.key, moved.superseded_at, moved.state) == ("measure@old", T0 + 5, State.COMPLETED)
    assert len(store.get_history(old.id)) == history  # nothing ran: no state change
    assert {t.key: t.id for t in store.get_task_runs(parent.id)} == {
        "measure@old": old.id,
        "measure": new.id,
    }
    store.apply([SupersedeTaskRun(new.id, T0 + 6)])  # without a new key: keeps its own
    assert store.get_task_run(new.id).key == "measure"


def test_task_runs_come_back_in_creation_order(store: Store) -> None:
    parent = flow_run()
    runs = [task_run(parent.id, f"t:{i}", created_at=T0 + 10 - i) for i in range(5)]
    store.apply([InsertFlowRun(parent)] + [InsertTaskRun(r) for r in runs])
    assert [tr.key for tr in store.get_task_runs(parent.id)] == [f"t:{i}" for i in range(4, -1, -1)]
    assert store.get_task_runs(new_id()) == []


def test_updating_a_task_run_in_later_batches(store: Store) -> None:
    parent = flow_run()
    run = task_run(parent.id, "load:0")
    store.apply([InsertFlowRun(parent), InsertTaskRun(run)])
    store.apply(
        [UpdateTaskRun(run.id, State.RUNNING, T0 + 2, {"attempts": 1, "started_at": T0 + 2})]
    )
    store.apply(
        [
            UpdateTaskRun(run.id, State.AWAITING_RETRY, T0 + 3, {"error": "E: 1"}, "retry in 1 s"),
            UpdateTaskRun(run.id, State.RUNNING, T0 + 4, {"attempts": 2, "started_at": T0 + 4}),
            UpdateTaskRun(
                run.id,
                State.COMPLETED,
                T0 + 5,
                {
                    "result": {"ref": "file:///results/r.json", "ser": "json"},
                    "ended_at": T0 + 5,
                    "error": None,
                },
            ),
        ]
    )
    got = store.get_task_run(run.id)
    assert (got.state, got.attempts, got.error) == (State.COMPLETED, 2, None)
    assert got.result == {"ref": "file:///results/r.json", "ser": "json"}
    assert (got.started_at, got.ended_at) == (T0 + 4, T0 + 5)
    history = store.get_history(run.id)
    assert [h.state for h in history] == [
        State.PENDING,
        State.RUNNING,
        State.AWAITING_RETRY,
        State.RUNNING,
        State.COMPLETED,
    ]
    assert [h.at for h in history] == [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5]
    assert history[2].message == "retry in 1 s"


def test_insert_and_updates_of_a_task_run_in_one_batch(store: Store) -> None:
    parent = flow_run()
    run = task_run(parent.id, "quick:0", state=State.RUNNING, attempts=1)
    store.apply(
        [
            InsertFlowRun(parent),
            InsertTaskRun(run),
            UpdateTaskRun(
                run.id, State.COMPLETED, T0 + 3, {"result": {"v": 1}, "ended_at": T0 + 3}
            ),
        ]
    )
    got = store.get_task_run(run.id)
    assert (got.state, got.result, got.attempts, got.ended_at) == (
        State.COMPLETED,
        {"v": 1},
        1,
        T0 + 3,
    )
    assert states(store, run.id) == [State.RUNNING, State.COMPLETED]


def test_a_call_key_is_unique_within_a_flow_run_and_a_bad_batch_changes_nothing(
    store: Store,
) -> None:
    parent = flow_run()
    other = flow_run()
    first = task_run(parent.id, "step:0")
    store.apply([InsertFlowRun(parent), InsertFlowRun(other), InsertTaskRun(first)])
    late = flow_run()
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own error type
        store.apply(
            [
                InsertFlowRun(late),
                InsertLogs([log(parent.id, "in the failed batch")]),
                InsertTaskRun(task_run(parent.id, "step:0")),
            ]
        )
    with pytest.raises(RunNotFound):
        store.get_flow_run(late.id)
    assert [tr.id for tr in store.get_task_runs(parent.id)] == [first.id]
    assert store.get_logs(parent.id) == []
    # The same key in another flow run is fine, and the store still works after the error.
    store.apply([InsertTaskRun(task_run(other.id, "step:0"))])
    assert [tr.key for tr in store.get_task_runs(other.id)] == ["step:0"]


def test_concurrent_batches_are_all_committed(store: Store) -> None:
    parent = flow_run()
    store.apply([InsertFlowRun(parent)])
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(20):
                tr = task_run(parent.id, f"w{w}:{i}")
                store.apply(
                    [
                        InsertTaskRun(tr),
                        UpdateTaskRun(tr.id, State.COMPLETED, T0 + 2, {"result": {"v": i}}),
                        InsertLogs([log(parent.id, f"{w}/{i}", task_run_id=tr.id)]),
                    ]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = store.get_task_runs(parent.id)
    assert len(runs) == 120
    assert {tr.state for tr in runs} == {State.COMPLETED}
    assert len(store.get_logs(parent.id, limit=1000)) == 120


def test_committed_changes_survive_reopening(store_factory: Callable[..., Store]) -> None:
    first = store_factory()
    run = flow_run()
    tr = task_run(run.id, "t:0", state=State.COMPLETED, result={"v": {"k": "v"}})
    first.apply([InsertFlowRun(run), InsertTaskRun(tr)])
    first.close()
    again = store_factory(auto_upgrade=False)
    assert again.get_flow_run(run.id).parameters == run.parameters
    assert again.get_task_run(tr.id).result == {"v": {"k": "v"}}


def test_an_empty_batch_is_allowed(store: Store) -> None:
    store.apply([])
    assert store.list_flow_runs() == []


# -- logs ------------------------------------------------------------------------------------


def test_logs_in_order_with_filters_and_paging(store: Store) -> None:
    run, other = flow_run(), flow_run()
    tr = task_run(run.id, "t:0")
    store.apply([InsertFlowRun(run), InsertFlowRun(other), InsertTaskRun(tr)])
    store.apply(
        [
            InsertLogs(
                [
                    log(run.id, "flow info"),
                    log(run.id, "task debug", 10, tr.id),
                    log(run.id, "task warning", 30, tr.id),
                ]
            ),
            InsertLogs([log(other.id, "elsewhere")]),
        ]
    )
    store.apply([InsertLogs([log(run.id, "flow error\nwith two lines ✓", 40)])])
    entries = store.get_logs(run.id)
    messages = [e.record.message for e in entries]
    assert messages == ["flow info", "task debug", "task warning", "flow error\nwith two lines ✓"]
    ids = [e.id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == 4
    first = entries[0].record
    assert (first.flow_run_id, first.task_run_id, first.at, first.level, first.logger) == (
        run.id,
        None,
        T0 + 2,
        20,
        "legato.run.etl",
    )
    assert [e.record.message for e in store.get_logs(run.id, task_run_id=tr.id)] == [
        "task debug",
        "task warning",
    ]
    assert [e.record.level for e in store.get_logs(run.id, min_level=30)] == [30, 40]
    assert [e.record.message for e in store.get_logs(run.id, after_id=ids[1])] == messages[2:]
    assert [e.record.message for e in store.get_logs(run.id, limit=2)] == messages[:2]
    assert store.get_logs(run.id, after_id=ids[-1]) == []
    assert [e.record.message for e in store.get_logs(other.id)] == ["elsewhere"]


# -- artifacts -------------------------------------------------------------------------------


def test_artifacts_round_trip_in_order(store: Store) -> None:
    run = flow_run()
    tr = task_run(run.id, "report:0")
    arts = [
        Artifact(new_id(), run.id, tr.id, "markdown", {"markdown": "# QC ✓"}, "QC", T0 + 1),
        Artifact(
            new_id(),
            run.id,
            tr.id,
            "table",
            {"columns": ["a"], "rows": [[1], [None]]},
            None,
            T0 + 2,
        ),
        Artifact(new_id(), run.id, None, "link", {"url": "https://example.org"}, "data", T0 + 3),
    ]
    store.apply(
        [InsertFlowRun(run), InsertTaskRun(tr)] + [InsertArtifact(a) for a in reversed(arts)]
    )
    assert store.get_artifacts(run.id) == arts
    assert store.get_artifacts(new_id()) == []


# -- cache -----------------------------------------------------------------------------------


def test_cache_entries_expire_and_are_replaced(store: Store) -> None:
    t = now()
    store.apply(
        [
            PutCache("k-forever", "stats", new_id(), {"v": {"mean": 1.5}}, t, None),
            PutCache("k-expired", "stats", new_id(), {"v": 2}, t - 10, t - 1),
            PutCache(
                "k-fresh",
                "stats",
                new_id(),
                {"ref": "file:///results/x.json", "ser": "json"},
                t,
                t + 60,
            ),
        ]
    )
    assert store.get_cached("k-forever", t) == {"v": {"mean": 1.5}}
    assert store.get_cached("k-forever", t + 10**9) == {"v": {"mean": 1.5}}
    assert store.get_cached("k-expired", t) is None
    assert store.get_cached("k-fresh", t) == {"ref": "file:///results/x.json", "ser": "json"}
    assert store.get_cached("k-fresh", t + 61) is None
    assert store.get_cached("missing", t) is None
    store.apply([PutCache("k-expired", "stats", new_id(), {"v": 3}, t, None)])
    assert store.get_cached("k-expired", t) == {"v": 3}


# -- questions -------------------------------------------------------------------------------


def question(flow_run_id: str, key: str = "ask:0", **values: Any) -> Question:
    fields: dict[str, Any] = {
        "id": new_id(),
        "flow_run_id": flow_run_id,
        "key": key,
        "prompt": "QC passed?",
        "schema": {"type": "boolean"},
        "default": {"v": False},
        "created_at": T0,
        "timeout_at": T0 + 3600,
    }
    fields.update(values)
    return Question(**fields)


def test_questions_round_trip_and_are_found_by_key(store: Store) -> None:
    run = flow_run()
    q = question(run.id)
    store.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.PAUSED, T0), InsertQuestion(q)])
    assert store.get_question(q.id).to_json() == q.to_json()
    assert store.find_question(run.id, "ask:0") == store.get_question(q.id)
    assert store.find_question(run.id, "ask:1") is None
    with pytest.raises(RunNotFound):
        store.get_question(new_id())


def test_list_questions_oldest_first_with_filters(store: Store) -> None:
    run, other = flow_run(), flow_run()
    qs = [
        question(run.id, "ask:0", created_at=T0 + 2),
        question(run.id, "ask:1", created_at=T0 + 1, state=QuestionState.ANSWERED),
        question(other.id, "ask:0", created_at=T0 + 3),
    ]
    store.apply([InsertFlowRun(run), InsertFlowRun(other)] + [InsertQuestion(q) for q in qs])
    assert [q.id for q in store.list_questions()] == [qs[1].id, qs[0].id, qs[2].id]
    assert [q.id for q in store.list_questions(states=[QuestionState.PENDING])] == [
        qs[0].id,
        qs[2].id,
    ]
    assert [q.id for q in store.list_questions(flow_run_id=run.id)] == [qs[1].id, qs[0].id]
    assert [q.id for q in store.list_questions(limit=1)] == [qs[1].id]


def test_answering_a_question_is_compare_and_set(store: Store) -> None:
    run = flow_run()
    q = question(run.id)
    store.apply([InsertFlowRun(run), UpdateFlowRun(run.id, State.PAUSED, T0), InsertQuestion(q)])
    answer = {"answer": {"v": True}, "answered_by": "ana", "answered_at": T0 + 10}
    assert store.update_question(
        q.id, allowed_from=[QuestionState.PENDING], state=QuestionState.ANSWERED, values=answer
    )
    assert not store.update_question(
        q.id,
        allowed_from=[QuestionState.PENDING],
        state=QuestionState.ANSWERED,
        values={"answer": {"v": False}, "answered_by": "bob", "answered_at": T0 + 11},
    )
    got = store.get_question(q.id)
    assert (got.state, got.answer, got.answered_by, got.answered_at) == (
        QuestionState.ANSWERED,
        {"v": True},
        "ana",
        T0 + 10,
    )
