"""The flagship in server mode: `legato server start` on PostgreSQL, workers for the io, cpu,
gpu and flows pools talking to it over HTTP with a runner token, the lab's tables in a
PostgreSQL database of their own. Five recordings: the .slp files open with sleap-io, poses
are within the error threshold, the flagged recording waits for an answer, the lab's rows
exist exactly once after a second run, the share link serves the files, and the week has
its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legato.loader import load_module
from legato.models import State
from tests import lab_checks as check
from tests.acceptance.test_server import server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab_pipeline"
POOLS = (("io", "cpu=2"), ("cpu", "cpu=2"), ("gpu", "gpu=2"), ("flows", "cpu=4"))


class Site:
    """A server, its workers, and the environment each kind of client uses."""

    def __init__(self, tmp: Path, database: str, lab_database: str) -> None:
        self.tmp = tmp
        self.remote = tmp / "remote-storage"
        self.base = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        self.base.update(
            LEGATO_DATABASE_URL=database,
            LAB_DATABASE_URL=lab_database,
            LAB_REMOTE_STORAGE=str(self.remote),
            LEGATO_RESULT_STORAGE=str(tmp / "results"),  # shared, as on several machines
            LEGATO_SHARE_ROOTS=str(self.remote),
            COLUMNS="200",
        )
        self.server_home = tmp / "server-home"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.runner = ""
        self.operator = ""

    def legato(self, *args: str, client: bool = True, timeout: float = 300) -> Any:
        env = dict(self.base, LEGATO_HOME=str(self.server_home))
        if client:
            env.update(LEGATO_API_URL=self.url, LEGATO_API_TOKEN=self.runner)
            env.pop("LEGATO_DATABASE_URL")
        return subprocess.run(
            [sys.executable, "-m", "legato", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_workers(self) -> None:
        for pool, resources in POOLS:
            env = dict(self.base, LEGATO_API_URL=self.url, LEGATO_API_TOKEN=self.runner)
            env.pop("LEGATO_DATABASE_URL")
            env["LEGATO_HOME"] = str(self.tmp / f"worker-{pool}")
            log = (self.tmp / f"worker-{pool}.log").open("ab")
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "legato",
                        "worker",
                        "start",
                        "--pool",
                        pool,
                        "--name",
                        f"{pool}-box",
                        "--resources",
                        resources,
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(30)

    def run_week(self, incoming: Path) -> Any:
        ran = self.legato(
            "run", f"{EXAMPLE / 'pipeline.py'}:lab_pipeline", "-p", f"incoming={incoming}",
            "--json",
        )  # fmt: skip
        assert ran.returncode == 3, ran.stderr  # paused: the flagged recording waits
        return json.loads(ran.stdout)

    def answer_the_question(self, value: str) -> None:
        asks = self.legato("asks", "ls", "--json")
        [question] = json.loads(asks.stdout)
        assert "rec-003" in question["prompt"], question
        answered = subprocess.run(
            [sys.executable, "-m", "legato", "answer", question["flow_run_id"], value],
            env=dict(self.base, LEGATO_API_URL=self.url, LEGATO_API_TOKEN=self.operator,
                     LEGATO_HOME=str(self.server_home)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert answered.returncode == 0, answered.stderr

    def wait_until_ended(self, store: Any, run_id: str, timeout: float = 300) -> Any:
        """The parent resumes on the flows pool's worker once its child is answered."""
        deadline = time.monotonic() + timeout
        while True:
            run = store.get_flow_run(run_id)
            if run.state.is_final:
                return run
            assert time.monotonic() < deadline, f"still {run.state}; see {self.tmp}"
            time.sleep(0.3)


@pytest.fixture
def site(
    postgres_server: Any, tmp_path: Path, legato_home: Path, monkeypatch: Any
) -> Iterator[Site]:
    pytest.importorskip("sleap_io")  # the `demo` extra; `make test` installs it
    made = Site(tmp_path, postgres_server.create_database(), postgres_server.create_database())
    assert made.legato("db", "upgrade", client=False).returncode == 0
    made.runner = made.legato(
        "tokens", "create", "--name", "lab-runner", "--role", "runner", client=False
    ).stdout.strip()
    made.operator = made.legato(
        "tokens", "create", "--name", "lab-lead", "--role", "operator", client=False
    ).stdout.strip()
    # This test reads the store directly, as the server does (never through a worker).
    monkeypatch.setenv("LEGATO_DATABASE_URL", made.base["LEGATO_DATABASE_URL"])
    monkeypatch.setenv("LEGATO_RESULT_STORAGE", made.base["LEGATO_RESULT_STORAGE"])
    with server(made.server_home, env=made.base) as (url, _proc):
        made.url = url
        made.start_workers()
        try:
            yield made
        finally:
            made.stop()


@pytest.mark.timeout(900)
def test_five_recordings_through_a_server_and_workers(site: Site, tmp_path: Path) -> None:
    from legato.runtime import get_runtime

    incoming = tmp_path / "acquisition"
    load_module(str(EXAMPLE / "generate.py")).generate(incoming, 5, noisy=(3,))
    week = site.run_week(incoming)
    site.answer_the_question("yes")
    rt = get_runtime()
    parent = site.wait_until_ended(rt.store, week["id"])
    assert parent.state is State.COMPLETED, parent.error
    assert rt.results.decode(parent.result) == {
        "processed": 5, "kept": 5, "rejected": 0, "flagged": ["rec-003"],
    }  # fmt: skip
    children, results = check.finished_children(rt.store, rt.results, 5)
    check.slp_files_open_with_sleap_io(results)
    check.poses_are_within_the_error_threshold(results)
    check.each_recording_has_its_qc_figures(rt.store, children)
    check.the_week_has_its_summary(rt.store, parent, 5)
    check.the_share_link_serves_the_files(rt.store, children[0], site.url)
    tasks = [t for c in children for t in rt.store.get_task_runs(c.id)]
    assert {t.task for t in tasks} == check.STEPS
    placed = {t.task: t.worker for t in tasks if t.task in ("upload", "extract_poses")}
    assert placed == {"upload": "io-box", "extract_poses": "gpu-box"}, placed

    lab = site.base["LAB_DATABASE_URL"]
    before = _rows(lab)
    assert before["recordings"] == 5 and before["qc_verdicts"] == 5 and before["sessions"] == 3
    # Again, over the same recordings: the rows are updated, never duplicated.
    again = site.run_week(incoming)
    site.answer_the_question("no")
    second = site.wait_until_ended(rt.store, again["id"])
    assert rt.results.decode(second.result)["rejected"] == 1
    assert _rows(lab) == before
    assert _verdict(lab, "rec-003") == "rejected"


def _rows(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in check.TABLES}  # type: ignore[index]


def _verdict(url: str, recording: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT verdict FROM qc_verdicts WHERE recording = %s", (recording,))
        return str(row.fetchone()[0])  # type: ignore[index]
