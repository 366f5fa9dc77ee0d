"""Poses in and out of SLEAP ``.slp`` files (sleap-io), and the arithmetic done on them: gap
filling, smoothing and egocentric alignment. Arrays are (frames, animals, parts, 2) in
pixels, NaN where a point is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .scene import EDGES, NODES

MAX_GAP = 15  # frames: longer gaps stay missing rather than being made up


def skeleton() -> Any:
    import sleap_io as sio

    return sio.Skeleton(nodes=list(NODES), edges=[list(e) for e in EDGES], name="mouse")


def save_slp(
    path: str | Path,
    points: np.ndarray,
    scores: np.ndarray,
    video: str,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """A predictions file: one PredictedInstance per animal and frame where any of its parts
    was found, with per-point scores, on two tracks (one per animal)."""
    import sleap_io as sio

    skel = skeleton()
    tracks = [sio.Track(name=f"animal {a}") for a in range(points.shape[1])]
    movie = sio.Video(filename=video, open_backend=False)
    frames = []
    for t in range(len(points)):
        instances = []
        for a, track in enumerate(tracks):
            seen = ~np.isnan(points[t, a, :, 0])
            if not seen.any():
                continue
            instances.append(
                sio.PredictedInstance.from_numpy(
                    points_data=points[t, a],
                    point_scores=np.where(seen, scores[t, a], 0.0),
                    score=float(scores[t, a][seen].mean()),
                    skeleton=skel,
                    track=track,
                    tracking_score=1.0,
                )
            )
        if instances:
            frames.append(sio.LabeledFrame(video=movie, frame_idx=t, instances=instances))
    labels = sio.Labels(
        labeled_frames=frames,
        videos=[movie],
        skeletons=[skel],
        tracks=tracks,
        provenance=dict(provenance or {}),
    )
    path = Path(path)
    sio.save_slp(labels, str(path), verbose=False)
    return path


def load_slp(path: str | Path, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points (T, animals, parts, 2) and scores (T, animals, parts) from a predictions file;
    ``frames`` pads the end with missing frames (a file holds only frames with instances)."""
    import sleap_io as sio

    labels = sio.load_slp(str(path), open_videos=False)
    data = labels.numpy(return_confidence=True, user_instances=False)  # (T, tracks, nodes, 3)
    if frames is not None and len(data) < frames:
        pad = np.full((frames - len(data), *data.shape[1:]), np.nan)
        data = np.concatenate([data, pad])
    return data[..., :2], np.nan_to_num(data[..., 2])


def fill_gaps(points: np.ndarray, max_gap: int = MAX_GAP) -> np.ndarray:
    """Linear interpolation over time of gaps of at most ``max_gap`` frames, per coordinate."""
    out = points.copy()
    t = np.arange(len(points))
    flat = out.reshape(len(points), -1)
    for column in flat.T:
        missing = np.isnan(column)
        if missing.all() or not missing.any():
            continue
        filled = np.interp(t, t[~missing], column[~missing])
        run_start = np.flatnonzero(np.diff(np.r_[0, missing.astype(int)]) == 1)
        run_end = np.flatnonzero(np.diff(np.r_[missing.astype(int), 0]) == -1)
        for a, b in zip(run_start, run_end, strict=True):
            inside = a > 0 and b < len(column) - 1  # never extrapolate past either end
            if inside and b - a + 1 <= max_gap:
                column[a : b + 1] = filled[a : b + 1]
    return out


def smooth(points: np.ndarray, window: int = 7) -> np.ndarray:
    """Savitzky-Golay smoothing over time (a quadratic fitted in each ``window`` frames),
    within each stretch of frames where the point was seen, so a gap never pulls its
    neighbours. The first and last ``window // 2`` frames of a stretch, stretches shorter
    than ``window`` and missing points stay as they are. Its coefficients take three lines
    of NumPy, where importing scipy.signal takes more than a second."""
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=float)
    weights = np.linalg.pinv(np.vander(offsets, 3, increasing=True))[0]
    out = points.copy()
    flat = out.reshape(len(points), -1)
    for column in flat.T:
        seen = ~np.isnan(column)
        edges = np.diff(np.r_[0, seen.astype(int), 0])
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if end - start < window:
                continue
            run = column[start:end].copy()
            column[start + half : end - half] = np.convolve(run, weights[::-1], mode="valid")
    return out


def egocentric(points: np.ndarray) -> np.ndarray:
    """Each animal in its own frame: its body at the origin, tail base to nose along +x."""
    body, nose, tail = (points[:, :, NODES.index(n)] for n in ("body", "nose", "tail_base"))
    axis = nose - tail
    angle = np.arctan2(axis[..., 1], axis[..., 0])[..., None]
    shifted = points - body[:, :, None]
    cos, sin = np.cos(-angle), np.sin(-angle)
    x = shifted[..., 0] * cos - shifted[..., 1] * sin
    y = shifted[..., 0] * sin + shifted[..., 1] * cos
    return np.stack([x, y], axis=-1)
