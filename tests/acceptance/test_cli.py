"""`legato` as a user runs it: exit codes, --json field names, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.acceptance.conftest import Legato, as_json

FLOWS = str(Path(__file__).with_name("flows.py"))


def test_run_completes_and_prints_the_run_as_json(legato: Legato) -> None:
    proc = legato("run", f"{FLOWS}:arithmetic", "-p", "n=4", "-p", "scale=0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert {"id", "flow", "state", "parameters", "task_runs"} <= set(run)
    assert run["flow"] == "arithmetic" and run["state"] == "COMPLETED"
    assert run["parameters"] == {"n": 4, "scale": 0.5, "label": "run"}
    assert run["result"] == {"total": 6.0, "label": "run"}
    assert len(run["task_runs"]) == 4
    for tr in run["task_runs"]:
        expected = {
            "id",
            "task",
            "key",
            "state",
            "attempts",
            "pool",
            "worker",
            "started_at",
            "ended_at",
            "error",
        }
        assert expected <= set(tr)
        assert tr["state"] == "COMPLETED" and tr["attempts"] == 1


def test_str_parameters_stay_strings_and_params_file_is_read(
    legato: Legato, tmp_path: Path
) -> None:
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"n": 2, "label": "from-file"}))
    proc = legato(
        "run", f"{FLOWS}:arithmetic", "--params-file", str(params), "-p", "label=007", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["parameters"]["label"] == "007"


def test_listing_show_and_logs(legato: Legato) -> None:
    legato("run", f"{FLOWS}:arithmetic", "-p", "n=2", "-p", "label=first")
    legato("run", f"{FLOWS}:failing")
    runs = as_json(legato("runs", "ls", "--json"))
    assert [r["flow"] for r in runs] == ["failing", "arithmetic"]  # newest first
    assert as_json(legato("runs", "ls", "--json", "--state", "failed"))[0]["flow"] == "failing"
    assert (
        as_json(legato("runs", "ls", "--json", "--flow", "arithmetic"))[0]["state"] == "COMPLETED"
    )
    first = runs[1]["id"]
    shown = legato("runs", "show", first[:13], "--json")
    assert shown.returncode == 0
    assert as_json(shown)["id"] == first  # a unique prefix is enough
    human = legato("runs", "show", first)
    assert "double:0[0]" in human.stdout and "COMPLETED" in human.stdout
    logs = as_json(legato("runs", "logs", first, "--json"))
    assert any("summing 2 items for first" in e["message"] for e in logs)
    failed_logs = legato("runs", "logs", runs[0]["id"], "--level", "error")
    assert "ValueError: cannot handle 3" in failed_logs.stdout


def test_failed_run_exits_1_with_one_line(legato: Legato) -> None:
    proc = legato("run", f"{FLOWS}:failing", "-q")
    assert proc.returncode == 1
    assert "ValueError: cannot handle 3" in proc.stderr
    assert "Traceback" not in proc.stderr
    debug = legato("--debug", "run", f"{FLOWS}:failing", "-q")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_bad_input_exits_2_and_creates_no_run(legato: Legato, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    cases = [
        ([f"{FLOWS}:nope"], "has no flow named 'nope'"),
        ([str(tmp_path / "missing.py") + ":f"], "no such file"),
        ([f"{broken}:f"], "ModuleNotFoundError"),
        ([f"{FLOWS}:double"], "is not a flow"),
        ([f"{FLOWS}:arithmetic", "-p", "n=many"], "parameter 'n'"),
        ([f"{FLOWS}:arithmetic"], "parameter 'n': missing"),
        ([f"{FLOWS}:arithmetic", "-p", "n=1", "-p", "bogus=1"], "bogus"),
        ([f"{FLOWS}:arithmetic", "-p", "n"], "expected -p NAME=VALUE"),
        ([f"{FLOWS}:arithmetic", "--params-file", str(tmp_path / "none.json")], "cannot read"),
    ]
    for args, message in cases:
        proc = legato("run", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert as_json(legato("runs", "ls", "--json")) == []


def test_unserializable_result_fails_the_run_cleanly(legato: Legato) -> None:
    proc = legato("run", f"{FLOWS}:unserializable", "-q")
    assert proc.returncode == 1
    assert "cannot be serialized" in proc.stderr
    [run] = as_json(legato("runs", "ls", "--json"))
    assert run["state"] == "FAILED" and "SerializationError" in run["error"]


def test_unwritable_result_storage_is_one_line(legato: Legato, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = legato(
        "run",
        f"{FLOWS}:arithmetic",
        "-p",
        "n=3",
        "-q",
        env={
            "LEGATO_RESULT_STORAGE": str(blocker / "results"),
            "LEGATO_INLINE_RESULT_MAX_BYTES": "1",
        },
    )
    assert proc.returncode == 1
    assert "cannot write a result to the result storage" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_database_from_a_newer_legato_is_refused_untouched(legato: Legato, home: Path) -> None:
    legato("run", f"{FLOWS}:arithmetic", "-p", "n=1")
    db = home / "legato.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = _dump(db)
    for args in (["runs", "ls"], ["run", f"{FLOWS}:arithmetic", "-p", "n=1"]):
        proc = legato(*args)
        assert proc.returncode == 2
        assert "newer Legato" in proc.stderr and "Traceback" not in proc.stderr
    assert _dump(db) == before  # same rows and schema (the file may be checkpointed)


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def test_paused_run_exits_3_and_is_answered_from_the_cli(legato: Legato) -> None:
    proc = legato("run", f"{FLOWS}:approval", "-p", "item=widget")
    assert proc.returncode == 3, proc.stderr
    assert "legato answer" in proc.stderr
    [question] = as_json(legato("asks", "ls", "--json"))
    assert question["prompt"] == "ship widget?" and question["state"] == "pending"
    refused = legato("answer", question["flow_run_id"], "perhaps")
    assert refused.returncode == 2 and "yes or no" in refused.stderr
    assert as_json(legato("runs", "ls", "--json"))[0]["state"] == "PAUSED"
    done = legato("answer", question["flow_run_id"], "yes", "--by", "qa-lead")
    assert done.returncode == 0, done.stderr
    run = as_json(legato("runs", "show", question["flow_run_id"], "--json"))
    assert run["state"] == "COMPLETED" and run["result"] == "shipped"
    [asked] = run["questions"]
    assert asked["answer"] is True and asked["answered_by"] == "qa-lead"
    assert as_json(legato("asks", "ls", "--json")) == []


def _wait_for(condition: Callable[[], bool], what: str, *, within: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds (a
    deadline for slow machines, not a delay: a passing run waits only as long as it must)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within:g} s"
        time.sleep(0.02)


def _task_started(proc: subprocess.Popen[str], gate: Path) -> int:
    """Wait until the gated task says it runs; return its process id."""

    def started() -> bool:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"`legato run` exited {proc.returncode} first: {err}")
        return (gate / "started").exists()

    _wait_for(started, "the task starting")
    return int((gate / "started").read_text())


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie, killed but not yet reaped, counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return Path("/proc/self").exists()  # ended since os.kill; no /proc: cannot tell
    return state in ("Z", "X")


@contextmanager
def _gated_run(home: Path, mark: Path, gate: Path) -> Iterator[subprocess.Popen[str]]:
    """`legato run` of the gated flow in the background. However the test ends, the run is
    ended, reaped and its pipes closed on the way out (a Popen left to the garbage collector
    warns, ResourceWarning made fatal here, in whichever later test collects it), and so is
    the task when the test failed."""
    gate.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update({"LEGATO_HOME": str(home), "MARK_FILE": str(mark), "GATE_DIR": str(gate)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", f"{FLOWS}:cancellable", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    except BaseException:
        started = gate / "started"
        if started.exists():  # the test failed: end the task too (a session of its own)
            with suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(started.read_text()), signal.SIGKILL)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes


def test_cancel_kills_the_running_task_and_retry_finishes_it(
    legato: Legato, home: Path, tmp_path: Path
) -> None:
    mark, gate = tmp_path / "mark.txt", tmp_path / "gate"
    with _gated_run(home, mark, gate) as proc:
        pid = _task_started(proc, gate)  # the task waits for the gate, shut for now
        [listed] = as_json(legato("runs", "ls", "--json"))
        run_id = listed["id"]
        cancelled = legato("runs", "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err  # the run did not complete
    _wait_for(lambda: _gone(pid), "the cancelled task's process ending")
    (gate / "go").touch()  # too late for the killed task: it can no longer write the mark
    assert not mark.exists(), "the cancelled task kept running"
    run = as_json(legato("runs", "show", run_id, "--json"))
    assert run["state"] == "CANCELLED"
    assert run["task_runs"][0]["state"] == "CANCELLED"
    again = legato("runs", "cancel", run_id)
    assert again.returncode == 2 and "already CANCELLED" in again.stderr
    env = {"MARK_FILE": str(mark), "GATE_DIR": str(gate)}  # the gate is open for the retry
    retried = legato("runs", "retry", run_id, "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    assert as_json(retried)["result"] == "done" and mark.read_text() == "written"


def test_db_upgrade_and_status(legato: Legato, home: Path) -> None:
    up = legato("db", "upgrade")
    assert up.returncode == 0, up.stderr
    status = legato("db", "status")
    from legato.store.schema import HEAD_REVISION

    assert f"schema revision: {HEAD_REVISION}" in status.stdout


def test_interrupt_is_not_a_traceback(legato: Legato, home: Path, tmp_path: Path) -> None:
    with _gated_run(home, tmp_path / "mark.txt", tmp_path / "gate") as proc:
        pid = _task_started(proc, tmp_path / "gate")  # the run is recorded, its task running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
    assert "Traceback" not in err
    [run] = as_json(legato("runs", "ls", "--json"))
    assert run["state"] == "CRASHED"  # resumable: `legato runs resume`
    _wait_for(lambda: _gone(pid), "the interrupted task's process ending")


def test_parser_errors_exit_2(legato: Legato) -> None:
    for args in (["bogus"], ["runs", "ls", "-n", "0"], ["runs"]):
        proc = legato(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
