"""File-arrival triggers: a run per settled new file (or per batch), never twice for the same
file, incremental scans of large folders, and 1,000 files dropped while `legato serve` is
killed and restarted, each started exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from legato.models import Trigger
from legato.store import Store
from legato.triggers.files import FileWatcher, files_config, split_glob
from legato.triggers.setup import configure

from .conftest import Clock, deploy_flow


def _trigger(store: Store, folder: Path, *, batch: int = 1, settle: float = 5.0) -> None:
    store.put_trigger(
        Trigger(
            name="incoming",
            kind="files",
            deployment="process" if batch == 1 else "process_batch",
            config=files_config(f"{folder}/*.h5", batch=batch, settle=settle),
        )
    )


def _drop(folder: Path, name: str, *, age: float, clock: Clock, data: bytes = b"x") -> Path:
    path = folder / name
    path.write_bytes(data)
    os.utime(path, (clock.t - age, clock.t - age))
    return path


def _started(store: Store, deployment: str) -> list[Any]:
    runs = [r for r in store.list_flow_runs(limit=100_000) if r.deployment == deployment]
    return sorted(runs, key=lambda r: r.created_at)


def test_split_glob() -> None:
    assert split_glob("/data/in/*.h5") == ("/data/in", "*.h5")
    assert split_glob("/data/in/**/*.h5") == ("/data/in", "**/*.h5")
    assert split_glob("s3://bucket/in/*.csv") == ("s3://bucket/in", "*.csv")
    assert split_glob("/data/in/") == ("/data/in", "*")


def test_a_settled_new_file_starts_one_run_with_its_path(
    store: Store, flows_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    deploy_flow(store, flows_file, "process")
    _trigger(store, folder)
    clock = Clock(time.time())
    watcher = FileWatcher(store, now=clock)
    done = _drop(folder, "a.h5", age=60, clock=clock)
    growing = _drop(folder, "b.h5", age=1, clock=clock)  # written a second ago
    _drop(folder, "notes.txt", age=60, clock=clock)  # does not match
    assert watcher.tick() == 1
    assert watcher.tick() == 0  # never twice
    (run,) = _started(store, "process")
    assert run.parameters == {"path": str(done)}
    assert "new file" in (store.get_history(run.id)[0].message or "")
    # Still growing: appended to, mtime now; it starts once it has been quiet for 5 s.
    with growing.open("ab") as f:
        f.write(b"more")
    os.utime(growing, (clock.t, clock.t))
    clock.t += 3
    assert watcher.tick() == 0
    clock.t += 3
    assert watcher.tick() == 1
    assert [r.parameters["path"] for r in _started(store, "process")] == [str(done), str(growing)]
    # A restarted watcher (new process) starts nothing again ...
    assert FileWatcher(store, now=clock).tick() == 0
    # ... but a file rewritten later (new size and mtime) is a new file.
    done.write_bytes(b"rewritten")
    os.utime(done, (clock.t - 60, clock.t - 60))
    assert FileWatcher(store, now=clock).tick() == 1
    assert store.count_trigger_files("incoming") == 3


def test_batches_of_files_start_one_run_each(
    store: Store, flows_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    deploy_flow(store, flows_file, "process_batch")
    _trigger(store, folder, batch=4)
    clock = Clock(time.time())
    for i in range(10):
        _drop(folder, f"{i:02}.h5", age=60, clock=clock)
    assert FileWatcher(store, now=clock).tick() == 3  # 4 + 4 + the 2 left at the pass's end
    runs = _started(store, "process_batch")
    sizes = sorted(len(r.parameters["paths"]) for r in runs)
    assert sizes == [2, 4, 4]
    every = sorted(p for r in runs for p in r.parameters["paths"])
    assert every == sorted(str(folder / f"{i:02}.h5") for i in range(10))


def test_large_folders_are_scanned_a_slice_per_tick(
    store: Store, flows_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    deploy_flow(store, flows_file, "process")
    _trigger(store, folder, settle=0)
    for i in range(1000):
        (folder / f"{i:04}.h5").write_bytes(b"x")
    clock = Clock(time.time() + 10)
    watcher = FileWatcher(store, now=clock, scan_batch=300)
    counts = [watcher.tick() for _ in range(5)]
    assert counts == [300, 300, 300, 100, 0]  # the walk resumes where it stopped
    assert store.count_trigger_files("incoming") == 1000
    # Nothing changed in the folder: the next passes do not walk it again.
    assert watcher.tick() == 0
    (folder / "late.h5").write_bytes(b"x")
    assert sum(watcher.tick() for _ in range(5)) == 1  # a new pass, a slice per tick


def test_deploy_options_make_the_trigger_and_paused_triggers_wait(
    store: Store, flows_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    dep = deploy_flow(store, flows_file, "process")
    said = configure(store, dep, on_new_files=f"{folder}/*.h5", settle=0)
    assert "a run per file" in said[0]
    (trig,) = store.list_triggers("files")
    assert trig.name == "process-files"
    assert trig.config["parameter"] == "path"
    (folder / "x.h5").write_bytes(b"1")
    store.set_trigger_paused("process-files", True)
    clock = Clock(time.time() + 10)
    assert FileWatcher(store, now=clock).tick() == 0
    store.set_trigger_paused("process-files", False)
    assert FileWatcher(store, now=clock).tick() == 1


# -- 1,000 files while the server is killed and restarted -------------------------------------


def _serve(home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(home)
    with (home / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "legato", "serve", "--tick", "0.1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.slow
def test_1000_files_dropped_while_the_server_restarts_start_once_each(
    flows_file: Path, tmp_path: Path, legato_home: Path
) -> None:
    from legato.store import open_store

    folder = tmp_path / "incoming"
    folder.mkdir()
    store = open_store(f"sqlite:///{legato_home / 'legato.db'}")
    try:
        dep = deploy_flow(store, flows_file, "process")
        configure(store, dep, on_new_files=f"{folder}/*.h5", settle=0.2)
    finally:
        store.close()

    def drop_files() -> None:
        for i in range(1000):
            part = folder / f".{i:04}.h5.part"  # written aside, then renamed in
            part.write_bytes(b"x" * (i % 7 + 1))
            part.rename(folder / f"{i:04}.h5")
            if i % 50 == 0:
                time.sleep(0.12)

    writer = threading.Thread(target=drop_files)
    server = _serve(legato_home)
    writer.start()
    kills = 0
    try:
        for _ in range(3):  # kill -9 mid-work, restart at once
            time.sleep(0.9)
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            kills += 1
            server = _serve(legato_home)
        writer.join(60)
        db = legato_home / "legato.db"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with sqlite3.connect(db) as conn:
                (count,) = conn.execute("SELECT count(*) FROM trigger_files").fetchone()
            conn.close()
            if count >= 1000:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a few more passes: nothing more may start
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    assert kills == 3
    conn = sqlite3.connect(db)
    try:
        params = [
            json.loads(p)
            for (p,) in conn.execute(
                "SELECT parameters FROM flow_runs WHERE deployment = ?", ["process"]
            )
        ]
        recorded = conn.execute(
            "SELECT count(*), count(DISTINCT path) FROM trigger_files"
        ).fetchone()
    finally:
        conn.close()
    paths = [p["path"] for p in params]
    assert len(paths) == 1000, f"{len(paths)} runs for 1000 files"
    assert sorted(paths) == sorted(str(folder / f"{i:04}.h5") for i in range(1000))
    assert recorded == (1000, 1000)
