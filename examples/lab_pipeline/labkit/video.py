"""Video files: mp4 (H.264) written and read through the ffmpeg binary that imageio-ffmpeg
ships, so nothing but pip is needed."""

from __future__ import annotations

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


def _decode(path: str | Path, *limit: str) -> np.ndarray:
    """Frames (T, H, W, 3) uint8, decoded by the bundled ffmpeg in one call (its stream line
    on stderr gives the size). Not imageio-ffmpeg's reader: it leaves a pipe open when a
    video ends."""
    import re
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
           *limit, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, check=False)
    log = done.stderr.decode(errors="replace")
    size = re.search(r"Video: .*?, (\d+)x(\d+)", log)
    if done.returncode != 0 or size is None:
        raise ValueError(f"cannot decode {path}: {log.strip()[-300:]}")
    width, height = int(size[1]), int(size[2])
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(-1, height, width, 3)


def read_mp4(path: str | Path) -> np.ndarray:
    """All frames (T, H, W, 3) uint8."""
    return _decode(path)


def first_frame(path: str | Path) -> np.ndarray:
    """The first frame (H, W, 3) uint8, without decoding the rest."""
    return _decode(path, "-frames:v", "1")[0]
