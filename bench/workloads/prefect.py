"""Prefect 3 workloads, in Prefect's default local mode.

With no PREFECT_API_URL, Prefect's default profile ("ephemeral") starts a temporary local
API server in a subprocess (SQLite under PREFECT_HOME) for the life of this process; the
warm-up run pays for its start. Settings changed from Prefect's defaults, all set before
`import prefect` and overridable from the environment:
- PREFECT_HOME: a temp dir, so no state is shared with other runs or the user's ~/.prefect.
- PREFECT_LOGGING_LEVEL=WARNING: no INFO line per task run on the console (noise).
- PREFECT_SERVER_ANALYTICS_ENABLED=false: the server's telemetry cannot reach the
  internet from here and only logs errors ("database is locked") while trying.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is named like the library: keep its folder off sys.path so `import prefect`
# finds Prefect, and reach the shared helper through bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from workloads import _common as C  # noqa: E402

if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = home = tempfile.mkdtemp(prefix="prefect-bench-")
    # Registered before Prefect's own exit hooks, so it runs after its server has stopped.
    atexit.register(shutil.rmtree, home, ignore_errors=True)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task  # noqa: E402
from prefect.futures import wait  # noqa: E402

# Shared trivial bodies, made Prefect tasks.
inc = task(C.inc)
upload, extract, prelim_stats = task(C.upload), task(C.extract), task(C.prelim_stats)
qc, sync, transform, detailed_stats = (
    task(C.qc),
    task(C.sync),
    task(C.transform),
    task(C.detailed_stats),
)


@flow
def sequential(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@flow
def concurrent(n: int) -> int:
    futures = [inc.submit(i) for i in range(n)]
    wait(futures)
    return sum(f.result() for f in futures)


@flow
def pipeline(n: int) -> int:
    futures = []
    for i in range(n):
        remote = upload.submit(i)  # a future as an argument is a dependency
        extracted = extract.submit(remote)
        transformed = transform.submit(extracted)
        futures += [remote, extracted, prelim_stats.submit(extracted), qc.submit(remote)]
        futures += [sync.submit(remote), transformed, detailed_stats.submit(transformed)]
    wait(futures)
    return sum(1 for f in futures if f.result() is not None)


if __name__ == "__main__":
    C.main("prefect", {"sequential": sequential, "concurrent": concurrent, "pipeline": pipeline})
