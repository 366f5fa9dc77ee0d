"""The README's five-minute tour, run verbatim on a machine with no GPU: its pipeline.py as
written there, each of its commands through bash as written there (RUN_ID replaced by the
weekly run's id), with the exit codes the tour promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).parents[2] / "README.md").read_text()
TOUR = README[README.index("## A five-minute tour") : README.index("## When things go wrong")]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", TOUR, flags=re.DOTALL)


def test_the_tour_works_verbatim_without_a_gpu(tmp_path: Path) -> None:
    [code] = _blocks("python")
    [commands] = _blocks("bash")
    (tmp_path / "pipeline.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGATO_", "CUDA_"))}
    env |= {"LEGATO_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    venv_bin = Path(sys.executable).parent  # where `legato` is installed beside pytest
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    shell = ["set -u"]  # one bash, as a person types them: the export holds for what follows

    def bash(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", "\n".join([*shell, line])],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def weekly() -> dict[str, str]:
        [run] = [
            r for r in json.loads(bash("legato runs ls --json").stdout) if r["flow"] == "weekly"
        ]
        return dict(run)

    lines = [ln.split("  #")[0].strip() for ln in commands.splitlines() if ln.strip()]
    assert lines[0].startswith("export LEGATO_RESOURCES=")
    codes: list[tuple[str, int]] = []
    for line in lines:
        typed = line.replace("RUN_ID", weekly()["id"]) if "RUN_ID" in line else line
        codes.append((line, bash(typed).returncode))
        if line.startswith("export"):
            shell.append(line)
    # export, run (paused: 3), ls, show (of a paused run: 3), logs, asks, the two answers
    expected = [0, 3, 0, 3, 0, 0, 3, 0]
    assert [c for _, c in codes] == expected, codes
    assert weekly()["state"] == "COMPLETED"


def test_without_the_export_the_pause_says_a_task_already_failed(tmp_path: Path) -> None:
    """The tour's trap on a machine with no GPU, made visible: the run pauses on its questions
    although `extract` already failed, and `legato run`, the logs, `answer` and the dashboard
    say so; answering then ends the run FAILED without any refused state change."""
    import httpx

    from legato.store import open_store
    from legato.store.sql import SqlStore
    from tests.live_server import LiveServer

    [code] = _blocks("python")
    (tmp_path / "pipeline.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGATO_", "CUDA_"))}
    env |= {"LEGATO_HOME": str(tmp_path / "home"), "COLUMNS": "200", "LEGATO_RESOURCES": "gpu=0"}

    def legato(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "legato", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ran = legato("run", "pipeline.py:weekly", "-p", 'paths=["a.h5","b.h5"]')
    assert ran.returncode == 3
    assert "waiting for 2 answers" in ran.stderr
    assert "2 task run(s) had already failed" in ran.stderr
    assert ran.stderr.count("extract:0 in flow run") == 2 and "NoWorkerForPool" in ran.stderr
    [weekly] = [
        r for r in json.loads(legato("runs", "ls", "--json").stdout) if r["flow"] == "weekly"
    ]
    logs = legato("runs", "logs", weekly["id"], "--json")
    where = {e["key"] for e in json.loads(logs.stdout)}
    assert {"process_recording:0[0] / extract:0", "process_recording:0[1] / extract:0"} <= where
    several = legato("answer", weekly["id"], "yes")
    assert several.returncode == 2 and "--item (" in several.stderr
    assert "process_recording:0[0]" in several.stderr

    store = open_store(f"sqlite:///{tmp_path / 'home' / 'legato.db'}")
    assert isinstance(store, SqlStore)
    live = LiveServer(store, auth=False)
    try:
        page = httpx.get(f"{live.url}/runs/{weekly['id']}", timeout=30).text
        assert "Waiting for 2 answers in its child runs" in page
        assert "process_recording:0[1]" in page
        assert "task run(s) had already failed" in page and "NoWorkerForPool" in page
    finally:
        live.stop()
        store.close()

    first = legato("answer", weekly["id"], "yes", "--item", "process_recording:0[0]")
    assert first.returncode == 3 and "refused" not in first.stderr, first.stderr
    second = legato("answer", weekly["id"], "no", "--item", "1")
    assert second.returncode == 1 and "refused" not in second.stderr, second.stderr
