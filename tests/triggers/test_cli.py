"""The commands: legato deploy --cron/--every/--on-new-files, schedules, triggers, notify,
slack manifest, serve --once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from legato.cli import main
from legato.runtime import get_runtime


def legato(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_deploy_on_a_cron_schedule_and_manage_it(
    legato_home: Path, flows_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"{flows_file}:nightly"
    code, _, err = legato(
        capsys,
        "deploy",
        ref,
        "--name",
        "lab-pipeline",
        "--cron",
        "0 2 * * 1",
        "--tz",
        "Europe/Paris",
        "--catchup",
        "latest",
    )
    assert code == 0, err
    assert "cron '0 2 * * 1' (Europe/Paris), catch-up latest" in err
    code, out, _ = legato(capsys, "schedules", "ls", "--json")
    (sch,) = json.loads(out)
    assert sch["deployment"] == "lab-pipeline" and sch["timezone"] == "Europe/Paris"
    assert sch["next_at"] > time.time()
    assert legato(capsys, "schedules", "pause", "lab-pipeline")[0] == 0
    assert json.loads(legato(capsys, "schedules", "ls", "--json")[1])[0]["paused"] is True
    code, _, err = legato(capsys, "schedules", "pause", "lab-pipeline")
    assert code == 2 and "no active schedule" in err
    assert legato(capsys, "schedules", "resume", "lab-pipeline")[0] == 0
    # Re-deploying with --every replaces the schedule; a bad cron changes nothing.
    assert legato(capsys, "deploy", ref, "--name", "lab-pipeline", "--every", "3600")[0] == 0
    (sch,) = json.loads(legato(capsys, "schedules", "ls", "--json")[1])
    assert sch["every"] == 3600 and sch["cron"] is None
    code, _, err = legato(capsys, "deploy", ref, "--name", "other", "--cron", "61 * * * *")
    assert code == 2 and "bad cron expression" in err
    assert get_runtime().store.get_deployment("other") is None
    code, _, err = legato(
        capsys, "deploy", ref, "--name", "other", "--every", "5", "--tz", "Nowhere"
    )
    assert code == 2 and "unknown time zone" in err
    assert legato(capsys, "schedules", "rm", "lab-pipeline")[0] == 0
    assert json.loads(legato(capsys, "schedules", "ls", "--json")[1]) == []


def test_file_and_webhook_triggers_from_the_cli(
    legato_home: Path, flows_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    code, _, err = legato(
        capsys,
        "deploy",
        f"{flows_file}:process",
        "--name",
        "proc",
        "--on-new-files",
        f"{folder}/*.h5",
        "--settle",
        "0",
    )
    assert code == 0, err
    assert "a run per file" in err
    (folder / "a.h5").write_bytes(b"1")
    time.sleep(0.01)
    code, _, err = legato(capsys, "serve", "--once")
    assert code == 0 and "1 run(s) started" in err
    code, out, err = legato(
        capsys,
        "triggers",
        "webhook",
        "sample-ready",
        "--deployment",
        "proc",
        "--map",
        "path=file.path",
    )
    assert code == 0, err
    assert out.strip().startswith("whsec_")
    listed = json.loads(legato(capsys, "triggers", "ls", "--json")[1])
    assert {t["name"]: t["kind"] for t in listed} == {
        "proc-files": "files",
        "sample-ready": "webhook",
    }
    assert all(t["config"].get("secret") in (None, "***") for t in listed)
    assert legato(capsys, "triggers", "pause", "proc-files")[0] == 0
    assert legato(capsys, "triggers", "rm", "sample-ready")[0] == 0
    code, _, err = legato(capsys, "triggers", "rm", "sample-ready")
    assert code == 2 and "no trigger" in err


def test_notify_rules_and_the_slack_manifest(
    legato_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = legato(
        capsys,
        "notify",
        "add",
        "--on",
        "failed,crashed,paused",
        "--flow",
        "lab-pipeline",
        "slack:#lab-alerts",
        "--json",
    )
    assert code == 0, err
    rule = json.loads(out)
    assert rule["events"] == ["failed", "crashed", "paused"] and rule["flow"] == "lab-pipeline"
    code, _, err = legato(capsys, "notify", "add", "--on", "exploded", "slack:#x")
    assert code == 2 and "unknown event" in err
    code, _, err = legato(capsys, "notify", "add", "pager:123")
    assert code == 2 and "bad channel" in err
    assert len(json.loads(legato(capsys, "notify", "ls", "--json")[1])) == 1
    assert legato(capsys, "notify", "rm", rule["id"][:10])[0] == 0
    assert json.loads(legato(capsys, "notify", "ls", "--json")[1]) == []
    assert json.loads(legato(capsys, "notify", "log", "--json")[1]) == []
    code, out, _ = legato(capsys, "slack", "manifest", "--url", "https://legato.lab.org")
    assert code == 0
    assert json.loads(out)["features"]["slash_commands"][0]["command"] == "/legato"


def test_run_by_name_on_the_database_checks_the_recorded_schema(
    legato_home: Path, flows_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Embedded (no server): `legato run NAME` checks the parameters against the schema
    `legato deploy` recorded, queues nothing when one is bad, and records the start."""
    code, _, err = legato(capsys, "deploy", f"{flows_file}:from_hook", "--name", "hook")
    assert code == 0, err
    code, out, _ = legato(capsys, "deployments", "show", "hook")
    shown = json.loads(out)
    assert code == 0 and shown["parameter_schema"]["required"] == ["sample"]
    assert shown["parameter_schema"]["properties"]["threshold"]["type"] == "number"
    code, _, err = legato(capsys, "run", "hook", "-p", "sample=S1", "-p", "threshold=high")
    assert code == 2 and "parameter 'threshold'" in err, err
    code, _, err = legato(capsys, "run", "hook", "--no-wait")
    assert code == 2 and "parameter 'sample': missing" in err, err
    store = get_runtime().store
    assert store.list_flow_runs() == []
    code, out, err = legato(capsys, "run", "hook", "-p", "sample=17", "--no-wait", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert run["parameters"] == {"sample": "17", "threshold": 0.5}  # a str, by the schema
    assert [e.action for e in store.list_audit(action="deployment.start")] == ["deployment.start"]
    assert legato(capsys, "deployments", "show", "nope")[0] == 2
