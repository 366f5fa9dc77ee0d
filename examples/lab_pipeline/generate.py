"""Synthetic recordings: short stacks of frames with a blob moving across noise.

python examples/lab_pipeline/generate.py /data/incoming 20
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def make_recording(
    path: Path, seed: int, *, frames: int = 40, size: int = 48, noisy: bool = False
) -> Path:
    """One recording (.npz with `frames`, uint8). ``noisy`` ones fail QC."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    start = rng.uniform(8, size - 8, 2)
    velocity = rng.uniform(-0.6, 0.6, 2)
    stack = np.empty((frames, size, size), dtype=np.uint8)
    noise_level = 60.0 if noisy else 12.0
    for t in range(frames):
        cy, cx = np.clip(start + velocity * t, 3, size - 4)
        blob = 180.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
        frame = blob + rng.normal(30.0, noise_level, (size, size))
        stack[t] = np.clip(frame, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, frames=stack)
    return path


def generate(
    folder: str | Path,
    count: int,
    *,
    noisy: tuple[int, ...] = (3,),
    seed: int = 0,
    prefix: str = "rec",
) -> list[Path]:
    """``count`` new recordings named PREFIX-NNN.npz after those already in ``folder``; the
    ``noisy`` ones (by position in this batch) fail QC."""
    folder = Path(folder)
    start = len(list(folder.glob(f"{prefix}-*.npz"))) if folder.exists() else 0
    return [
        make_recording(folder / f"{prefix}-{start + i:03d}.npz", seed + start + i, noisy=i in noisy)
        for i in range(count)
    ]


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "incoming"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    # Named apart from the demo's first batch (rec-NNN), so database rows never collide.
    made = generate(target, n, noisy=(), prefix="drop")
    print(f"{len(made)} recordings in {target}")
