"""The pose extraction on CUDA against NumPy, on the same synthetic frames: same points, and
how long each takes. Run by bench/gpu_check.sh on a machine with a GPU and PyTorch.

    python bench/gpu_check.py --recordings 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "lab_pipeline"))

import numpy as np
from labkit import scene, tracking  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    import torch

    assert torch.cuda.is_available(), "no CUDA device visible"
    recordings = [scene.simulate(seed, frames=args.frames) for seed in range(args.recordings)]
    tracking.track(recordings[0].frames[:10], "cuda")  # CUDA context and kernels, untimed
    out: dict[str, object] = {"device": torch.cuda.get_device_name(0)}
    for where in ("numpy", "cuda"):
        spent, found = [], []
        for rec in recordings:
            if where == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            found.append(tracking.track(rec.frames, where))
            spent.append(time.perf_counter() - start)
        out[where] = {
            "seconds_per_recording_median": round(float(np.median(spent)), 4),
            "frames_per_second": round(args.frames / float(np.median(spent)), 1),
            "mean_pixel_error": round(
                float(
                    np.mean(
                        [
                            tracking.error_against_truth(f.points, r.poses)["mean_pixel_error"]
                            for f, r in zip(found, recordings, strict=True)
                        ]
                    )
                ),
                4,
            ),
        }
        out[f"{where}_points"] = found
    same = all(
        np.allclose(a.points, b.points, equal_nan=True, atol=1e-3)
        for a, b in zip(out.pop("numpy_points"), out.pop("cuda_points"), strict=True)  # type: ignore[call-overload]
    )
    out["same_points"] = same
    print(json.dumps(out, indent=2))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
