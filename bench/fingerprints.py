"""What fingerprinting an argument costs, by kind and size (replay hashes every argument).

    python bench/fingerprints.py [--reps R]

Prints the best of R timings per value, in microseconds and in ms per MB for the large ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from legato.fingerprints import value_hash

MB = 1_000_000


@dataclasses.dataclass
class Settings:
    path: str
    threshold: float
    channels: list[int]


def _no_futures(value: Any) -> None:
    return None


def best_of(value: Any, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        value_hash(value, _no_futures)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    values: list[tuple[str, Any, int | None]] = [
        ("short str (a path)", "/data/2026-12/rec-0001.h5", None),
        ("int", 42, None),
        ("small dict", {"path": "a.h5", "threshold": 0.5, "ids": [1, 2, 3]}, None),
        ("dataclass", Settings("a.h5", 0.5, [1, 2, 3]), None),
        ("set of 1,000 str", {f"rec-{i:04d}" for i in range(1000)}, None),
        ("10 MB str", "x" * (10 * MB), 10 * MB),
        ("10 MB bytes", b"x" * (10 * MB), 10 * MB),
        ("list of 100,000 ints", list(range(100_000)), None),
    ]
    try:
        import numpy

        values.append(("10 MB NumPy array", numpy.zeros(10 * MB // 8), 10 * MB))
    except ImportError:
        pass
    print(f"{'argument':24s} {'us':>10s} {'ms/MB':>7s}")
    for name, value, size in values:
        t = best_of(value, args.reps)
        per_mb = f"{1000 * t / (size / MB):7.2f}" if size else ""
        print(f"{name:24s} {t * 1e6:10.1f} {per_mb}")


if __name__ == "__main__":
    main()
