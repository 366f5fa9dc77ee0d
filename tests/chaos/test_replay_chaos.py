"""Replay under chaos: kill a flow process at hypothesis-chosen points, change its inputs,
resume it in a process with another PYTHONHASHSEED, and check with a side-effect ledger that

- no call returns a result computed from other inputs (the final result is exactly what the
  final inputs give), and
- no call with unchanged inputs whose COMPLETED record was committed before a kill runs
  again.

The flows (replay_flows.py) call tasks in an order that depends on data: a set, a dict built
in a given order, completion order, a directory listing that gains files. Each run or resume
is the real `legato` CLI, forked from a warm interpreter (zygote.py) that has the hash seed
the example picked, and killed by the task itself with ``os._exit`` at the chosen call.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chaos import replay_flows as flows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # 200 examples in one test

HERE = Path(__file__).parent
FLOWS = HERE / "replay_flows.py"
SEEDS = (0, 1, 2, 3)
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota")


class Zygote:
    """One warm interpreter with a fixed PYTHONHASHSEED, forking `legato` commands."""

    def __init__(self, seed: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        env["PYTHONHASHSEED"] = str(seed)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "zygote.py"), "legato.cli"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd=HERE.parent.parent,
        )

    def run(self, argv: list[str], env: dict[str, str], out: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"argv": argv, "env": env, "out": str(out)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the zygote died"
        return int(json.loads(answer)["status"])

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygotes() -> Iterator[dict[int, Zygote]]:
    made = {seed: Zygote(seed) for seed in SEEDS}
    try:
        yield made
    finally:
        for z in made.values():
            z.close()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated state database each example copies (migrating costs ~0.5 s)."""
    from legato.store.sql import SqlStore

    path = tmp_path_factory.mktemp("template") / "legato.db"
    SqlStore(f"sqlite:///{path}").close()
    return path


@dataclass
class Execution:
    """One run of the flow process: how it crashes and what the world looks like to it."""

    seed: int
    crash_at: int  # the task body (counted from 0 in this process) that kills it; -1: none
    crash_when: str  # "before" or "after" that body's side effect
    change_arg: bool  # the flow's input changes before this execution
    grow: bool  # the listing gains a file before this execution (over_a_listing)


executions = st.builds(
    Execution,
    seed=st.sampled_from(SEEDS),
    crash_at=st.integers(min_value=0, max_value=18),
    crash_when=st.sampled_from(["before", "after"]),
    change_arg=st.booleans(),
    grow=st.booleans(),
)


def _committed(db: Path) -> set[tuple[str, str]]:
    """(task, inputs) of every call whose COMPLETED record is in the database now."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT task, result FROM task_runs WHERE state = 'COMPLETED' AND superseded_at IS NULL"
        ).fetchall()
    done = set()
    for task, result in rows:
        if task not in ("measure", "summarize"):
            continue
        out = json.loads(result)["v"]
        if task == "measure":
            item, arg, _ = out.split("|")
            done.add((task, f"{item}|{arg}"))
        else:
            done.add((task, out.rsplit("|sum|", 1)[0]))
    return done


def _ledger(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _expected(flow_name: str, items: list[str], arg: int) -> dict[str, str]:
    if flow_name == "as_completed":
        return {w: flows.expected_summary(flows.expected_measure(w, arg)) for w in items}
    return {w: flows.expected_measure(w, arg) for w in items}


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    flow_name=st.sampled_from(["over_a_set", "over_a_dict", "as_completed", "over_a_listing"]),
    n_items=st.integers(min_value=3, max_value=8),
    runs=st.lists(executions, min_size=1, max_size=3),
    order=st.permutations(range(8)),
)
def test_a_killed_and_resumed_run_never_returns_a_result_of_other_inputs(
    zygotes: dict[int, Zygote],
    template_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    flow_name: str,
    n_items: int,
    runs: list[Execution],
    order: list[int],
) -> None:
    base = tmp_path_factory.mktemp("replay")
    home, ledger, listing = base / "home", base / "ledger.jsonl", base / "listing"
    listing.mkdir()
    home.mkdir()
    shutil.copyfile(template_db, home / "legato.db")
    items = list(WORDS[:n_items])
    for w in items:
        (listing / w).touch()
    arg = 1
    committed: set[tuple[str, str]] = set()
    run_id: str | None = None
    final: Any = None
    # The last execution runs to its end: no crash point.
    plan = [*runs, Execution(runs[-1].seed ^ 1, -1, "after", False, False)]
    for i, ex in enumerate(plan):
        if i > 0 and ex.change_arg:
            arg += 1
        if flow_name == "over_a_listing" and i > 0 and ex.grow and len(items) < len(WORDS):
            items.append(WORDS[len(items)])
            (listing / items[-1]).touch()
        rotated = [items[j % len(items)] for j in order if j < len(items)]
        env = {
            "LEGATO_HOME": str(home),
            "LEDGER": str(ledger),
            "LISTING": str(listing),
            "ITEMS": ",".join(items),
            "ORDER": ",".join(dict.fromkeys(rotated + items)),
            "ARG": str(arg),
            "EXECUTION": str(i),
            "CRASH_AT": str(ex.crash_at),
            "CRASH_WHEN": ex.crash_when,
        }
        out = base / f"out{i}.txt"
        if run_id is None:
            argv = ["run", f"{FLOWS}:{flow_name}", "--json", "-q"]
        else:
            argv = ["runs", "resume", run_id, "--json"]
        status = zygotes[ex.seed].run(argv, env, out)
        text = out.read_text()
        if run_id is None:
            db_runs = _run_ids(home / "legato.db")
            assert len(db_runs) == 1, text
            run_id = db_runs[0]
        # No call with unchanged inputs that was committed before a kill ran again here.
        again = [
            e
            for e in _ledger(ledger)
            if e["execution"] == str(i) and (e["task"], e["inputs"]) in committed
        ]
        assert again == [], f"execution {i} re-ran committed calls: {again}\n{text}"
        if status == 0:
            final = json.loads(text[text.index("{") :])
            break
        assert status == 137, f"execution {i} exited {status}:\n{text}"
        committed |= _committed(home / "legato.db")
    else:
        pytest.fail("the last execution did not complete")
    assert final["state"] == "COMPLETED"
    assert final["result"] == _expected(flow_name, sorted(set(items)), arg)


def _run_ids(db: Path) -> list[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [r for (r,) in conn.execute("SELECT id FROM flow_runs")]
