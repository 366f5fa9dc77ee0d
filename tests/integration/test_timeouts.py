"""Timeouts really stop the work: the task's process is killed, its side effects never happen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato import State, flow, get_logger, task
from legato.errors import TaskTimeout
from legato.runtime import get_runtime
from legato.store import Store
from legato.testing import last_flow_run


@pytest.fixture(autouse=True, params=["fork", "spawn"])
def process_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test under both process models: the fork server (Linux), and the portable
    one (a new interpreter per task run) chosen where fork is missing, forced here."""
    from legato.settings import reset_settings

    monkeypatch.setenv("LEGATO_PROCESS_START", request.param)
    reset_settings()
    yield str(request.param)
    monkeypatch.undo()
    reset_settings()  # later tests read the settings of their own environment


def store() -> Store:
    return get_runtime().store


def test_a_task_past_its_timeout_is_killed_and_its_side_effect_never_happens(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "written-after-sleep"

    @task(timeout=1.0)
    def too_slow(path: str) -> str:
        time.sleep(2.5)
        Path(path).write_text("the task was not stopped")
        return "finished"

    @flow
    def times_out(path: str) -> str:
        return too_slow(path)

    started = time.monotonic()
    with pytest.raises(TaskTimeout, match="timeout of 1 s"):
        times_out(str(marker))
    # Wait until well past the moment the task would have written its file.
    time.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
    assert not marker.exists()
    run = last_flow_run(store())
    assert run.state is State.FAILED
    [tr] = store().get_task_runs(run.id)
    assert tr.state is State.FAILED
    assert tr.attempts == 1
    assert (tr.error or "").startswith("TaskTimeout:")


def test_a_task_within_its_timeout_returns_its_value_logs_and_result(tmp_path: Path) -> None:
    @task(timeout=30)
    def quick(x: int) -> dict[str, int]:
        get_logger().info("computing in a child process")
        return {"x": x * 2}

    @flow
    def in_time(x: int) -> dict[str, int]:
        return quick(x)

    assert in_time(21) == {"x": 42}
    run = last_flow_run(store())
    [tr] = store().get_task_runs(run.id)
    assert (tr.state, tr.result) == (State.COMPLETED, {"v": {"x": 42}})
    messages = [e.record.message for e in store().get_logs(run.id, task_run_id=tr.id)]
    assert messages == ["computing in a child process"]


def test_an_exception_in_a_timed_task_comes_back_with_its_type() -> None:
    @task(timeout=30)
    def raises_in_child() -> None:
        raise LookupError("from the child process")

    @flow
    def child_error() -> str:
        try:
            raises_in_child()
        except LookupError as exc:
            return str(exc)
        return "no error"

    assert child_error() == "from the child process"
    [tr] = store().get_task_runs(last_flow_run(store()).id)
    assert (tr.state, tr.error) == (State.FAILED, "LookupError: from the child process")


def test_a_timeout_stops_what_the_task_started_too(tmp_path: Path) -> None:
    """The task's whole process group is killed, in both models: a subprocess it started
    does not live on."""
    pid_file = tmp_path / "grandchild.pid"

    @task(timeout=1.0)
    def starts_a_process(path: str) -> None:
        import subprocess

        proc = subprocess.Popen(["sleep", "300"])
        Path(path).write_text(str(proc.pid))
        time.sleep(300)

    @flow
    def leaves_a_process(path: str) -> None:
        starts_a_process(path)

    with pytest.raises(TaskTimeout):
        leaves_a_process(str(pid_file))
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(grandchild):
        time.sleep(0.05)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_chosen_model_starts_the_process(process_start: str) -> None:
    """Forked children descend from the fork server; spawned ones from the flow's process."""
    import os

    @task(timeout=30)
    def parent_pid() -> int:
        return os.getppid()

    @flow
    def whose_child() -> int:
        return parent_pid()

    spawned = whose_child() == os.getpid()
    assert spawned is (process_start == "spawn")
