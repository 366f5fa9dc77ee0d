"""Synthetic recordings, as an acquisition machine would leave them: for each, a short mp4
video of two animals with five marked body parts, its ground-truth poses and its metadata.

    python examples/lab_pipeline/generate.py /data/incoming 20

For REC: REC.truth.npz (``poses``: frames x 2 animals x 5 parts x (x, y) pixels), REC.json
(session, subjects, date, fps), then REC.mp4, written in FOLDER/.partial and moved in, so a
file trigger on ``FOLDER/*.mp4`` never sees half a video.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np

try:  # the same package, run as a script or imported by path
    from labkit import scene, video
except ImportError:  # pragma: no cover
    from .labkit import scene, video  # type: ignore[no-redef]

NOISY = 45.0  # camera noise that makes a recording fail QC (a clean one has 6)
PER_SESSION = 4  # recordings per session (one day in one cage)
FIRST_DAY = dt.date(2026, 11, 30)


def make_recording(
    path: Path, seed: int, index: int, *, noisy: bool = False, frames: int = 90
) -> Path:
    """One recording at ``path`` (REC.mp4) with its sidecars; returns the video's path."""
    made = scene.simulate(seed, frames=frames, noise=NOISY if noisy else 6.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")
    np.savez_compressed(f"{stem}.truth.npz", poses=made.poses.astype(np.float32))
    day = FIRST_DAY + dt.timedelta(days=index // PER_SESSION)
    meta = {
        "recording": path.stem,
        "session": f"{day.isoformat()}-cage-{'AB'[index % 2]}",
        "recorded_on": day.isoformat(),
        "subjects": [f"m{2 * (index % 2) + 1}", f"m{2 * (index % 2) + 2}"],
        "fps": scene.FPS,
        "frames": frames,
        "nodes": list(scene.NODES),
    }
    Path(f"{stem}.json").write_text(json.dumps(meta, indent=1))
    partial = path.parent / ".partial" / path.name  # not matched by FOLDER/*.mp4
    partial.parent.mkdir(exist_ok=True)
    video.write_mp4(partial, made.frames, scene.FPS)
    os.replace(partial, path)
    return path


def generate(
    folder: str | Path,
    count: int,
    *,
    noisy: tuple[int, ...] = (3,),
    seed: int = 0,
    prefix: str = "rec",
    frames: int = 90,
) -> list[Path]:
    """``count`` new recordings named PREFIX-NNN.mp4 after those already in ``folder``; the
    ``noisy`` ones (by position in this batch) fail QC."""
    folder = Path(folder)
    start = len(list(folder.glob(f"{prefix}-*.mp4"))) if folder.exists() else 0
    return [
        make_recording(
            folder / f"{prefix}-{start + i:03d}.mp4",
            seed + start + i,
            start + i,
            noisy=i in noisy,
            frames=frames,
        )
        for i in range(count)
    ]


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "incoming"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    # Named apart from the demo's first batch (rec-NNN), so database rows never collide.
    made = generate(target, n, noisy=(), prefix="drop")
    print(f"{len(made)} recordings in {target}")
