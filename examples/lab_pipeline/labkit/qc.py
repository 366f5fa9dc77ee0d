"""Quality control: the measures of one recording's tracking and the verdict from thresholds.
A recording that passes needs nobody; one that fails any threshold is shown to a person."""

from __future__ import annotations

from typing import Any

import numpy as np

# The thresholds (docs/tutorial.md states them). A clean synthetic recording has no missing
# points, a mean confidence near 0.95 and no identity swap.
MAX_MISSING = 0.05  # share of body-part points not found
MIN_CONFIDENCE = 0.7  # mean score of the points found
MAX_IDENTITY_SWAPS = 0  # against the ground truth, where a recording has one


def measure(
    points: np.ndarray, scores: np.ndarray, truth_error: dict[str, Any] | None
) -> dict[str, Any]:
    """The QC measures; ``truth_error`` is the tracker's error against ground truth, if any."""
    found = ~np.isnan(points[..., 0])
    out: dict[str, Any] = {
        "frames": len(points),
        "missing_fraction": round(float(1 - found.mean()), 4),
        "mean_confidence": round(float(scores[found].mean()) if found.any() else 0.0, 4),
    }
    if truth_error is not None:
        out["identity_swaps"] = int(truth_error["identity_swaps"])
        out["mean_pixel_error"] = float(truth_error["mean_pixel_error"])
    return out


def reasons(measures: dict[str, Any]) -> list[str]:
    """Why a recording looks wrong; empty when it passes."""
    found = []
    if measures["missing_fraction"] > MAX_MISSING:
        found.append(
            f"{measures['missing_fraction']:.0%} of points missing (over {MAX_MISSING:.0%})"
        )
    if measures["mean_confidence"] < MIN_CONFIDENCE:
        found.append(f"mean confidence {measures['mean_confidence']:.2f} (under {MIN_CONFIDENCE})")
    if measures.get("identity_swaps", 0) > MAX_IDENTITY_SWAPS:
        found.append(f"{measures['identity_swaps']} identity swap(s)")
    return found
