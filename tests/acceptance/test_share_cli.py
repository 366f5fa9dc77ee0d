"""`legato share` as a user runs it, in embedded mode and through a server, and
``legato.share()`` from a flow: the link printed is the one a server then serves."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from legato.models import Role
from legato.store import open_store
from legato.store.sql import SqlStore
from tests.acceptance.conftest import Legato, as_json
from tests.live_server import LiveServer

FLOW = """
import legato

@legato.task
def measure(n: int) -> bytes:
    return bytes(range(256)) * n

@legato.flow
def report() -> str:
    data = measure(400)
    legato.artifact.markdown("# Session QC\\nframes: 9000", title="QC")
    return legato.share(results=True, note="for the collaborators")

if __name__ == "__main__":
    print("LINK", report())
"""


def _run_flow(home: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    script = tmp_path / "report.py"
    script.write_text(textwrap.dedent(FLOW))
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={"LEGATO_HOME": str(home), "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("LINK ")[1].strip()


def test_share_create_ls_revoke_in_embedded_mode(
    legato: Legato, home: Path, tmp_path: Path
) -> None:
    link = _run_flow(home, tmp_path, {"LEGATO_PUBLIC_URL": "https://legato.lab.example"})
    assert link.startswith("https://legato.lab.example/s/lgs_")
    runs = as_json(legato("runs", "ls", "--json"))
    run_id = runs[0]["id"]
    made = legato("share", "create", run_id, "--artifacts", "--expires", "2d", "--note", "hi")
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:8787/s/lgs_")
    assert "live while `legato server start`" in made.stderr
    as_js = as_json(legato("share", "create", run_id, "--results", "--json"))
    assert set(as_js) == {"id", "url", "expires_at", "items"}
    assert as_js["items"] == [{"kind": "results", "path": None}]
    listed = as_json(legato("share", "ls", "--json"))
    assert len(listed) == 3 and {s["state"] for s in listed} == {"live"}
    assert listed[-1]["created_by"] == "flow:report"
    refused = legato("share", "create", run_id, "--path", str(tmp_path))
    assert refused.returncode == 2 and "outside the folders" in refused.stderr
    too_long = legato("share", "create", run_id, "--expires", "400d")
    assert too_long.returncode == 2 and "90 days" in too_long.stderr
    gone = legato("share", "revoke", as_js["id"])
    assert gone.returncode == 0, gone.stderr
    states = {s["id"]: s["state"] for s in as_json(legato("share", "ls", "--json"))}
    assert states[as_js["id"]] == "revoked"
    audit = as_json(legato("audit", "ls", "--json"))
    actions = [e["action"] for e in audit]
    assert actions.count("share.create") == 3 and "share.revoke" in actions

    # The server on this database serves the links the CLI and the flow made.
    store = open_store(f"sqlite:///{home / 'legato.db'}")
    assert isinstance(store, SqlStore)
    live = LiveServer(store, result_storage=str(home / "results"))
    try:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            page = c.get("/s/" + link.rsplit("/s/", 1)[1])
            assert page.status_code == 200 and "for the collaborators" in page.text
            assert c.get("/s/" + url.rsplit("/s/", 1)[1]).text.count("Session QC") == 1
            assert c.get("/s/" + as_js["url"].rsplit("/s/", 1)[1]).status_code == 410
        accesses = legato("share", "accesses", listed[-1]["id"], "--json")
        assert [a["item"] for a in json.loads(accesses.stdout)] == ["page"]
    finally:
        live.stop()
        store.close()


def test_share_through_the_servers_api(legato: Legato, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    live = LiveServer(store, result_storage=str(tmp_path / "results"))
    try:
        secret = store.create_token("lab-operator", Role.OPERATOR)[1]
        api = {"LEGATO_API_URL": live.url, "LEGATO_API_TOKEN": secret}
        runner = store.create_token("lab-runner", Role.RUNNER)[1]
        results = str(tmp_path / "results")
        flow_env = {**api, "LEGATO_API_TOKEN": runner, "LEGATO_RESULT_STORAGE": results}
        link = _run_flow(tmp_path / "flows-home", tmp_path, flow_env)  # through the server
        assert link.startswith(live.url + "/s/lgs_")
        run_id = store.list_flow_runs()[0].id
        made = as_json(legato("share", "create", run_id, "--results", "--json", env=api))
        assert made["url"].startswith(live.url + "/s/lgs_")
        listed = as_json(legato("share", "ls", "--json", env=api))
        assert [s["created_by"] for s in listed] == ["lab-operator", "lab-runner"]
        with httpx.Client(timeout=30) as c:
            page = c.get(made["url"])
        assert page.status_code == 200 and "measure" in page.text
        assert legato("share", "revoke", made["id"], env=api).returncode == 0
        audit = store.list_audit(action="share.")
        assert [e.action for e in reversed(audit)][:2] == ["share.create", "share.create"]
        assert {e.actor for e in audit if e.action == "share.create"} == {
            "lab-operator",
            "lab-runner",
        }
    finally:
        live.stop()
        store.close()
