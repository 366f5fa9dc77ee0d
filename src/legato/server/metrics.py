"""Prometheus text exposition for ``GET /metrics``, computed from the store on each scrape.

- ``legato_flow_runs{state}`` and ``legato_task_runs{state}``: runs per state (gauges).
- ``legato_queue_depth{pool}``: task runs waiting for a worker of each pool.
- ``legato_workers{pool,state}``: known workers.
- ``legato_task_run_duration_seconds{task,quantile}`` (a summary, with ``_sum`` and ``_count``)
  over the task runs that ended among the newest 2,000: a bounded, indexed read, so a scrape
  costs the same on a database of ten million runs.

The format is written here (it is a few lines of text): the values come from the database at
scrape time, which a client library's in-process counters would not model.
"""

from __future__ import annotations

from collections import defaultdict

from legato.models import State
from legato.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT = 2000
QUANTILES = (0.5, 0.9, 0.99)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def render(store: Store) -> str:
    """The metrics page."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    counts = store.count_runs()
    for kind in ("flow", "task"):
        name = f"legato_{kind}_runs"
        family(name, "gauge", f"{kind.capitalize()} runs by state.")
        found = counts.get(kind, {})
        for state in State:
            lines.append(f"{name}{_labels(state=state.value)} {found.get(state.value, 0)}")

    family("legato_queue_depth", "gauge", "Task runs waiting for a worker, per pool.")
    for pool, depth in sorted(store.queue_depths().items()):
        lines.append(f"legato_queue_depth{_labels(pool=pool)} {depth}")

    family("legato_workers", "gauge", "Known workers per pool and state.")
    workers: dict[tuple[str, str], int] = defaultdict(int)
    for w in store.list_workers(include_offline=True):
        workers[(w.pool, w.state)] += 1
    for (pool, worker_state), n in sorted(workers.items()):
        lines.append(f"legato_workers{_labels(pool=pool, state=worker_state)} {n}")

    name = "legato_task_run_duration_seconds"
    family(name, "summary", f"Run time of the task runs that ended, among the newest {RECENT}.")
    by_task: dict[str, list[float]] = defaultdict(list)
    for task, _state, seconds in store.recent_task_durations(RECENT):
        by_task[task].append(seconds)
    for task, values in sorted(by_task.items()):
        values.sort()
        for q in QUANTILES:
            lines.append(f"{name}{_labels(task=task, quantile=str(q))} {_quantile(values, q)!r}")
        lines.append(f"{name}_sum{_labels(task=task)} {sum(values)!r}")
        lines.append(f"{name}_count{_labels(task=task)} {len(values)}")
    return "\n".join(lines) + "\n"
