"""Cold start: a 1-task flow run as a new process, side by side with DBOS and Prefect 3.

Each measurement is the wall time of a whole process, from exec to exit (interpreter start,
imports, opening or creating the state database, the run, shutdown), as a user typing the
command sees it:

- ``legato run FILE.py:one`` on a fresh ``LEGATO_HOME`` (an empty folder: the database is
  created) and on an existing one (the same home again);
- ``python -c "import legato"``;
- DBOS 3.4: ``python FILE.py`` launching DBOS on SQLite, calling a workflow with one step,
  on a fresh system database and on an existing one;
- Prefect 3: ``python FILE.py`` calling a ``@flow`` with one ``@task`` in Prefect's default
  local mode (an ephemeral API server on SQLite under ``PREFECT_HOME``), fresh and existing.

Peers run in turn within each rep (round-robin), so a change in the machine's load falls on
all of them alike; the figure is the median over reps. One untimed run of each first writes
bytecode caches (a user's second command finds them) and warms the file cache. No timing is
ever asserted.

    .venv/bin/python bench/cold_start.py            # 7 reps
    .venv/bin/python bench/cold_start.py --reps 3 --peers legato dbos
    .venv/bin/python bench/cold_start.py --baseline main   # also Legato as of a git ref
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers

GUARD_S = 600  # not a timing check: only stops a hung process from blocking the run

LEGATO_FLOW = """
from legato import flow, task

@task
def add_one(x: int) -> int:
    return x + 1

@flow
def one(x: int = 1) -> int:
    return add_one(x)
"""

DBOS_FLOW = """
import sys
from dbos import DBOS

DBOS(config={"name": "cold", "system_database_url": "sqlite:///" + sys.argv[1]})

@DBOS.step()
def add_one(x: int) -> int:
    return x + 1

@DBOS.workflow()
def one(x: int = 1) -> int:
    return add_one(x)

if __name__ == "__main__":
    DBOS.launch()
    assert one(1) == 2
    DBOS.destroy()
"""

PREFECT_FLOW = """
from prefect import flow, task

@task
def add_one(x: int) -> int:
    return x + 1

@flow
def one(x: int = 1) -> int:
    return add_one(x)

if __name__ == "__main__":
    assert one(1) == 2
"""


class Case:
    """One command to time: ``prepare(rep_dir)`` returns the argv and environment of a run,
    after making whatever a fresh or existing state needs."""

    def __init__(
        self, name: str, peer: str, prepare: Callable[[Path], tuple[list[str], dict[str, str]]]
    ):
        self.name = name
        self.peer = peer
        self.prepare = prepare
        self.times: list[float] = []


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGATO_", "PREFECT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' interpreters write bytecode caches
    env.update(extra)
    return env


def _prefect_env(home: Path) -> dict[str, str]:
    # As bench/run.py: a private home, no console line per task, no telemetry attempts.
    return _env(
        PREFECT_HOME=str(home),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Not a timing: on a loaded machine its server may take past the 20 s default to
        # answer, and the run then fails instead of being timed.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
    )


def baseline_cases(work: Path, ref: str) -> list[Case]:
    """Legato as of git ``ref`` (its src/ exported, first on PYTHONPATH), fresh and existing."""
    import run as bench_run  # bench/run.py exports baselines the same way

    src = bench_run.export_baseline(ref)
    legato = [str(peers.python_of("legato")), "-m", "legato", "run", "-q"]
    flow = f"{work / 'legato_one.py'}:one"
    home = work / "baseline-existing"
    home.mkdir()

    def env(legato_home: Path) -> dict[str, str]:
        return _env(LEGATO_HOME=str(legato_home), PYTHONPATH=str(src))

    return [
        Case("fresh home", f"legato@{ref}", lambda d: ([*legato, flow], env(d / "home"))),
        Case("existing home", f"legato@{ref}", lambda d: ([*legato, flow], env(home))),
        Case(
            "import",
            f"legato@{ref}",
            lambda d: ([legato[0], "-c", "import legato"], _env(PYTHONPATH=str(src))),
        ),
    ]


def make_cases(work: Path, names: list[str]) -> list[Case]:
    files = {"legato": LEGATO_FLOW, "dbos": DBOS_FLOW, "prefect": PREFECT_FLOW}
    for peer, text in files.items():
        (work / f"{peer}_one.py").write_text(text)
    legato = [str(peers.python_of("legato")), "-m", "legato", "run", "-q"]
    legato_flow = f"{work / 'legato_one.py'}:one"
    existing = {peer: work / f"{peer}-existing" for peer in files}
    cases: list[Case] = []
    if "legato" in names:
        cases += [
            Case(
                "fresh home",
                "legato",
                lambda d: ([*legato, legato_flow], _env(LEGATO_HOME=str(d / "legato-home"))),
            ),
            Case(
                "existing home",
                "legato",
                lambda d: ([*legato, legato_flow], _env(LEGATO_HOME=str(existing["legato"]))),
            ),
            Case(
                "import",
                "legato",
                lambda d: ([str(peers.python_of("legato")), "-c", "import legato"], _env()),
            ),
        ]
    if "dbos" in names:
        dbos = [str(peers.python_of("dbos")), str(work / "dbos_one.py")]
        cases += [
            Case("fresh home", "dbos", lambda d: ([*dbos, str(d / "dbos.sqlite")], _env())),
            Case(
                "existing home",
                "dbos",
                lambda d: ([*dbos, str(existing["dbos"] / "dbos.sqlite")], _env()),
            ),
            Case("import", "dbos", lambda d: ([dbos[0], "-c", "import dbos"], _env())),
        ]
    if "prefect" in names:
        prefect = [str(peers.python_of("prefect")), str(work / "prefect_one.py")]
        cases += [
            Case("fresh home", "prefect", lambda d: (prefect, _prefect_env(d / "prefect-home"))),
            Case(
                "existing home",
                "prefect",
                lambda d: (prefect, _prefect_env(existing["prefect"])),
            ),
            Case("import", "prefect", lambda d: ([prefect[0], "-c", "import prefect"], _env())),
        ]
    for path in existing.values():
        path.mkdir()
    return cases


def run_once(case: Case, rep_dir: Path) -> float:
    rep_dir.mkdir(parents=True, exist_ok=True)
    argv, env = case.prepare(rep_dir)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=GUARD_S)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{case.peer} {case.name}: {' '.join(argv)} exited {proc.returncode}:\n"
            f"{proc.stderr[-3000:]}"
        )
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reps", type=int, default=7, help="timed runs of each case (default 7)")
    p.add_argument("--peers", nargs="+", default=["legato", "dbos", "prefect"])
    p.add_argument("--baseline", metavar="GIT_REF", help="also time Legato as of GIT_REF")
    args = p.parse_args()
    names = [n for value in args.peers for n in value.split(",") if n]
    for name in names:
        if name not in ("legato", "dbos", "prefect"):
            raise SystemExit(f"unknown peer {name!r}: choose from legato, dbos, prefect")
        peers.ensure_venv(name)
    work = Path(tempfile.mkdtemp(prefix="legato-cold-"))
    try:
        cases = make_cases(work, names)
        if args.baseline:
            cases += baseline_cases(work, args.baseline)
        for case in cases:  # bytecode caches, file cache, and the existing homes' first run
            run_once(case, work / "warm-up" / f"{case.peer}-{case.name.replace(' ', '-')}")
        for rep in range(args.reps):
            for case in cases:
                rep_dir = work / f"rep{rep}" / f"{case.peer}-{case.name.replace(' ', '-')}"
                case.times.append(run_once(case, rep_dir))
            print(f"[cold] rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(cases, args.reps)


def report(cases: list[Case], reps: int) -> None:
    medians = {(c.peer, c.name): statistics.median(c.times) for c in cases}
    print(f"\ncold start, median of {reps} runs (s); min..max in brackets")
    print(f"{'peer':<9} {'case':<14} {'median':>7}   range")
    for c in cases:
        lo, hi = min(c.times), max(c.times)
        print(f"{c.peer:<9} {c.name:<14} {medians[(c.peer, c.name)]:7.3f}   [{lo:.3f}..{hi:.3f}]")
    print("\nratios (peer / legato, same case, same run)")
    others = sorted({c.peer for c in cases} - {"legato"})
    for peer in others:
        for name in ("fresh home", "existing home", "import"):
            if (peer, name) in medians and ("legato", name) in medians:
                ratio = medians[(peer, name)] / medians[("legato", name)]
                print(f"  {peer}/legato {name:<14} {ratio:6.1f}x")
    out = peers.BENCH / "results" / "cold_start.json"
    out.parent.mkdir(exist_ok=True)
    rows = [{"peer": c.peer, "case": c.name, "times_s": c.times} for c in cases]
    out.write_text(json.dumps({"reps": reps, "rows": rows}, indent=2) + "\n")
    print(f"\nevery run: {out.relative_to(peers.ROOT)}")


if __name__ == "__main__":
    main()
