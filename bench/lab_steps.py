"""What one recording of the lab pipeline costs, step by step (issue 18): generate N
recordings, then run each step as a plain function in this process (no orchestration), and
print the first call (which pays the imports) and the median of the others, per step.

    .venv/bin/python bench/lab_steps.py [--recordings 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).parents[1] / "examples" / "lab_pipeline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=5)
    args = parser.parse_args()
    os.environ["LEGATO_HOME"] = tempfile.mkdtemp(prefix="lab-steps-")
    sys.path.insert(0, str(EXAMPLE))
    from generate import generate  # type: ignore[import-not-found]

    from legato.loader import load_module

    incoming = Path(os.environ["LEGATO_HOME"]) / "incoming"
    paths = generate(incoming, args.recordings, noisy=())
    lab = load_module(str(EXAMPLE / "pipeline.py"))
    spent: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *call: Any) -> Any:
        start = time.perf_counter()
        value = fn(*call)
        spent.setdefault(name, []).append(time.perf_counter() - start)
        return value

    for path in paths:
        rec = timed("upload", lab.upload.fn, str(path))
        predicted = timed("extract_poses", lab.extract_poses.fn, rec)
        quality = timed("qc_report", lab.qc_report.fn, rec, predicted)
        timed("prelim_stats", lab.prelim_stats.fn, rec, predicted)
        transformed = timed("transform_poses", lab.transform_poses.fn, rec, predicted)
        timed("detailed_stats", lab.detailed_stats.fn, rec, transformed)
        timed("sync_to_database", lab.sync_to_database.fn, rec, predicted, quality, "pass")
    print(f"{'step':<18} {'first call':>10} {'then (median)':>14}")
    for name, times in spent.items():
        rest = statistics.median(times[1:]) if len(times) > 1 else float("nan")
        print(f"{name:<18} {times[0]:>9.3f}s {rest:>13.3f}s")


if __name__ == "__main__":
    main()
