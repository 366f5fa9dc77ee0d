"""`legato runs rerun` on the database itself: a dry run changes nothing, a rerun runs the
chosen step of the chosen items and what depends on it, and is in the audit log."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import Legato, as_json

FLOWS = Path(__file__).with_name("rerun_flows.py")


def test_rerun_a_step_of_two_items_from_the_cli(legato: Legato, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    env = {"LEDGER": str(ledger)}
    ran = legato("run", f"{FLOWS}:week", "-p", "n=3", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = as_json(ran)["id"]
    ledger.write_text("")

    dry = legato("runs", "rerun", run_id, "--from", "extract", "--item", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would rerun 1 call (recording:0[1] / extract:0)" in dry.stderr
    assert "recording:0[1] / qc:0" in dry.stderr
    assert ledger.read_text() == ""  # nothing ran

    rerun = legato(
        *("runs", "rerun", run_id, "--from", "extract", "--item", "1", "--item", "2", "--json"),
        env=env,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "rerunning 2 calls" in rerun.stderr
    assert as_json(rerun)["state"] == "COMPLETED"
    assert sorted(ledger.read_text().split("\n")[:-1]) == [
        "extract 1",
        "extract 2",
        "qc 10",
        "qc 20",
        "summary",
    ]
    shown = as_json(legato("runs", "show", run_id, "--json"))
    old = [t for t in shown["task_runs"] if t["superseded_at"]]
    moved = {t["key"].split("@")[0] for t in old}
    assert moved == {"recording:0[1]", "recording:0[2]", "summary:0"}
    assert all(t["rerun_by"].startswith("local:") for t in old)
    audit = legato("audit", "ls")
    assert "run.rerun" in audit.stdout and run_id in audit.stdout

    missing = legato("runs", "rerun", run_id, "--from", "nope")
    assert missing.returncode == 2 and "no call has key or task 'nope'" in missing.stderr
    bad_state = legato("runs", "rerun", run_id, "--from", "qc", "--state", "sideways")
    assert bad_state.returncode == 2 and "--state takes one of" in bad_state.stderr


def test_rerun_through_a_server_is_queued_for_the_runs_pool(
    legato: Legato, home: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.acceptance.test_server import server

    ledger = tmp_path / "ledger.txt"
    runner = legato("tokens", "create", "--name", "flows", "--role", "runner").stdout.strip()
    operator = legato("tokens", "create", "--name", "ana", "--role", "operator").stdout.strip()
    with server(home) as (url, _proc):
        as_runner = {
            "LEGATO_API_URL": url,
            "LEGATO_API_TOKEN": runner,
            "LEDGER": str(ledger),
            "LEGATO_RESULT_STORAGE": str(home / "results"),  # shared, as on several machines
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        env.update(as_runner, LEGATO_HOME=str(tmp_path / "worker-home"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "legato", "worker", "start", "--pool", "default"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ran = legato("run", f"{FLOWS}:week", "-p", "n=2", "--json", env=as_runner)
            assert ran.returncode == 0, ran.stderr
            run_id = as_json(ran)["id"]
            ledger.write_text("")
            as_operator = {"LEGATO_API_URL": url, "LEGATO_API_TOKEN": operator}
            rerun = legato(
                "runs", "rerun", run_id, "--from", "extract", "--item", "1", env=as_operator
            )
            assert rerun.returncode == 0, rerun.stderr
            assert "queued for pool default" in rerun.stderr
            deadline = time.monotonic() + 90
            while True:  # the worker replays it: wait for the run to end again
                shown = as_json(legato("runs", "show", run_id, "--json", env=as_operator))
                if shown["state"] == "COMPLETED" and "summary" in ledger.read_text():
                    break
                assert shown["state"] not in ("FAILED", "CRASHED"), shown
                assert time.monotonic() < deadline, f"still {shown['state']}"
                time.sleep(0.2)
        finally:
            worker.kill()
            worker.wait(10)
    assert sorted(ledger.read_text().split()) == sorted(["extract", "1", "qc", "10", "summary"])
    old = [t for t in shown["task_runs"] if t["superseded_at"]]
    assert {t["rerun_by"] for t in old} == {"ana"}  # the token's name, recorded by the server
    audit = as_json(legato("audit", "ls", "--action", "run.rerun", "--json"))
    assert [(e["actor"], e["target"]) for e in audit] == [("ana", run_id)]
