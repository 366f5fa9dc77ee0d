"""`legato runs logs`: a flow run's log and its child flow runs' logs, merged in time order,
each line labelled with the call it came from (``[extract:0]``, or
``[process_recording:0[1] / extract:0]`` for a child's task), followed until the run stops.

Each run keeps its own cursor; children that appear while following are picked up, and a
child that has ended is read to its end once and not asked again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from legato.cli import output
from legato.errors import UsageError
from legato.models import FlowRun, State

PAGE = 1000
POLL = 0.5
POLL_MAX = 5.0  # seconds between passes, however many children are followed
REFRESH_EVERY = 4  # passes between looking for new children and task keys
MAX_RUNS = 5000  # child runs followed at most (a parent mapping more is read to this many)


@dataclass
class _Followed:
    run_id: str
    label: str  # "" for the run asked for, else the call path to the child
    keys: dict[str, str] = field(default_factory=dict)  # task run id -> call key
    after: int = 0
    done: bool = False  # ended and read to its end


def _stopped(state: State) -> bool:
    return state.is_final or state in (State.PAUSED, State.CRASHED)


class _Tree:
    def __init__(self, store: Any, run: FlowRun, task_run_id: str | None, min_level: int) -> None:
        self.store = store
        self.task_run_id = task_run_id
        self.min_level = min_level
        self.runs: dict[str, _Followed] = {run.id: _Followed(run.id, "")}

    def refresh(self) -> None:
        """Learn task keys and child runs of every run still followed (children's children
        too, in the same pass)."""
        todo = [f for f in self.runs.values() if not f.done]
        while todo:
            f = todo.pop()
            for t in self.store.get_task_runs(f.run_id):
                f.keys[t.id] = t.key
                child = t.child_flow_run_id
                if child and child not in self.runs and len(self.runs) < MAX_RUNS:
                    label = f"{f.label} / {t.key}" if f.label else t.key
                    self.runs[child] = _Followed(child, label)
                    todo.append(self.runs[child])

    def read(self) -> list[tuple[_Followed, Any]]:
        """New records of every run still followed, oldest first across runs."""
        got: list[tuple[_Followed, Any]] = []
        for f in list(self.runs.values()):
            if f.done or (self.task_run_id and f.label):
                continue  # --task names a call of the run asked for: no child's
            # The state before the read: a child final then has written all it will.
            final = self.store.get_flow_run(f.run_id).state.is_final
            while True:
                entries = self.store.get_logs(
                    f.run_id,
                    task_run_id=None if f.label else self.task_run_id,
                    after_id=f.after,
                    min_level=self.min_level,
                    limit=PAGE,
                )
                got.extend((f, e) for e in entries)
                if entries:
                    f.after = entries[-1].id
                if len(entries) < PAGE:
                    break
            f.done = bool(f.label) and final
        got.sort(key=lambda fe: (fe[1].record.at, fe[1].id))
        return got


def print_logs(
    store: Any,
    run: FlowRun,
    *,
    task_key: str | None,
    min_level: int,
    follow: bool,
    json_out: bool,
) -> None:
    task_run_id = None
    if task_key is not None:
        keys = {t.id: t.key for t in store.get_task_runs(run.id)}
        matches = [i for i, k in keys.items() if k == task_key or i.startswith(task_key)]
        if not matches:
            raise UsageError(f"flow run {run.id} has no task run {task_key!r}")
        task_run_id = matches[0]
    tree = _Tree(store, run, task_run_id, min_level)
    entries_json: list[dict[str, Any]] = []
    passes = 0
    while True:
        # The state before the read: a run stopped then has written all it will, so the
        # last pass cannot miss its last lines.
        stopped = _stopped(store.get_flow_run(run.id).state)
        if passes % REFRESH_EVERY == 0 or stopped:
            tree.refresh()  # new children and task keys: not every pass (many children)
        passes += 1
        for f, e in tree.read():
            r = e.record
            key = f.keys.get(r.task_run_id or "", r.task_run_id or "") if r.task_run_id else ""
            where = " / ".join(p for p in (f.label, key or ("" if f.label else "flow")) if p)
            if json_out:
                entries_json.append(
                    {
                        "id": e.id,
                        "at": output.iso(r.at),
                        "level": output.level_name(r.level),
                        "flow_run_id": f.run_id,
                        "task_run_id": r.task_run_id,
                        "key": where,
                        "logger": r.logger,
                        "message": r.message,
                    }
                )
            else:
                output.out.print(
                    f"{output.short_time(r.at)} {output.level_name(r.level):<7} [{where}] "
                    f"{r.message}",
                    markup=False,
                )
        if not follow or stopped:
            break  # nothing more will be written until someone resumes it
        live = sum(not f.done for f in tree.runs.values())
        time.sleep(min(POLL_MAX, POLL * (1 + live // 50)))  # many children: ask less often
    if json_out:
        output.print_json(entries_json)
