"""Dask workloads on a distributed LocalCluster (2 worker processes, 1 thread each), the
set-up people use when one process is not enough. Same graphs as dask.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from dask import delayed  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from workloads import _common as C  # noqa: E402

_client: Client | None = None


def _compute(*values: Any) -> tuple[Any, ...]:
    global _client
    if _client is None:  # started once, before the warm-up, so it is not timed
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        _client = Client(cluster)
    futures = _client.compute(list(values), optimize_graph=False)
    return tuple(_client.gather(futures))


def sequential(n: int) -> int:
    x = 0
    for _ in range(n):
        x = delayed(C.inc)(x)
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
    C.main(
        "dask-distributed",
        {"sequential": sequential, "concurrent": concurrent, "pipeline": pipeline},
    )
