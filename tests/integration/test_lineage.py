"""Lineage from values: a call given the value another call returned depends on it, matched
by identity, only for values identity can tell apart; replay and child flows keep it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from legato import flow, task
from legato.ask import answer_question
from legato.errors import Paused
from legato.resume import continue_run
from legato.runtime import get_runtime
from legato.testing import last_flow_run, task_runs_by_key


@task
def load(name: str) -> str:
    return f"/lab/remote/recordings/{name}.npz"  # long: told apart by identity


@task
def frames(n: int) -> np.ndarray:
    return np.arange(n, dtype=float)


@task
def pair(name: str) -> tuple[str, str]:
    return (f"/lab/tracks/{name}.raw.npz", f"/lab/tracks/{name}.smooth.npz")


@task
def stats(path: str, values: np.ndarray | None = None) -> dict[str, float]:
    return {"mean": 1.0 if values is None else float(values.mean())}


@task
def publish(paths: list[str], meta: dict[str, object]) -> int:
    return len(paths)


@task
def small(x: int) -> int:
    return x + 1


@task
def flag() -> bool:
    return True


@task
def nothing() -> None:
    return None


@task
def use(*values: object) -> int:
    return len(values)


def _deps(run_id: str) -> dict[str, set[str]]:
    runs = task_runs_by_key(get_runtime().store, run_id)
    key_of = {r.id: k for k, r in runs.items()}
    return {k: {key_of[d] for d in r.depends_on} for k, r in runs.items()}


def test_values_from_result_and_plain_calls_are_edges() -> None:
    @flow
    def week() -> int:
        path = load("rec-1")  # a plain call: the value itself
        arr = frames.submit(5).result()  # a future's value
        tracks = pair("rec-1")
        raw, smooth = tracks  # items of a returned tuple
        s = stats(path, values=arr)
        return publish([raw, smooth, path], meta={"stats": s})

    assert week() == 3
    deps = _deps(last_flow_run(get_runtime().store).id)
    assert deps["stats:0"] == {"load:0", "frames:0"}
    assert deps["publish:0"] == {"pair:0", "load:0", "stats:0"}
    assert deps["load:0"] == deps["frames:0"] == deps["pair:0"] == set()


def test_values_identity_cannot_tell_apart_give_no_edge() -> None:
    @flow
    def shapes() -> int:
        n = small(1)
        yes = flag()
        none = nothing()
        short = load.fn("x")[:3]  # a short string built here
        return use(n, yes, none, short, 2, "short", (), "")

    assert shapes() == 8
    deps = _deps(last_flow_run(get_runtime().store).id)
    assert deps["use:0"] == set()


def test_a_rebuilt_value_is_no_edge_but_a_future_still_is() -> None:
    @flow
    def rebuilt() -> int:
        a = stats("/lab/a-recording-path.npz")
        merged = {**a}  # a new dict: not the returned object
        fut = frames.submit(3)
        return publish(["/lab/elsewhere/not-from-a-task.npz"], meta={"m": merged, "f": fut})

    assert rebuilt() == 1
    deps = _deps(last_flow_run(get_runtime().store).id)
    assert deps["publish:0"] == {"frames:0"}  # the future found inside the dict


@flow
def child(path: str) -> int:
    return 1


@flow
def parent() -> int:
    from legato import ask

    path = load("rec-2")
    ok = ask("Carry on?", schema=bool)
    n = child(path)  # a child flow given a value
    return n + publish([path], meta={"ok": ok})


def test_child_flows_and_replay_keep_the_edges(legato_home: Path) -> None:
    with pytest.raises(Paused):
        parent()
    store = get_runtime().store
    run = last_flow_run(store)
    [question] = store.list_questions(flow_run_id=run.id)
    answer_question(store, question, True, by="lab-lead")
    done, error = continue_run(run.id)  # replays load:0, then runs the rest
    assert error is None and done.state.value == "COMPLETED"
    deps = _deps(run.id)
    assert deps["child:0"] == {"load:0"}
    assert deps["publish:0"] == {"load:0"}
