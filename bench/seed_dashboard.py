"""The dashboard at scale: seed 10,000 flow runs and ~80,000 task runs, then time every page.

    python bench/seed_dashboard.py [--db PATH] [--reps 7] [--no-browser]

What is seeded (bulk, through ``store.apply`` batches), over the last three days:
- 80 ``weekly`` runs mapping ``process_recording`` over their items: one over 2,000
  recordings, 79 over 100 (9,900 item runs); each item runs the 7-step pipeline (upload,
  extract, prelim_stats, qc_report, sync_db, transform, detailed_stats): 69,300 task runs,
  plus one map call per item in its parent (9,900). About 2% fail at extract, the newest
  items are still running, 50 are paused on a question.
- one ``big_pipeline`` run with 1,400 task runs (200 items x 7 chained steps), with logs;
- 19 ``adhoc`` runs. 10,000 flow runs in all.

Then `legato server start --no-auth` serves the database, each page is fetched ``--reps``
times with httpx (median reported, after one warm-up), and Chromium (Playwright, Debian's
/usr/bin/chromium) loads the 1,400-task-run page and the 2,000-item run page: time to the
load event. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from legato.models import (
    FlowRun,
    LogRecord,
    Question,
    State,
    TaskRun,
    Worker,
    new_id,
)
from legato.store import (
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    open_store,
)

STEPS = [
    ("upload", []),
    ("extract", ["upload"]),
    ("prelim_stats", ["extract"]),
    ("qc_report", ["upload"]),
    ("sync_db", ["upload"]),
    ("transform", ["extract"]),
    ("detailed_stats", ["transform"]),
]
POOLS = {
    "upload": "io",
    "extract": "gpu",
    "transform": "gpu",
    "prelim_stats": "cpu",
    "detailed_stats": "cpu",
}
SOURCE = "/lab/pipelines/weekly.py"


class Seeder:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.ops: list[Any] = []
        self.flow_runs = 0
        self.task_runs = 0
        self.rng = random.Random(7)

    def add(self, op: Any) -> None:
        self.ops.append(op)
        if len(self.ops) >= 5000:
            self.flush()

    def flush(self) -> None:
        if self.ops:
            self.store.apply(self.ops)
            self.ops = []

    def flow_run(self, **fields: Any) -> FlowRun:
        run = FlowRun(id=new_id(), source=SOURCE, **fields)
        self.add(InsertFlowRun(run))
        self.flow_runs += 1
        return run

    def task_run(self, **fields: Any) -> TaskRun:
        tr = TaskRun(id=new_id(), **fields)
        self.add(InsertTaskRun(tr))
        self.task_runs += 1
        return tr

    def item(self, parent: FlowRun, i: int, t: float, fate: str, path: str) -> State:
        """One recording: a child flow run and its 7 steps. ``fate``: ok|fail|running|paused."""
        call = self.task_run(
            flow_run_id=parent.id,
            task="process_recording",
            key=f"process_recording:0[{i}]",
            state=State.PENDING,
            created_at=t,
        )
        state = {
            "ok": State.COMPLETED,
            "fail": State.FAILED,
            "running": State.RUNNING,
            "paused": State.PAUSED,
        }[fate]
        child = self.flow_run(
            flow="process_recording",
            state=state,
            parameters={"path": path, "threshold": 0.5},
            parent_task_run_id=call.id,
            tags=["weekly"],
            created_at=t,
            started_at=t,
            ended_at=t + 3600 if state.is_final else None,
        )
        call.child_flow_run_id = child.id
        call.state = state
        ids: dict[str, str] = {}
        clock = t
        for step, deps in STEPS:
            s = State.COMPLETED
            error = None
            if fate == "fail" and step in (
                "extract",
                "prelim_stats",
                "transform",
                "detailed_stats",
            ):
                s = State.FAILED if step == "extract" else State.PENDING
                error = "RuntimeError: CUDA out of memory" if step == "extract" else None
            elif fate == "running" and step in ("transform", "detailed_stats"):
                s = State.RUNNING if step == "transform" else State.PENDING
            took = self.rng.uniform(30, 900)
            started = clock if s is not State.PENDING else None
            ended = clock + took if s in (State.COMPLETED, State.FAILED) else None
            tr = self.task_run(
                flow_run_id=child.id,
                task=step,
                key=f"{step}:0",
                state=s,
                attempts=0 if s is State.PENDING else (2 if s is State.FAILED else 1),
                max_attempts=3 if s is State.FAILED else 1,
                pool=POOLS.get(step),
                worker=f"{POOLS[step]}-box-1" if step in POOLS and started else None,
                depends_on=[ids[d] for d in deps],
                error=error,
                created_at=clock,
                started_at=started,
                ended_at=ended,
            )
            ids[step] = tr.id
            clock += took / 3
        self.add(
            InsertLogs([LogRecord(child.id, ids["upload"], t, 20, "legato", f"uploaded {path}")])
        )
        if fate == "paused":
            self.add(
                InsertQuestion(
                    Question(
                        id=new_id(),
                        flow_run_id=child.id,
                        key="ask:0",
                        prompt=f"QC of {path}: passed?",
                        schema={"type": "boolean"},
                        created_at=t + 10,
                    )
                )
            )
        return state


def seed(store: Any) -> dict[str, str]:
    s = Seeder(store)
    rng = s.rng
    start = time.time() - 3 * 86400
    t = start
    paused_left = 50
    found: dict[str, str] = {}
    sizes = [100] * 79
    sizes.insert(40, 2000)
    for p, size in enumerate(sizes):
        parent = s.flow_run(
            flow="weekly",
            state=State.RUNNING,
            parameters={"week": f"2025-W{p % 52 + 1:02d}", "n": size},
            tags=["nightly"] if p % 3 == 0 else [],
            created_at=t,
            started_at=t,
        )
        failed = 0
        for i in range(size):
            fate = "ok"
            roll = rng.random()
            if roll < 0.02:
                fate = "fail"
            elif p >= 75 and roll < 0.2:
                fate = "running"
            elif paused_left and roll < 0.03:
                fate = "paused"
                paused_left -= 1
            state = s.item(parent, i, t + i * 0.5, fate, f"/data/rec-{p}-{i}.h5")
            failed += state is State.FAILED
            if size == 2000 and i == 0:
                found["item"] = ""
        parent.state = State.FAILED if failed else State.COMPLETED
        if p >= 75:
            parent.state = State.RUNNING
        if size == 2000:
            found["items_2000"] = parent.id
            parent.state = State.RUNNING
        s.flush()
        # The parent's final state (a direct update; seeding only).
        store.transition_flow_run(
            parent.id, parent.state, allowed_from=[State.RUNNING], message="seeded"
        )
        t += 3 * 86400 / 110
    big = s.flow_run(
        flow="big_pipeline",
        state=State.RUNNING,
        parameters={"items": 200},
        created_at=t,
        started_at=t,
    )
    found["big"] = big.id
    logs: list[LogRecord] = []
    for i in range(200):
        prev: str | None = None
        for k, (step, _deps) in enumerate(STEPS):
            done = i < 150 or k < 3
            tr = s.task_run(
                flow_run_id=big.id,
                task=step,
                key=f"{step}:0[{i}]",
                state=State.COMPLETED if done else State.PENDING,
                attempts=1 if done else 0,
                pool=POOLS.get(step),
                worker=f"{POOLS[step]}-box-2" if step in POOLS and done else None,
                depends_on=[prev] if prev else [],
                created_at=t + i,
                started_at=t + i + k * 20 if done else None,
                ended_at=t + i + k * 20 + 15 if done else None,
            )
            prev = tr.id
            if done:
                logs.append(LogRecord(big.id, tr.id, t + i + k * 20, 20, "legato", f"{step} ok"))
                logs.append(LogRecord(big.id, tr.id, t + i + k * 20 + 1, 10, "legato", "detail"))
    s.add(InsertLogs(logs))
    for j in range(19):
        s.flow_run(
            flow="adhoc",
            state=State.COMPLETED if j % 4 else State.FAILED,
            parameters={"j": j},
            error=None if j % 4 else "ValueError: bad input",
            created_at=t + 100 + j,
            started_at=t + 100 + j,
            ended_at=t + 160 + j,
        )
    s.flush()
    for name, pool in (("gpu-box-1", "gpu"), ("cpu-box-1", "cpu"), ("io-box-1", "io")):
        store.register_worker(
            Worker(
                id=new_id(),
                name=name,
                pool=pool,
                capacity={"gpu": 2} if pool == "gpu" else {"cpu": 16},
                host=name,
                started_at=time.time(),
                last_heartbeat=time.time(),
            )
        )
    items = store.list_flow_runs(flow="process_recording", limit=1)
    found["item"] = items[0].id
    found["counts"] = f"{s.flow_runs} flow runs, {s.task_runs} task runs"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_pages(url: str, pages: dict[str, str], reps: int) -> dict[str, tuple[float, int]]:
    import httpx

    out: dict[str, tuple[float, int]] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, path in pages.items():
            client.get(path)  # warm-up
            times = []
            size = 0
            for _ in range(reps):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                size = len(r.content)
            out[name] = (statistics.median(times), size)
    return out


def time_browser(url: str, pages: dict[str, str], reps: int = 3) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for name, path in pages.items():
            times = []
            for _ in range(reps):
                page.goto(url + path, wait_until="load")
                took = page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return n.loadEventEnd - n.startTime; }"
                )
                times.append(float(took) / 1000)
            out[name] = statistics.median(times)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="SQLite file to seed (default: a new temporary one)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    db = Path(args.db or Path(tempfile.mkdtemp(prefix="legato-dash-")) / "dash.db")
    url = f"sqlite:///{db}"
    store = open_store(url)
    t0 = time.perf_counter()
    found = seed(store)
    seeded = time.perf_counter() - t0
    store.close()
    print(f"seeded {found['counts']} into {db} in {seeded:.1f} s")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_DATABASE_URL=url, LEGATO_HOME=str(db.parent))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legato",
            "server",
            "start",
            "--no-auth",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        big, items, item = found["big"], found["items_2000"], found["item"]
        pages = {
            "runs, first page": "/",
            "runs incl. children, page 150": "/?children=1&page=150",
            "runs: state=FAILED, children": "/?state=FAILED&children=1",
            "runs: flow + last 7 days": "/?flow=process_recording&children=1&range=7d",
            "runs: tag=nightly": "/?tag=nightly",
            "runs: text search": "/?q=rec-40-1999&children=1",
            "run with 1,400 task runs": f"/runs/{big}",
            "  its live fragment (polled)": f"/runs/{big}/live",
            "  its logs fragment (polled)": f"/runs/{big}/logs",
            "run mapping 2,000 items": f"/runs/{items}",
            "items x steps of 2,000 items": f"/runs/{items}/items",
            "one item run": f"/runs/{item}",
            "questions (50 pending)": "/questions",
            "pools and workers": "/pools",
        }
        timed = time_pages(base, pages, args.reps)
        print(f"\n{'page':<36} {'median':>9} {'size':>9}")
        for name, (took, size) in timed.items():
            print(f"{name:<36} {took * 1000:>7.0f} ms {size / 1024:>7.0f} KB")
        if not args.no_browser:
            loads = time_browser(
                base,
                {
                    "run with 1,400 task runs": f"/runs/{big}",
                    "items of 2,000": f"/runs/{items}/items",
                    "run mapping 2,000 items": f"/runs/{items}",
                },
            )
            print(f"\n{'Chromium, to the load event':<36} {'median':>9}")
            for name, took in loads.items():
                print(f"{name:<36} {took * 1000:>7.0f} ms")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
