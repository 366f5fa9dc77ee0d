"""Tiny image helpers for the QC report: a PNG encoder (zlib only) and a track overlay."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as PNG."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def track_overlay(mean_frame: np.ndarray, track: np.ndarray, scale: int = 4) -> np.ndarray:
    """The mean frame in grey, scaled up, with the track drawn in red (start) to yellow."""
    lo, hi = float(mean_frame.min()), float(mean_frame.max())
    grey = ((mean_frame - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8)
    big = np.kron(grey, np.ones((scale, scale), dtype=np.uint8))
    rgb = np.stack([big, big, big], axis=2)
    for i, (y, x) in enumerate(track):
        t = i / max(len(track) - 1, 1)
        cy, cx = int(y * scale + scale // 2), int(x * scale + scale // 2)
        rgb[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2] = (255, int(255 * t), 0)
    return rgb
