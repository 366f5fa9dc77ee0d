"""Legato workloads: durable flows on SQLite in a fresh $LEGATO_HOME per rep."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is named like the library: keep its folder off sys.path so `import legato`
# finds the package, and reach the shared helper through bench/.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from workloads import _common as C  # noqa: E402

try:
    import legato
except ImportError:  # not installed in this interpreter: use the checkout's src/
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    import legato

from legato import flow, task  # noqa: E402
from legato.runtime import get_runtime  # noqa: E402
from legato.testing import replace_runtime  # noqa: E402

# Shared trivial bodies, made Legato tasks.
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
    legato.wait(futures)
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
    legato.wait(futures)
    return sum(1 for f in futures if f.result() is not None)


_homes: list[str] = []


def fresh_home() -> None:
    """A new, empty LEGATO_HOME and a new runtime on it for every rep.

    Legato caches its settings and runtime per process; replace_runtime() is its documented
    way to pick up a changed LEGATO_HOME. The runtime (store, schema) is built here, so the
    timed flow call does not pay for opening the database.
    """
    _check_last_home_used()
    home = tempfile.mkdtemp(prefix="legato-bench-")
    _homes.append(home)
    os.environ["LEGATO_HOME"] = home
    replace_runtime()
    get_runtime()


def _check_last_home_used() -> None:
    # Say so if Legato ignored LEGATO_HOME (e.g. read it once at import): the reps
    # would then share one database and the numbers would mean something else.
    if _homes and not any(Path(_homes[-1]).iterdir()):
        print(f"[legato] warning: nothing written to LEGATO_HOME={_homes[-1]}", file=sys.stderr)


if __name__ == "__main__":
    try:
        C.main(
            "legato",
            {"sequential": sequential, "concurrent": concurrent, "pipeline": pipeline},
            fresh_home,
        )
    finally:
        _check_last_home_used()
        replace_runtime()  # close the last store before removing its folder
        for home in _homes:
            shutil.rmtree(home, ignore_errors=True)
