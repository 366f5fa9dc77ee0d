"""Run Legato and its peers side by side; print per-task overhead and ratios.

    python bench/run.py [--quick] [--workloads sequential pipeline] [--peers legato prefect]
                        [--n N] [--reps R]

Each peer runs in its own interpreter (see peers.py) as a subprocess that prints one JSON
line; its stderr goes to bench/results/<peer>-<workload>.log. Results: bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import peers
from workloads._common import WORKLOADS, task_runs

RESULTS = peers.BENCH / "results"
DEFAULT_N = {
    "sequential": 1000,
    "concurrent": 1000,
    "pipeline": 200,
}  # pipeline: items, 7 tasks each
GUARD_S = 3600  # not a timing check: only stops a hung peer from blocking the run forever
RATIOS = (("prefect", "legato"), ("dask", "legato"), ("legato", "threads"))


def _names(values: list[str], allowed: tuple[str, ...]) -> list[str]:
    """Accept `a b` and `a,b` alike; refuse unknown names with the list of known ones."""
    names = [v for value in values for v in value.split(",") if v]
    for name in names:
        if name not in allowed:
            raise SystemExit(f"unknown name {name!r}: choose from {', '.join(allowed)}")
    return names


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), help=", ".join(WORKLOADS))
    p.add_argument("--peers", nargs="+", default=list(peers.PEERS), help=", ".join(peers.PEERS))
    p.add_argument(
        "--n",
        type=int,
        help="tasks (sequential, concurrent) or items (pipeline); default 1000/1000/200",
    )
    p.add_argument("--reps", type=int, help="timed reps per peer and workload (default 5)")
    p.add_argument("--quick", action="store_true", help="n=200, reps=3")
    args = p.parse_args()
    args.workloads = _names(args.workloads, WORKLOADS)
    args.peers = _names(args.peers, peers.PEERS)
    args.reps = args.reps or (3 if args.quick else 5)
    return args


def run_one(python: Path, peer: str, workload: str, n: int, reps: int) -> dict[str, Any]:
    script = peers.BENCH / "workloads" / f"{peer.replace('-', '_')}.py"
    cmd = [str(python), str(script), "--workload", workload, "--n", str(n), "--reps", str(reps)]
    log = RESULTS / f"{peer}-{workload}.log"
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=GUARD_S)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(
            f"{peer} {workload} exited {proc.returncode}; end of {log.name}:\n{tail}"
        )
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row["task_runs"] = task_runs(workload, n)
    row["median_s"] = statistics.median(row["times_s"])
    row["ms_per_task"] = 1000 * row["median_s"] / row["task_runs"]
    return row


def ratios(rows: list[dict[str, Any]], workloads: list[str]) -> dict[str, dict[str, float]]:
    per = {(r["peer"], r["workload"]): r["ms_per_task"] for r in rows}
    out: dict[str, dict[str, float]] = {}
    for w in workloads:
        for a, b in RATIOS:
            if (a, w) in per and (b, w) in per and per[(b, w)] > 0:
                out.setdefault(w, {})[f"{a}/{b}"] = per[(a, w)] / per[(b, w)]
    return out


def print_report(rows: list[dict[str, Any]], ratio: dict[str, dict[str, float]]) -> None:
    head = ("workload", "peer", "n", "task runs", "median s", "ms/task")
    lines = [head] + [
        (
            r["workload"],
            r["peer"],
            str(r["n"]),
            str(r["task_runs"]),
            f"{r['median_s']:.3f}",
            f"{r['ms_per_task']:.4f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for line in lines:
        print(
            "  ".join(
                cell.rjust(w) if i >= 2 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    print()
    for w, pairs in ratio.items():
        print(f"{w}: " + ", ".join(f"{k} = {v:.1f}x" for k, v in pairs.items()))


def main() -> None:
    args = parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pythons: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for peer in args.peers:
        try:
            pythons[peer] = peers.ensure_venv(peer)
        except (RuntimeError, subprocess.CalledProcessError) as err:
            skipped[peer] = str(err)
            print(f"[bench] skipping {peer}: {err}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for workload in args.workloads:
        n = args.n or (200 if args.quick else DEFAULT_N[workload])
        for peer, python in pythons.items():  # peers side by side, one workload at a time
            print(
                f"[bench] {workload} n={n} reps={args.reps}: {peer} ...",
                file=sys.stderr,
                flush=True,
            )
            try:
                rows.append(run_one(python, peer, workload, n, args.reps))
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                skipped[f"{peer}/{workload}"] = str(err)
                print(f"[bench] {peer} {workload} failed: {err}", file=sys.stderr)
    ratio = ratios(rows, args.workloads)
    print_report(rows, ratio)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": _cpus(),
        },
        "peer_versions": {"prefect": peers.PREFECT, "dask": peers.DASK},
        "reps": args.reps,
        "results": rows,
        "ratios_of_ms_per_task": ratio,
        "skipped": skipped,
    }
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(peers.ROOT)}")
    if skipped:
        print(f"skipped: {', '.join(skipped)} (see above)")


def _cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
