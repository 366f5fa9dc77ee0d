"""Dask workloads: dask.delayed graphs run by the local threaded scheduler.

`optimize_graph=False` keeps each call a task of its own: with fusion, a chain of N
trivial calls could become one task and the per-task figure would mean nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named like the library: keep its folder off sys.path so `import dask`
# finds Dask, and reach the shared helper through bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from dask import delayed  # noqa: E402
from dask.base import compute  # noqa: E402

from workloads import _common as C  # noqa: E402


def _compute(*values: Any) -> tuple[Any, ...]:
    return tuple(compute(*values, scheduler="threads", optimize_graph=False))


def sequential(n: int) -> int:
    x = 0
    for _ in range(n):
        x = delayed(C.inc)(x)  # each call depends on the previous one: a chain
    (result,) = _compute(x)
    return int(result)


def concurrent(n: int) -> int:
    return sum(int(v) for v in _compute(*(delayed(C.inc)(i) for i in range(n))))


def pipeline(n: int) -> int:
    values = []
    for i in range(n):
        remote = delayed(C.upload)(i)
        extracted = delayed(C.extract)(remote)
        transformed = delayed(C.transform)(extracted)
        values += [remote, extracted, delayed(C.prelim_stats)(extracted), delayed(C.qc)(remote)]
        values += [delayed(C.sync)(remote), transformed, delayed(C.detailed_stats)(transformed)]
    return sum(1 for v in _compute(*values) if v is not None)


if __name__ == "__main__":
    C.main("dask", {"sequential": sequential, "concurrent": concurrent, "pipeline": pipeline})
