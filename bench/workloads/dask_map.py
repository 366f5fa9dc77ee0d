"""Dask distributed's fan-out: `client.map` of the trivial function, then `gather`, on a
LocalCluster of 2 worker processes at Dask's defaults otherwise. Started once, before the
warm-up, so the cluster's start is not timed."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # like the other peers
sys.path.insert(0, str(HERE.parent))

from distributed import Client, LocalCluster  # noqa: E402

from workloads import _common as C  # noqa: E402


def fan_out(client: Client, n: int) -> int:
    # pure=False: fresh keys each rep, so no rep is served results a previous one left.
    futures = client.map(C.inc, range(n), pure=False)
    return sum(client.gather(futures))


if __name__ == "__main__":
    with (
        LocalCluster(n_workers=2, host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        C.main("dask-map", {"concurrent": lambda n: fan_out(client, n)})
