"""A synthetic arena: two animals walking, turning and passing each other, each with five
marked body parts, filmed from above. Ground truth is exact; the video adds noise.

Every body part carries a coloured marker (the same colours on both animals), so which
animal a point belongs to is for the tracker to work out, as with real markerless tracking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NODES = ("nose", "left_ear", "right_ear", "body", "tail_base")
EDGES = (("nose", "left_ear"), ("nose", "right_ear"), ("left_ear", "body"),
         ("right_ear", "body"), ("body", "tail_base"))  # fmt: skip
# Marker colours (RGB), far apart in hue so that video compression keeps them apart.
COLOURS = np.array(
    [(255, 40, 40), (40, 220, 40), (60, 90, 255), (250, 230, 40), (235, 40, 235)], dtype=float
)
# Where each marker sits on an animal, in its own frame: x forward, y to the left (pixels).
BODY_PLAN = np.array([(16.0, 0.0), (8.0, 6.0), (8.0, -6.0), (0.0, 0.0), (-14.0, 0.0)])
WIDTH, HEIGHT, FPS = 320, 240, 30
MARKER_RADIUS = 2.6
BACKGROUND = 45.0
FUR = 120.0  # the animals' bodies: lighter than the floor, greyish


@dataclass(frozen=True)
class Recording:
    """One synthetic recording: frames (T, H, W, 3) uint8 and true poses (T, 2, 5, 2) as
    (x, y) pixels."""

    frames: np.ndarray
    poses: np.ndarray


def walk(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre positions (T, 2, 2) and headings (T, 2) of two animals: a smooth random walk
    that turns away from the walls and starts them on a path that crosses."""
    margin = 30.0
    pos = np.array([[margin + 20, HEIGHT / 2 - 25], [WIDTH - margin - 20, HEIGHT / 2 + 25]])
    pos = pos + rng.uniform(-10, 10, pos.shape)
    heading = np.array([0.0, np.pi]) + rng.uniform(-0.4, 0.4, 2)
    speed = rng.uniform(1.6, 2.4, 2)
    centres = np.empty((frames, 2, 2))
    headings = np.empty((frames, 2))
    turn = np.zeros(2)
    for t in range(frames):
        turn = 0.85 * turn + rng.normal(0, 0.05, 2)
        heading = heading + turn
        ahead = pos + 25 * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        for a in range(2):  # steer back into the arena before reaching a wall
            if not (
                margin < ahead[a, 0] < WIDTH - margin and margin < ahead[a, 1] < HEIGHT - margin
            ):
                to_centre = np.arctan2(HEIGHT / 2 - pos[a, 1], WIDTH / 2 - pos[a, 0])
                heading[a] += 0.25 * np.angle(np.exp(1j * (to_centre - heading[a])))
        gap = pos[1] - pos[0]
        if np.hypot(*gap) > 70:  # apart: each drifts towards the other (they are social)
            for a, towards in ((0, gap), (1, -gap)):
                wanted = np.arctan2(towards[1], towards[0])
                heading[a] += 0.06 * np.angle(np.exp(1j * (wanted - heading[a])))
        elif np.hypot(*gap) < 20:  # close: each turns away (one may hide the other's markers)
            for a, away in ((0, -gap), (1, gap)):
                wanted = np.arctan2(away[1], away[0])
                heading[a] += 0.35 * np.angle(np.exp(1j * (wanted - heading[a])))
        pos = pos + speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        pos = np.clip(pos, 18, [WIDTH - 18, HEIGHT - 18])
        centres[t], headings[t] = pos, heading
    return centres, headings


def body_parts(centres: np.ndarray, headings: np.ndarray) -> np.ndarray:
    """True marker positions (T, 2, 5, 2) from each animal's centre and heading."""
    cos, sin = np.cos(headings)[..., None], np.sin(headings)[..., None]
    x = centres[..., 0:1] + cos * BODY_PLAN[:, 0] - sin * BODY_PLAN[:, 1]
    y = centres[..., 1:2] + sin * BODY_PLAN[:, 0] + cos * BODY_PLAN[:, 1]
    return np.stack([x, y], axis=-1)


def render(
    poses: np.ndarray, headings: np.ndarray, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8: the floor, both bodies (animal 1 drawn over animal 0, so it
    hides what lies under it), the markers, and Gaussian noise of ``noise`` grey levels."""
    frames = np.empty((len(poses), HEIGHT, WIDTH, 3), dtype=np.uint8)
    grain = rng.normal(0.0, noise, (4, HEIGHT, WIDTH, 1)).astype(np.float32)
    for t in range(len(poses)):
        img = np.full((HEIGHT, WIDTH, 3), BACKGROUND, dtype=np.float32)
        for a in range(2):
            _draw_animal(img, poses[t, a], headings[t, a])
        # Fresh grain each frame, cheaply: a stored field, shifted and flipped at random.
        field = np.roll(grain[t % 4], rng.integers(0, WIDTH), axis=1)
        img += field if rng.random() < 0.5 else field[::-1]
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def _window(cx: float, cy: float, r: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """The pixels within ``r`` of (cx, cy): their rows, columns and coordinates."""
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, HEIGHT)
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, WIDTH)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return slice(y0, y1), slice(x0, x1), xx, yy


def _draw_animal(img: np.ndarray, pose: np.ndarray, heading: float) -> None:
    centre = pose[NODES.index("body")]
    rows, cols, xx, yy = _window(centre[0], centre[1], 22)
    c, s = np.cos(heading), np.sin(heading)
    dx, dy = xx - centre[0], yy - centre[1]
    along, across = dx * c + dy * s, -dx * s + dy * c
    img[rows, cols][((along - 1) / 19) ** 2 + (across / 9) ** 2 <= 1.0] = FUR
    for n, (px, py) in enumerate(pose):
        rows, cols, xx, yy = _window(px, py, MARKER_RADIUS + 1)
        img[rows, cols][(xx - px) ** 2 + (yy - py) ** 2 <= MARKER_RADIUS**2] = COLOURS[n]


def simulate(seed: int, frames: int = 90, noise: float = 6.0) -> Recording:
    """One recording; ``noise`` around 6 is a clean camera, 45 a failing one."""
    rng = np.random.default_rng(seed)
    centres, headings = walk(rng, frames)
    poses = body_parts(centres, headings)
    return Recording(frames=render(poses, headings, rng, noise), poses=poses)
