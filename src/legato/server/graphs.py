"""A run's DAG and Gantt timeline as inline SVG, laid out here in Python (no JS library):
they render on the server and show without JavaScript.

The DAG is drawn from the recorded dependencies (``task_runs.depends_on``): a task run sits
one layer right of its deepest dependency; within a layer, runs are ordered by where their
dependencies sit (one barycentre pass), then by creation. Big runs switch to a compact
drawing: small boxes, no labels (each box still has a tooltip and links to its table row).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from legato.models import TaskRun


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def layers(task_runs: Sequence[TaskRun]) -> list[list[TaskRun]]:
    """Task runs in columns: each one column right of its deepest dependency."""
    index = {t.id: i for i, t in enumerate(task_runs)}
    depth: dict[str, int] = {}
    for t in task_runs:  # a dependency is always created before its dependent
        deps = [depth[d] for d in t.depends_on if d in depth]
        depth[t.id] = 1 + max(deps) if deps else 0
    columns: list[list[TaskRun]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for t in task_runs:
        columns[depth[t.id]].append(t)
    position: dict[str, float] = {}
    for column in columns:

        def centre(t: TaskRun) -> tuple[float, int]:
            ps = [position[d] for d in t.depends_on if d in position]
            return (sum(ps) / len(ps) if ps else float(index[t.id]), index[t.id])

        column.sort(key=centre)
        for i, t in enumerate(column):
            position[t.id] = float(i)
    return columns


def dag_svg(task_runs: Sequence[TaskRun]) -> str:
    if not task_runs:
        return '<p class="muted">No task runs yet.</p>'
    columns = layers(task_runs)
    tallest = max(len(c) for c in columns)
    compact = tallest > 40 or len(task_runs) > 300
    wide = len(columns) > 30
    w, h, gap_x, gap_y = (150.0, 26.0, 50.0, 10.0)
    if compact:
        h, gap_y = 6.0, 2.0
        w, gap_x = (14.0, 6.0) if wide else (90.0, 40.0)
    elif wide:
        w, gap_x = 60.0, 16.0
    pad = 8.0
    where: dict[str, tuple[float, float]] = {}
    for ci, column in enumerate(columns):
        for ri, t in enumerate(column):
            where[t.id] = (pad + ci * (w + gap_x), pad + ri * (h + gap_y))
    width = pad * 2 + len(columns) * (w + gap_x) - gap_x
    height = pad * 2 + tallest * (h + gap_y) - gap_y
    out = [
        f'<svg class="dag{" compact" if compact else ""}" role="img" '
        f'aria-label="task dependency graph" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">',
        '<g class="edges">',
    ]
    draw_edges = len(task_runs) <= 3000
    for t in task_runs:
        if not draw_edges:
            break
        x2, y2 = where[t.id]
        for d in t.depends_on:
            if d in where:
                x1, y1 = where[d]
                a, b = (x1 + w, y1 + h / 2), (x2, y2 + h / 2)
                mid = (a[0] + b[0]) / 2
                out.append(
                    f'<path d="M{a[0]:.1f},{a[1]:.1f} C{mid:.1f},{a[1]:.1f} '
                    f'{mid:.1f},{b[1]:.1f} {b[0]:.1f},{b[1]:.1f}"/>'
                )
    out.append('</g><g class="nodes">')
    for t in task_runs:
        x, y = where[t.id]
        tries = f" · {t.attempts} tries" if t.attempts > 1 else ""
        tip = escape(f"{t.key} · {t.state.value}{tries}")
        rect = f'x="{x:.1f}" y="{y:.1f}" width="{w:.0f}" height="{h:.0f}"'
        if compact:  # one element per node: thousands of them stay fast to draw
            out.append(f'<rect class="s-{t.state.value}" {rect}><title>{tip}</title></rect>')
            continue
        label = _short(t.key, int(w / 7))
        out.append(
            f'<a href="#tr-{escape(t.id)}"><g class="node s-{t.state.value}" '
            f'data-key="{escape(t.key)}" data-state="{t.state.value}">'
            f'<rect {rect} rx="5"/><title>{tip}</title>'
            f'<text x="{x + 6:.1f}" y="{y + h / 2 + 4:.1f}">{escape(label)}</text></g></a>'
        )
    out.append("</g></svg>")
    return "".join(out)


def gantt_svg(task_runs: Sequence[TaskRun], *, now: float | None = None) -> str:
    """One bar per task run that started: from start to end (or now), by state."""
    started = sorted(
        (t for t in task_runs if t.started_at is not None),
        key=lambda t: (t.started_at or 0.0, t.created_at),
    )
    if not started:
        return '<p class="muted">Nothing has started yet.</p>'
    now = time.time() if now is None else now
    t0 = min(t.started_at or 0.0 for t in started)
    t1 = max((t.ended_at or now) for t in started)
    span = max(t1 - t0, 1e-3)
    compact = len(started) > 150
    row = 5.0 if compact else 18.0
    label_w = 0.0 if compact else 230.0
    chart_w = 760.0
    top = 18.0
    width = label_w + chart_w + 10
    height = top + len(started) * row + 4
    out = [
        f'<svg class="gantt{" compact" if compact else ""}" role="img" '
        f'aria-label="task run timeline" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):
        x = label_w + chart_w * i / 4
        # the last label ends at its tick, so it stays inside the picture
        at = f'x="{x - 2:.1f}" text-anchor="end"' if i == 4 else f'x="{x + 2:.1f}"'
        out.append(
            f'<line class="tick" x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{height:.1f}"/>'
            f'<text class="axis" {at} y="11">+{escape(_fmt(span * i / 4))}</text>'
        )
    for i, t in enumerate(started):
        start = t.started_at or t0
        end = t.ended_at or now
        x = label_w + chart_w * (start - t0) / span
        bw = max(chart_w * (end - start) / span, 1.5)
        y = top + i * row
        who = t.worker or "in the flow's process"
        tries = f" · attempt {t.attempts}" if t.attempts > 1 else ""
        tip = escape(f"{t.key} · {t.state.value} · {who} · {_fmt(end - start)}{tries}")
        retried = " retried" if t.attempts > 1 else ""
        bar = f'x="{x:.1f}" y="{y + 1:.1f}" width="{bw:.1f}" height="{row - 2:.1f}"'
        if compact:  # one element per bar
            out.append(f'<rect class="s-{t.state.value}" {bar}><title>{tip}</title></rect>')
            continue
        out.append(
            f'<g class="bar s-{t.state.value}{retried}"><rect {bar} rx="2"/><title>{tip}</title>'
        )
        if label_w:
            label = _short(f"{t.key} @ {t.worker}" if t.worker else t.key, 34)
            mark = f" x{t.attempts}" if t.attempts > 1 else ""
            out.append(f'<text x="2" y="{y + row - 5:.1f}">{escape(label + mark)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def matrix_svg(
    steps: Sequence[str], items: Sequence[tuple[str, str, dict[str, str]]], *, per_line: int = 250
) -> str:
    """Items x steps at a glance: each item a thin column of one cell per step, wrapped into
    lines of ``per_line`` items. ``items`` are (run id, label, step -> state)."""
    if not items or not steps:
        return '<p class="muted">This run mapped no child flows.</p>'
    cw = float(max(4, min(24, 1000 // len(items))))  # few items: bigger cells
    ch, line_gap = max(11.0, cw * 0.8), 8.0  # rows tall enough to carry their step's label
    per_line = max(per_line, int(1000 // cw))
    block = len(steps) * ch + line_gap
    n_lines = (len(items) + per_line - 1) // per_line
    label_w = 7.0 * min(24, max(len(s) for s in steps)) + 8  # the steps' names, left of each line
    width = label_w + min(len(items), per_line) * cw
    height = n_lines * block
    out = [
        f'<svg class="matrix" role="img" aria-label="items by steps" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
    ]
    for line in range(n_lines):
        for si, step in enumerate(steps):
            y = line * block + si * ch + ch * 0.75
            out.append(
                f'<text class="row-label" x="{label_w - 6:.0f}" y="{y:.0f}" '
                f'text-anchor="end">{escape(_short(step, 24))}</text>'
            )
    out.append(f'<g transform="translate({label_w:.0f},0)">')
    if len(items) > 300:  # many items: one path per state, not one element per cell
        paths: dict[str, list[str]] = {}
        for i, (_run_id, _label, states) in enumerate(items):
            x = (i % per_line) * cw
            y0 = (i // per_line) * block
            for si, step in enumerate(steps):
                cell = f"M{x:.0f},{y0 + si * ch:.0f}h{cw - 1:.0f}v{ch - 1:.0f}h-{cw - 1:.0f}z"
                paths.setdefault(states.get(step, "NONE"), []).append(cell)
        for state, cells in sorted(paths.items()):
            out.append(f'<path class="s-{escape(state)}" d="{"".join(cells)}"/>')
        out.append("</g></svg>")
        return "".join(out)
    for i, (run_id, label, states) in enumerate(items):
        x = (i % per_line) * cw
        y0 = (i // per_line) * block
        out.append(f'<a href="/runs/{escape(run_id)}"><g><title>{escape(label)}</title>')
        for si, step in enumerate(steps):
            state = states.get(step, "NONE")
            out.append(
                f'<rect class="s-{state}" x="{x:.0f}" y="{y0 + si * ch:.0f}" '
                f'width="{cw - 1:.0f}" height="{ch - 1:.0f}"/>'
            )
        out.append("</g></a>")
    out.append("</g></svg>")
    return "".join(out)
