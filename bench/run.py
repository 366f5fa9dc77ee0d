"""Run Legato and its peers side by side; print per-task overhead and ratios.

    python bench/run.py [--quick] [--workloads sequential pipeline] [--peers legato prefect]
                        [--n N] [--reps R] [--baseline GIT_REF]

Each peer runs in its own interpreter (see peers.py) as a subprocess that prints one JSON
line; its stderr goes to bench/results/<peer>-<workload>.log. Results: bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
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
    p.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also run Legato as of GIT_REF (its src/ exported with git archive), side by "
        "side with the working tree, and print legato/baseline",
    )
    args = p.parse_args()
    args.workloads = _names(args.workloads, WORKLOADS)
    args.peers = _names(args.peers, peers.PEERS)
    args.reps = args.reps or (3 if args.quick else 5)
    return args


def run_one(
    python: Path,
    peer: str,
    workload: str,
    n: int,
    reps: int,
    src: Path | None = None,
    *,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    log_name: str | None = None,
) -> dict[str, Any]:
    """One peer on one workload. ``src``: run Legato from that source tree instead.
    ``script``, ``env``, ``log_name``: another workload script, environment and log file
    than the peer's own (bench/fanout.py runs Legato's remote modes this way)."""
    script = script or peers.BENCH / "workloads" / f"{peer.split('@')[0].replace('-', '_')}.py"
    cmd = [str(python), str(script), "--workload", workload, "--n", str(n), "--reps", str(reps)]
    log = RESULTS / (log_name or f"{peer.replace('@', '-at-')}-{workload}.log")
    env = dict(os.environ if env is None else env)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    with log.open("w") as err:
        # A session of its own, so that what the peer starts (servers, worker processes)
        # is stopped with it even when it fails or hangs.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True
        )
        try:
            stdout, _ = proc.communicate(timeout=GUARD_S)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(
            f"{peer} {workload} exited {proc.returncode}; end of {log.name}:\n{tail}"
        )
    row: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    row["peer"] = peer
    row["task_runs"] = task_runs(workload, n)
    row["median_s"] = statistics.median(row["times_s"])
    row["ms_per_task"] = 1000 * row["median_s"] / row["task_runs"]
    return row


def export_baseline(ref: str) -> Path:
    """``src/`` as of git ``ref``, exported under bench/.baselines/ (reused if there)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=peers.ROOT,
        capture_output=True,
        text=True,
    )
    if sha.returncode != 0:
        raise SystemExit(f"--baseline {ref!r}: not a commit ({sha.stderr.strip()})")
    dest = peers.BENCH / ".baselines" / sha.stdout.strip()[:12]
    if not (dest / "src" / "legato").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha.stdout.strip(), "src"], cwd=peers.ROOT, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def ratios(
    rows: list[dict[str, Any]], workloads: list[str], baseline: str | None = None
) -> dict[str, dict[str, float]]:
    per = {(r["peer"], r["workload"]): r["ms_per_task"] for r in rows}
    out: dict[str, dict[str, float]] = {}
    pairs = RATIOS + ((("legato", baseline),) if baseline else ())
    for w in workloads:
        for a, b in pairs:
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
    print_table(lines)
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
    sources: dict[str, Path] = {}
    baseline = None
    if args.baseline:
        baseline = f"legato@{args.baseline}"
        sources[baseline] = export_baseline(args.baseline)
        pythons[baseline] = peers.ensure_venv("legato")
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
                rows.append(run_one(python, peer, workload, n, args.reps, sources.get(peer)))
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                skipped[f"{peer}/{workload}"] = str(err)
                print(f"[bench] {peer} {workload} failed: {err}", file=sys.stderr)
    ratio = ratios(rows, args.workloads, baseline)
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


def print_table(lines: Sequence[Sequence[str]]) -> None:
    """Rows under their header, the first two columns left-aligned, the rest right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print()
    for line in lines:
        print(
            "  ".join(
                cell.rjust(w) if i >= 2 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
