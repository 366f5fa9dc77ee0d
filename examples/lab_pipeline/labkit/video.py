"""Video files: mp4 (H.264) written and read through the ffmpeg binary that imageio-ffmpeg
ships, so nothing but pip is needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def write_mp4(path: str | Path, frames: np.ndarray, fps: int) -> Path:
    """(T, H, W, 3) uint8 frames as an mp4 file; near-lossless, so markers keep their colour."""
    import imageio_ffmpeg

    path = Path(path)
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv444p",  # no chroma subsampling: small coloured markers survive
        output_params=["-crf", "18", "-preset", "veryfast"],
        quality=None,  # the -crf below instead
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8, one by one."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    for raw in reader:
        yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)


def read_mp4(path: str | Path) -> np.ndarray:
    """All frames (T, H, W, 3) uint8."""
    return np.stack(list(iter_frames(path)))
