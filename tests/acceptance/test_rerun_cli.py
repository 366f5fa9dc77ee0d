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
