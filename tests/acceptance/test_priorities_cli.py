"""Priorities from the command line: `legato run --priority`, `legato deploy --priority`,
and `legato pools ls` saying who waits in a pool, in the order it is served."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.conftest import Legato, as_json

FLOWS = Path(__file__).with_name("rerun_flows.py")


def test_run_and_deploy_priorities_and_who_waits(legato: Legato, tmp_path: Path) -> None:
    env = {"LEDGER": str(tmp_path / "ledger.txt")}
    ran = legato("run", f"{FLOWS}:recording", "-p", "i=1", "--priority", "7", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    shown = as_json(legato("runs", "show", as_json(ran)["id"], "--json"))
    assert shown["priority"] == 7
    assert {t["priority"] for t in shown["task_runs"]} == {7}

    deployed = legato(
        "deploy", f"{FLOWS}:week", "--name", "weekly", "--pool", "lab", "--priority", "4"
    )
    assert deployed.returncode == 0, deployed.stderr
    listed = legato("deployments", "ls")
    assert "PRIORITY" in listed.stdout and " 4 " in listed.stdout
    plain = legato("run", "weekly", "--no-wait", "--json")
    rushed = legato("run", "weekly", "--no-wait", "--priority", "9", "--json")
    assert plain.returncode == 0 and rushed.returncode == 0, plain.stderr + rushed.stderr
    assert as_json(plain)["priority"] == 4 and as_json(rushed)["priority"] == 9

    pools = legato("pools", "ls")
    assert pools.returncode == 0, pools.stderr
    waiting = pools.stdout[pools.stdout.index("waiting in lab") :].splitlines()[1:3]
    assert as_json(rushed)["id"] in waiting[0] and "priority 9" in waiting[0]
    assert as_json(plain)["id"] in waiting[1] and "priority 4" in waiting[1]
    [lab] = [p for p in as_json(legato("pools", "ls", "--json")) if p["pool"] == "lab"]
    assert [w["priority"] for w in lab["waiting"]] == [9, 4]

    refused = legato("run", f"{FLOWS}:recording", "-p", "i=1", "--priority", "500")
    assert refused.returncode == 2 and "--priority" in refused.stderr
