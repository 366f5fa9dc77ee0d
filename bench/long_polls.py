"""Long-polls through a real `legato server start` over SQLite: how soon a waiting client is
woken, and how /health answers while one token holds hundreds of waits open.

    python bench/long_polls.py [--wakes 50] [--storm 300]

Wake-up latency: a client blocked in ``wait_for_queue`` (HttpStore, as a worker's watcher),
another queueing one task run at a time through the API; from just before the queueing
request to the waiter's return. Then ``--storm`` long-polls (30 s) from one runner token,
and /health probed one request after another meanwhile. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _token(env: dict[str, str], role: str) -> str:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "legato",
            "tokens",
            "create",
            "--name",
            f"bench-{role}",
            "--role",
            role,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def wake_latency(url: str, token: str, n: int) -> list[float]:
    from legato.models import FlowRun, State, TaskRun, new_id
    from legato.store import InsertFlowRun, InsertTaskRun
    from legato.store.http import HttpStore

    waiter, producer = HttpStore(url, token), HttpStore(url, token)
    run = FlowRun(new_id(), "bench", State.RUNNING, created_at=time.time())
    producer.apply([InsertFlowRun(run)])
    took: list[float] = []
    for i in range(n):
        seen = waiter.queue_versions(["bench"])
        woke = threading.Event()

        def wait(seen: dict[str, int] = seen, woke: threading.Event = woke) -> None:
            if waiter.wait_for_queue(seen, 30):
                woke.set()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.05)  # let the wait reach the server (not measured)
        started = time.monotonic()
        tr = TaskRun(
            new_id(),
            run.id,
            "t",
            f"t:{i}",
            State.PENDING,
            pool="bench",
            created_at=time.time(),
            queued_at=time.time(),
        )
        producer.apply([InsertTaskRun(tr)])
        thread.join(30)
        if woke.is_set():
            took.append(time.monotonic() - started)
    waiter.close()
    producer.close()
    return took


async def storm(url: str, token: str, n: int) -> tuple[dict[int, int], list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=n + 10)
    body = {"seen": {"queue:nobody": 0}, "timeout": 30}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=90, limits=limits) as c:
        polls = [asyncio.ensure_future(c.post("/api/v1/queues/wait", json=body)) for _ in range(n)]
        await asyncio.sleep(2)  # let the storm arrive before probing
        took: list[float] = []
        async with httpx.AsyncClient(base_url=url, timeout=90) as probe:
            for _ in range(20):
                started = time.monotonic()
                await probe.get("/health")
                took.append(time.monotonic() - started)
        statuses: dict[int, int] = {}
        for poll in polls:
            poll.cancel()
        for got in await asyncio.gather(*polls, return_exceptions=True):
            if isinstance(got, httpx.Response):
                statuses[got.status_code] = statuses.get(got.status_code, 0) + 1
        return statuses, took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wakes", type=int, default=50)
    parser.add_argument("--storm", type=int, default=300)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="legato-bench-polls-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env |= {"LEGATO_HOME": str(home), "LEGATO_DATABASE_URL": f"sqlite:///{home / 'db.sqlite'}"}
    subprocess.run(
        [sys.executable, "-m", "legato", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    runner = _token(env, "runner")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "legato",
            "server",
            "start",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        took = sorted(wake_latency(url, runner, args.wakes))
        print(
            f"wake-up: {len(took)} wakes, median {statistics.median(took) * 1000:.1f} ms, "
            f"p90 {took[int(len(took) * 0.9)] * 1000:.1f} ms"
        )
        statuses, health = asyncio.run(storm(url, runner, args.storm))
        print(
            f"/health with {args.storm} long-polls open from one token: median "
            f"{statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms; "
            f"answered meanwhile: {statuses or 'none'}"
        )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
