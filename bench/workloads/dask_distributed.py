"""Dask workloads on a distributed LocalCluster (2 worker processes, 1 thread each), the
set-up people use when one process is not enough. Same graphs as dask.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

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


def _graphs() -> Any:
    """dask.py's graphs, computed here on the cluster instead of by the threaded scheduler."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dask_graphs", HERE / "dask.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._compute = _compute
    return module


if __name__ == "__main__":
    graphs = _graphs()
    C.main(
        "dask-distributed",
        {
            "sequential": graphs.sequential,
            "concurrent": graphs.concurrent,
            "pipeline": graphs.pipeline,
        },
    )
