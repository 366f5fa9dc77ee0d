"""QC and summary figures, drawn with matplotlib (Agg: no display needed) as PNG or JPEG
bytes, at least 800 pixels wide."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .scene import NODES

DPI = 100
ANIMAL_COLOURS = ("#1f77b4", "#d62728")


def _encode(fig: Any, kind: str = "png") -> bytes:
    buf = io.BytesIO()
    extra = {"pil_kwargs": {"quality": 85}} if kind == "jpeg" else {}
    fig.savefig(buf, format=kind, dpi=DPI, **extra)
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    # Figure itself, not pyplot: pyplot's global state is not safe across the threads that
    # run tasks side by side. A fixed layout: the automatic ones cost a second per figure.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def trajectories(frame: np.ndarray, points: np.ndarray, title: str) -> bytes:
    """Each animal's body and nose paths over the recording's first frame (a JPEG: a camera
    frame's noise makes a PNG ten times the size)."""
    fig = _figure(8, 6)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.92))
    ax.imshow(frame)
    for a in range(points.shape[1]):
        colour = ANIMAL_COLOURS[a % len(ANIMAL_COLOURS)]
        body = points[:, a, NODES.index("body")]
        nose = points[:, a, NODES.index("nose")]
        ax.plot(body[:, 0], body[:, 1], "-", color=colour, lw=2, label=f"animal {a} body")
        ax.plot(nose[:, 0], nose[:, 1], ":", color=colour, lw=1.2, label=f"animal {a} nose")
        start = np.flatnonzero(~np.isnan(body[:, 0]))
        if len(start):
            ax.plot(*body[start[0]], "o", color=colour, ms=8, mec="white")
    ax.set_title(f"{title}: trajectories (circle = start)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_axis_off()
    return _encode(fig, "jpeg")


def confidence_histograms(scores: np.ndarray, points: np.ndarray, title: str) -> bytes:
    """One histogram of point scores per body part (points found only)."""
    fig = _figure(10, 3.2)
    axes = fig.subplots(1, len(NODES), sharey=True)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.8, wspace=0.08)
    found = ~np.isnan(points[..., 0])
    for n, ax in enumerate(axes):
        values = scores[:, :, n][found[:, :, n]]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0")
        ax.set_title(NODES[n], fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1])
        ax.set_xlabel("score")
    axes[0].set_ylabel("points")
    fig.suptitle(f"{title}: confidence per body part")
    return _encode(fig)


def missing_over_time(points: np.ndarray, fps: float, title: str) -> bytes:
    """How many body parts each animal is missing, frame by frame."""
    fig = _figure(8, 3)
    ax = fig.add_axes((0.08, 0.17, 0.9, 0.72))
    t = np.arange(len(points)) / fps
    for a in range(points.shape[1]):
        missing = np.isnan(points[:, a, :, 0]).sum(axis=1)
        ax.step(t, missing, where="post", color=ANIMAL_COLOURS[a % 2], label=f"animal {a}")
    ax.set_ylim(-0.2, len(NODES) + 0.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("parts missing")
    ax.set_title(f"{title}: missing points over time")
    ax.legend(fontsize=8)
    return _encode(fig)


def week_summary(rows: list[dict[str, Any]]) -> bytes:
    """One bar per recording (flagged first, in red): missing points and mean confidence."""
    fig = _figure(max(8.0, 0.35 * len(rows) + 2), 4.5)
    ax = fig.add_axes((0.07, 0.22, 0.9, 0.66))
    names = [r["recording"] for r in rows]
    x = np.arange(len(rows))
    colours = ["#d62728" if r["flagged"] else "#4c72b0" for r in rows]
    ax.bar(
        x - 0.2, [r["mean_confidence"] for r in rows], 0.4, color=colours, label="mean confidence"
    )
    ax.bar(
        x + 0.2,
        [r["missing_fraction"] for r in rows],
        0.4,
        color="#999999",
        label="missing fraction",
    )
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.15)
    flagged = sum(r["flagged"] for r in rows)
    ax.set_title(f"The week: {len(rows)} recordings ({flagged} flagged, in red)")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    return _encode(fig)
