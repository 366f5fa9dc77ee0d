"""What every peer's workload script shares: CLI, timing loop, one JSON line out.

A peer script defines one flow function per workload, `flow(n) -> int`, that runs the
whole flow once; `main` times only that call, after one untimed warm-up, and checks the
returned value so a peer that skipped work cannot look fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

WORKLOADS = ("sequential", "concurrent", "pipeline")
PIPELINE_STEPS = 7  # upload, extract, prelim_stats, qc, sync, transform, detailed_stats


def task_runs(workload: str, n: int) -> int:
    """How many task runs one flow of this workload makes."""
    return n * PIPELINE_STEPS if workload == "pipeline" else n


def expected(workload: str, n: int) -> int:
    """The value each peer's flow must return: a cheap check that the work really ran."""
    if workload == "sequential":
        return n  # 0 incremented n times
    if workload == "concurrent":
        return sum(range(1, n + 1))  # sum of i + 1
    return n * PIPELINE_STEPS  # count of finished task results


# Trivial task bodies, shared by every peer so only orchestration differs.
def inc(x: int) -> int:
    return x + 1


# The lab pipeline's seven steps: upload -> extract -> prelim_stats, upload -> qc,
# upload -> sync, extract -> transform -> detailed_stats.
def upload(item: int) -> int:
    return item


def extract(remote: int) -> int:
    return remote


def prelim_stats(extracted: int) -> int:
    return extracted


def qc(remote: int) -> int:
    return remote


def sync(remote: int) -> int:
    return remote


def transform(extracted: int) -> int:
    return extracted


def detailed_stats(transformed: int) -> int:
    return transformed


@contextmanager
def stdout_to_stderr() -> Iterator[int]:
    """Send everything (peer logs, child processes) to stderr; yield a fd for the JSON line.

    Works at the fd level because Prefect's log handlers and its server subprocess
    hold on to fd 1, not to `sys.stdout`.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(
    peer: str,
    flows: dict[str, Callable[[int], int]],
    fresh_state: Callable[[], None] = lambda: None,
) -> None:
    parser = argparse.ArgumentParser(description=f"{peer} benchmark workload")
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    run = flows[args.workload]
    times: list[float] = []
    with stdout_to_stderr() as out_fd:
        # Warm-up: imports, lazy initialisation, Prefect's temporary server start.
        fresh_state()
        warm_n = min(args.n, 20)
        _check(run(warm_n), args.workload, warm_n)
        for _ in range(args.reps):
            fresh_state()
            settle()
            start = time.perf_counter()
            result = run(args.n)
            times.append(time.perf_counter() - start)
            _check(result, args.workload, args.n)
        line = {"peer": peer, "workload": args.workload, "n": args.n, "times_s": times}
        os.write(out_fd, (json.dumps(line) + "\n").encode())


def _tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its live children (Linux /proc)."""
    total = sum(os.times()[:2])
    try:
        kids = Path(f"/proc/{os.getpid()}/task").glob("*/children")
        for pid in " ".join(k.read_text() for k in kids).split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass  # no /proc, or a child just exited: count what we saw
    return total


def settle(idle_share: float = 0.1, window_s: float = 0.25, max_s: float = 120.0) -> None:
    """Wait until this process tree is idle before a timed rep.

    Prefect's local server goes on recording events for seconds after a flow returns;
    without this, that backlog would be billed to the next rep. Idle means two quiet
    windows in a row, since such services flush in bursts.
    """
    start = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - start < max_s:
        before = _tree_cpu_s()
        time.sleep(window_s)
        quiet = quiet + 1 if _tree_cpu_s() - before < idle_share * window_s else 0
    waited = time.monotonic() - start
    if waited > 3 * window_s:
        print(f"[bench] waited {waited:.1f} s for background work to finish", file=sys.stderr)


def _check(result: int, workload: str, n: int) -> None:
    if result != expected(workload, n):
        raise SystemExit(
            f"{workload} n={n}: flow returned {result!r}, expected {expected(workload, n)}"
        )
