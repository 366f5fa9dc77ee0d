"""Keypoint detection and identity tracking for two animals.

Detection: for each body part, the pixels whose colour is near its marker's colour, grouped
into blobs; the two largest blobs are the candidates, scored by how well they match (size and
colour). The per-pixel work runs on PyTorch with CUDA when it is installed and a GPU is
visible, on NumPy otherwise; the blob grouping runs on SciPy either way, so both paths are
meant to give the same points (``bench/gpu_check.sh`` compares them on a GPU). Tracking:
each animal's body is matched to the body candidates (least total distance to where it was),
and every other part to the animal whose body is nearest. An unmatched part is a missing
point (NaN), as in a SLEAP predictions file.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .scene import COLOURS, MARKER_RADIUS, NODES

COLOUR_TOLERANCE = 70.0  # RGB distance counted as the marker's colour
MIN_AREA = 4  # pixels; smaller blobs are noise
EXPECTED_AREA = np.pi * MARKER_RADIUS**2
BODY = NODES.index("body")
BODY_GATE = 30.0  # pixels a body may move between frames and keep its identity
PART_GATE = 26.0  # pixels from its animal's body a part may be


@dataclass(frozen=True)
class Tracks:
    """Tracked poses: points (T, 2, 5, 2) with NaN where missing, scores (T, 2, 5) in 0..1,
    and which backend computed them."""

    points: np.ndarray
    scores: np.ndarray
    backend: str


def backend() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``numpy``; LAB_TRACKING_BACKEND overrides it."""
    import os

    wanted = os.environ.get("LAB_TRACKING_BACKEND")
    if wanted:
        return wanted
    try:
        import torch
    except ImportError:
        return "numpy"
    return "cuda" if torch.cuda.is_available() else "numpy"


SATURATION = 50  # grey floor, fur and camera noise are below it; markers far above


def coloured_pixels(frames: np.ndarray, where: str) -> tuple[np.ndarray, ...]:
    """The pixels that are some marker's colour: frame, row, column, which part, and how far
    from the marker's colour (RGB distance). The per-pixel work of detection."""
    if where in ("cuda", "torch-cpu"):
        import torch

        device = "cuda" if where == "cuda" else "cpu"
        f = torch.as_tensor(frames, device=device)
        wide = f.amax(dim=-1).to(torch.int16) - f.amin(dim=-1).to(torch.int16)
        t, y, x = torch.nonzero(wide > SATURATION, as_tuple=True)
        colours = torch.as_tensor(COLOURS, device=device, dtype=torch.float32)
        # The direct formula, as NumPy's: cdist's matrix-product shortcut rounds otherwise.
        distance = torch.cdist(
            f[t, y, x].to(torch.float32), colours, compute_mode="donot_use_mm_for_euclid_dist"
        )
        nearest, part = distance.min(dim=1)
        found = (t, y, x, part, nearest)
        t, y, x, part, nearest = (a.cpu().numpy() for a in found)
    else:
        r, g, b = frames[..., 0], frames[..., 1], frames[..., 2]  # (faster than max(axis=-1))
        wide = np.maximum(np.maximum(r, g), b).astype(np.int16) - np.minimum(np.minimum(r, g), b)
        t, y, x = np.nonzero(wide > SATURATION)
        rgb = frames[t, y, x].astype(np.float32)
        distance = np.linalg.norm(rgb[:, None, :] - COLOURS[None].astype(np.float32), axis=-1)
        part = distance.argmin(axis=1)
        nearest = distance[np.arange(len(part)), part]
    near = nearest < COLOUR_TOLERANCE
    return t[near], y[near], x[near], part[near], nearest[near].astype(np.float64)


def detect(frames: np.ndarray, where: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates per frame and part: points (T, 5, 2, 2) (NaN where fewer than two blobs)
    and scores (T, 5, 2)."""
    from scipy import ndimage

    where = where or backend()
    t_all, y_all, x_all, part_all, dist_all = coloured_pixels(frames, where)
    t_count = len(frames)
    points = np.full((t_count, len(NODES), 2, 2), np.nan)
    scores = np.zeros((t_count, len(NODES), 2))
    # Blobs never join across frames: connectivity within a frame only.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    mask = np.zeros(frames.shape[:3], dtype=bool)
    mask[t_all, y_all, x_all] = True
    labels, _ = ndimage.label(mask, structure=structure)
    # One blob per connected patch and part: touching markers of two parts stay apart.
    blob_ids, blob = np.unique(labels[t_all, y_all, x_all] * len(NODES) + part_all,
                               return_inverse=True)  # fmt: skip
    count = len(blob_ids)
    weight = COLOUR_TOLERANCE - dist_all
    area = np.bincount(blob, minlength=count)
    total = np.bincount(blob, weight, minlength=count)
    cx = np.bincount(blob, weight * x_all, minlength=count) / np.maximum(total, 1e-9)
    cy = np.bincount(blob, weight * y_all, minlength=count) / np.maximum(total, 1e-9)
    frame_of = np.zeros(count, dtype=int)
    frame_of[blob] = t_all
    part_of = blob_ids % len(NODES)
    strength = total / np.maximum(area, 1)
    score = np.clip(area / EXPECTED_AREA, 0, 1) * np.clip(strength / 40.0, 0, 1)
    keep = np.flatnonzero(area >= MIN_AREA)
    # The two largest blobs of each frame and part: sort by both, then by area, largest first.
    group = frame_of[keep] * len(NODES) + part_of[keep]
    order = np.lexsort((-area[keep], group))
    keep, group = keep[order], group[order]
    first = np.r_[True, np.diff(group) != 0] if len(group) else np.zeros(0, dtype=bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(len(keep)), 0))
    rank = np.arange(len(keep)) - starts
    top, slot = keep[rank < 2], rank[rank < 2]
    points[frame_of[top], part_of[top], slot] = np.stack([cx[top], cy[top]], axis=1)
    scores[frame_of[top], part_of[top], slot] = score[top]
    return points, scores


def track(frames: np.ndarray, where: str | None = None) -> Tracks:
    """Detect and link: poses of two animals with stable identities."""
    where = where or backend()
    candidates, candidate_scores = detect(frames, where)
    t_count = len(frames)
    points = np.full((t_count, 2, len(NODES), 2), np.nan)
    scores = np.zeros((t_count, 2, len(NODES)))
    last = _first_bodies(candidates)
    velocity = np.zeros((2, 2))
    for t in range(t_count):
        predicted = last + velocity
        _attach(points[t], scores[t], candidates[t], candidate_scores[t], BODY, predicted,
                BODY_GATE)  # fmt: skip
        anchor = np.where(np.isnan(points[t, :, BODY]), predicted, points[t, :, BODY])
        for n in range(len(NODES)):
            if n != BODY:
                _attach(points[t], scores[t], candidates[t], candidate_scores[t], n, anchor,
                        PART_GATE)  # fmt: skip
        seen = ~np.isnan(points[t, :, BODY, 0])
        moved = points[t, :, BODY] - last
        velocity = np.where(seen[:, None], 0.5 * velocity + 0.5 * moved, velocity)
        last = np.where(seen[:, None], points[t, :, BODY], predicted)
    return Tracks(points=points, scores=scores, backend=where)


def _attach(
    points: np.ndarray,
    scores: np.ndarray,
    candidates: np.ndarray,
    candidate_scores: np.ndarray,
    part: int,
    near: np.ndarray,
    gate: float,
) -> None:
    """Give one frame's candidates for ``part`` to the animals whose ``near`` point (where
    the body was, or is) they are closest to, within ``gate`` pixels."""
    found = np.flatnonzero(~np.isnan(candidates[part, :, 0]))
    if not len(found):
        return
    cost = np.linalg.norm(near[:, None] - candidates[part, found][None], axis=-1)
    for animal, k in assign(cost):
        if cost[animal, k] <= gate:
            points[animal, part] = candidates[part, found[k]]
            scores[animal, part] = candidate_scores[part, found[k]]


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs of least total cost, one column per row at most: the
    assignment problem, solved by trying every way for these few animals (SciPy's solver
    would cost more to import than to use)."""
    rows, cols = cost.shape
    if rows > cols:
        return [(r, c) for c, r in assign(cost.T)]
    best = min(
        itertools.permutations(range(cols), rows),
        key=lambda chosen: sum(cost[r, c] for r, c in enumerate(chosen)),
    )
    return list(enumerate(best))


def _first_bodies(candidates: np.ndarray) -> np.ndarray:
    """Where the two animals start: the first frame in which both bodies are seen."""
    for bodies in candidates[:, BODY]:
        if not np.isnan(bodies).any():
            return np.asarray(bodies, dtype=float)
    return np.array([[80.0, 120.0], [240.0, 120.0]])


def error_against_truth(points: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Mean pixel error per body part (each frame's tracks matched to the true animals the
    way that fits best) and identity swaps (how often that best matching changes)."""
    straight = np.nanmean(np.linalg.norm(points - truth, axis=-1), axis=(1, 2))
    crossed = np.nanmean(np.linalg.norm(points[:, ::-1] - truth, axis=-1), axis=(1, 2))
    swapped = np.nan_to_num(crossed, nan=np.inf) < np.nan_to_num(straight, nan=np.inf)
    matched = np.where(swapped[:, None, None, None], points[:, ::-1], points)
    per_part = np.nanmean(np.linalg.norm(matched - truth, axis=-1), axis=(0, 1))
    decided = ~(np.isnan(straight) | np.isnan(crossed))
    changes = int(np.count_nonzero(np.diff(swapped[decided].astype(int))))
    return {
        "pixel_error": {name: round(float(e), 3) for name, e in zip(NODES, per_part, strict=True)},
        "mean_pixel_error": round(float(np.nanmean(per_part)), 3),
        "identity_swaps": changes,
    }
