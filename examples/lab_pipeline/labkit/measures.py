"""What the lab reads off the poses: preliminary statistics (speed, distance, missing points)
and detailed ones (distance between the animals, time in zones, approach and contact bouts).
Distances are in pixels, times in seconds."""

from __future__ import annotations

from typing import Any

import numpy as np

from .scene import HEIGHT, NODES, WIDTH

BODY = NODES.index("body")
NOSE = NODES.index("nose")
CONTACT_PX = 30.0  # a nose this close to the other's body is contact
APPROACH_FRAMES = 8  # a bout of approach: the gap shrinks for at least this many frames
CENTRE_ZONE = 0.5  # the centre zone: the middle half of the arena in each direction


def _bouts(flags: np.ndarray, at_least: int) -> int:
    """How many runs of True at least ``at_least`` long."""
    edges = np.diff(np.r_[0, flags.astype(int), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.count_nonzero(ends - starts >= at_least))


def preliminary(points: np.ndarray, fps: float) -> dict[str, Any]:
    """Per animal: mean speed and distance travelled (body point), and the missing fraction
    per body part over both animals."""
    out: dict[str, Any] = {"animals": {}}
    for a in range(points.shape[1]):
        body = points[:, a, BODY]
        steps = np.linalg.norm(np.diff(body, axis=0), axis=1)
        out["animals"][f"animal {a}"] = {
            "mean_speed_px_s": round(float(np.nanmean(steps) * fps), 3),
            "distance_px": round(float(np.nansum(steps)), 2),
        }
    missing = np.isnan(points[..., 0]).mean(axis=(0, 1))
    out["missing_fraction"] = {n: round(float(m), 4) for n, m in zip(NODES, missing, strict=True)}
    return out


def detailed(points: np.ndarray, fps: float) -> dict[str, Any]:
    """Between the animals: body distance, approach and contact bouts; per animal: the share
    of time spent in the centre zone."""
    bodies = points[:, :, BODY]
    gap = np.linalg.norm(bodies[:, 0] - bodies[:, 1], axis=1)
    noses_to_bodies = np.minimum(
        np.linalg.norm(points[:, 0, NOSE] - bodies[:, 1], axis=1),
        np.linalg.norm(points[:, 1, NOSE] - bodies[:, 0], axis=1),
    )
    contact = np.nan_to_num(noses_to_bodies, nan=np.inf) < CONTACT_PX
    closing = np.r_[False, np.diff(np.nan_to_num(gap, nan=np.inf)) < -0.5]
    lo_x, hi_x = WIDTH * (1 - CENTRE_ZONE) / 2, WIDTH * (1 + CENTRE_ZONE) / 2
    lo_y, hi_y = HEIGHT * (1 - CENTRE_ZONE) / 2, HEIGHT * (1 + CENTRE_ZONE) / 2
    zones = {}
    for a in range(points.shape[1]):
        x, y = bodies[:, a, 0], bodies[:, a, 1]
        seen = ~np.isnan(x)
        inside = seen & (lo_x <= x) & (x <= hi_x) & (lo_y <= y) & (y <= hi_y)
        zones[f"animal {a}"] = round(float(inside.sum() / max(seen.sum(), 1)), 4)
    return {
        "mean_distance_px": round(float(np.nanmean(gap)), 2),
        "min_distance_px": round(float(np.nanmin(gap)), 2),
        "time_in_centre": zones,
        "approach_bouts": _bouts(closing, APPROACH_FRAMES),
        "contact_bouts": _bouts(contact, 2),
        "contact_s": round(float(contact.sum() / fps), 3),
    }
