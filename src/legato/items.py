"""The items of a parent run: each child flow run is named by its call key in its parent
(``process_recording:0[1]``, ``rec-003``), and picked by that key or by its map index.
Reads only; used by `legato answer --item`, `legato runs rerun --item` and the dashboard."""

from __future__ import annotations

from typing import Any

from legato.models import FlowRun


def item_of(store: Any, top: FlowRun, flow_run_id: str) -> str:
    """Which call of ``top`` a (child) flow run is: its call key in its parent, parents'
    keys first (``process_recording:0[1]``, ``rec-003``, ``a / b``); "" for ``top`` itself."""
    parts: list[str] = []
    run = store.get_flow_run(flow_run_id)
    while run.id != top.id and run.parent_task_run_id:
        call = store.get_task_run(run.parent_task_run_id)
        parts.append(call.key)
        run = store.get_flow_run(call.flow_run_id)
    return " / ".join(reversed(parts))


def item_matches(item: str, wanted: str) -> bool:
    """``--item`` picks a child by its call key, the last one of a path, or the index a map
    gave it (``1`` or ``[1]`` for ``process_recording:0[1]``)."""
    last = item.rsplit(" / ", 1)[-1]
    index = last[last.rfind("[") + 1 : -1] if last.endswith("]") and "[" in last else None
    return wanted in (item, last) or (index is not None and wanted.strip("[]") == index)
