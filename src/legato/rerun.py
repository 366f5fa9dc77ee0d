"""Forced reruns: run chosen calls of a stopped run again, and every call downstream of them.

A rerun never changes a recorded call: the chosen calls and their downstream are
*superseded* (kept in the history, never served again, their keys moved aside to ``KEY@``
and the record id's last 8 characters), and the runs holding them are reopened, so a replay
of the flow runs those calls again under their own keys while every other call returns its
recorded result. A task run's COMPLETED record stays final: the rerun is a new record.

Downstream means the recorded dependencies (futures passed, and values traced back to the
call that returned them), followed inside each flow run. Child flows are runs of their own:
a call of a child flow that is rerun runs that child again in place, every call of it; a
call rerun inside a child reruns that child's call in its parent too, and what depends on
it there, up to the top-level run, which is the one replayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from legato.errors import RunNotFound, UsageError
from legato.models import FlowRun, State, TaskRun

# A stopped top-level run may be rerun; a paused or crashed one is resumed first.
RERUN_FROM = (State.COMPLETED, State.FAILED, State.CANCELLED)
MAX_CHOSEN = 10_000  # calls one request may choose


@dataclass
class RerunPlan:
    """What a rerun does: the calls it supersedes and the flow runs it reopens."""

    root: FlowRun
    chosen: list[TaskRun]
    superseded: list[TaskRun] = field(default_factory=list)
    reopened: list[FlowRun] = field(default_factory=list)  # the root first

    @property
    def downstream(self) -> int:
        """Calls rerun because they depend on a chosen one (or sit in a rerun child)."""
        return len(self.superseded) - len(self.chosen)

    def done(self, pool: str | None = None) -> Rerun:
        return Rerun(
            root=self.root.id,
            chosen=[t.key for t in self.chosen][:50],
            calls=len(self.superseded),
            downstream=self.downstream,
            runs=len(self.reopened),
            pool=pool,
        )


@dataclass
class Rerun:
    """A rerun that was set up: the top-level run to replay, and how much runs again."""

    root: str
    chosen: list[str]  # the chosen calls' keys (the first 50)
    calls: int  # calls that run again, the chosen ones included
    downstream: int
    runs: int  # flow runs reopened, the top-level one included
    pool: str | None = None  # where it was queued for a worker (server mode)

    def detail(self) -> dict[str, Any]:
        """For the audit log."""
        return {
            "from": self.chosen[:10],
            "calls": self.calls,
            "downstream": self.downstream,
            "runs": self.runs,
            "pool": self.pool,
        }


def moved_key(tr: TaskRun) -> str:
    """Where a superseded record's key goes, so the rerun call can take the key back."""
    return f"{tr.key}@{tr.id[-8:]}"  # an id's tail is random (its head is a timestamp)


def original_key(tr: TaskRun) -> str:
    """The key a record superseded by a rerun had (its moved key back to ``KEY``)."""
    base, sep, tail = tr.key.rpartition("@")
    return base if sep and tail == tr.id[-8:] else tr.key


def plan_rerun(store: Any, chosen_ids: Sequence[str]) -> RerunPlan:
    """Which calls a rerun of ``chosen_ids`` supersedes and which runs it reopens. Reads only;
    UsageError when the calls are not one stopped run's."""
    if not chosen_ids:
        raise UsageError("choose at least one call to rerun")
    if len(chosen_ids) > MAX_CHOSEN:
        raise UsageError(f"a rerun chooses at most {MAX_CHOSEN} calls at once")
    planner = _Planner(store)
    chosen = [store.get_task_run(i) for i in dict.fromkeys(chosen_ids)]
    roots = {planner.root_of(tr.flow_run_id).id for tr in chosen}
    if len(roots) > 1:
        raise UsageError("the chosen calls belong to different top-level runs: one at a time")
    root = planner.root_of(chosen[0].flow_run_id)
    if root.state not in RERUN_FROM:
        raise UsageError(
            f"flow run {root.id} is {root.state.value}: only a "
            f"{', '.join(s.value for s in RERUN_FROM)} run can be rerun"
            + (" (resume it first)" if root.state in (State.PAUSED, State.CRASHED) else "")
        )
    stale = [tr.key for tr in chosen if tr.superseded_at is not None]
    if stale:
        raise UsageError(
            f"call {stale[0]!r} was already superseded (a later call replaced it): "
            "choose the newest record"
        )
    by_run: dict[str, list[TaskRun]] = {}
    for tr in chosen:
        by_run.setdefault(tr.flow_run_id, []).append(tr)
    for run_id, seeds in by_run.items():
        planner.rerun_in(run_id, seeds)
    return RerunPlan(
        root=root,
        chosen=chosen,
        superseded=list(planner.superseded.values()),
        reopened=[planner.runs[i] for i in planner.reopened],
    )


class _Planner:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.runs: dict[str, FlowRun] = {}
        self._task_runs: dict[str, list[TaskRun]] = {}
        self.superseded: dict[str, TaskRun] = {}
        self.reopened: dict[str, None] = {}  # ordered: the root ends up first (see below)
        self._whole: set[str] = set()
        # Calls of child runs superseded only as the way up from a call inside them: reached
        # again as a chosen call or as downstream of one, their child runs again whole.
        self._path: set[str] = set()

    def run(self, run_id: str) -> FlowRun:
        if run_id not in self.runs:
            self.runs[run_id] = self.store.get_flow_run(run_id)
        return self.runs[run_id]

    def calls(self, run_id: str) -> list[TaskRun]:
        """The run's current records (superseded ones are history)."""
        if run_id not in self._task_runs:
            self._task_runs[run_id] = [
                t for t in self.store.get_task_runs(run_id) if t.superseded_at is None
            ]
        return self._task_runs[run_id]

    def root_of(self, run_id: str) -> FlowRun:
        run = self.run(run_id)
        while run.parent_task_run_id:
            call = self.store.get_task_run(run.parent_task_run_id)
            run = self.run(call.flow_run_id)
        return run

    def rerun_in(self, run_id: str, seeds: Iterable[TaskRun], *, via: str | None = None) -> None:
        """Supersede ``seeds`` and their downstream in one run, reopen it, and carry the
        change up to its parent. ``via``: the child run we came up from (its call is on the
        path: that child is reopened in part, not run again whole)."""
        calls = self.calls(run_id)
        dependents: dict[str, list[TaskRun]] = {}
        for t in calls:
            for dep in t.depends_on:
                dependents.setdefault(dep, []).append(t)
        todo = list(seeds)
        while todo:
            tr = todo.pop()
            on_path = via is not None and tr.child_flow_run_id == via
            if tr.id in self.superseded:
                if tr.id in self._path and not on_path and tr.child_flow_run_id:
                    self._path.discard(tr.id)
                    self.whole(tr.child_flow_run_id)  # it is downstream after all
                continue
            self.superseded[tr.id] = tr
            if on_path:
                self._path.add(tr.id)
            elif tr.child_flow_run_id:
                self.whole(tr.child_flow_run_id)
            todo.extend(dependents.get(tr.id, ()))
        first_time = run_id not in self.reopened
        self.reopened[run_id] = None
        run = self.run(run_id)
        if run.parent_task_run_id and first_time:
            parent_call = self.store.get_task_run(run.parent_task_run_id)
            self.rerun_in(parent_call.flow_run_id, [parent_call], via=run_id)
        # Parents are reopened after their children; the root is moved to the front.
        if not run.parent_task_run_id:
            self.reopened = {run_id: None, **self.reopened}

    def whole(self, run_id: str) -> None:
        """A child flow run again from its first call: every call of it is superseded."""
        if run_id in self._whole:
            return
        self._whole.add(run_id)
        try:
            self.run(run_id)
        except RunNotFound:  # a child call that never started its run
            return
        self.reopened[run_id] = None
        for tr in self.calls(run_id):
            if tr.id not in self.superseded:
                self.superseded[tr.id] = tr
                if tr.child_flow_run_id:
                    self.whole(tr.child_flow_run_id)


def pick_calls(
    store: Any,
    run: FlowRun,
    step: str,
    *,
    items: Sequence[str] = (),
    states: Sequence[State] = (),
    in_children: bool = False,
) -> list[TaskRun]:
    """The calls ``legato runs rerun RUN --from STEP`` means: the call with key ``STEP`` in
    the run, or every call of the task named ``STEP``; when the run has none, the same in
    its child runs (those ``items`` picks, by call key or map index; all with
    ``in_children``, the items page's way). ``states`` filters."""
    from legato.items import item_matches

    def matching(calls: list[TaskRun]) -> list[TaskRun]:
        current = [t for t in calls if t.superseded_at is None]
        found = [t for t in current if t.key == step] or [t for t in current if t.task == step]
        return [t for t in found if not states or t.state in states]

    calls = store.get_task_runs(run.id)
    found = [] if items or in_children else matching(calls)
    if found:
        return found
    children = [t for t in calls if t.child_flow_run_id and t.superseded_at is None]
    if items:
        children = [c for c in children if any(item_matches(c.key, i) for i in items)]
        if not children:
            raise UsageError(f"no child run of {run.id} matches --item {', '.join(items)}")
    for child in children:
        found += matching(store.get_task_runs(child.child_flow_run_id))
    if not found:
        where = "its chosen child runs" if items else "it or its child runs"
        known = sorted({t.task for t in calls if t.superseded_at is None})[:12]
        what = f" in state {', '.join(s.value for s in states)}" if states else ""
        raise UsageError(
            f"flow run {run.id}: no call has key or task {step!r}{what} in {where}"
            + (f" (its tasks: {', '.join(known)})" if known else "")
        )
    return found
