"""Plain-Python floor: the same workloads with no orchestrator at all.

sequential is a loop of plain calls; concurrent and pipeline use a ThreadPoolExecutor,
the pipeline starting each step when its parent's future completes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # like the other peers
sys.path.insert(0, str(HERE.parent))

from workloads import _common as C  # noqa: E402


def sequential(n: int) -> int:
    x = 0
    for _ in range(n):
        x = C.inc(x)
    return x


def concurrent(n: int) -> int:
    with ThreadPoolExecutor() as pool:
        futures = [pool.submit(C.inc, i) for i in range(n)]
        wait(futures)
        return sum(f.result() for f in futures)


def _then(pool: ThreadPoolExecutor, parent: Future[int], fn: Callable[[int], int]) -> Future[int]:
    """Run fn(parent's result) on the pool once parent is done: a dependency, no blocked thread."""
    out: Future[int] = Future()

    def start(done: Future[int]) -> None:
        try:
            inner = pool.submit(fn, done.result())
        except BaseException as exc:  # parent failed: pass it on
            out.set_exception(exc)
            return
        inner.add_done_callback(
            lambda f: out.set_exception(e) if (e := f.exception()) else out.set_result(f.result())
        )

    parent.add_done_callback(start)
    return out


def pipeline(n: int) -> int:
    with ThreadPoolExecutor() as pool:
        futures: list[Future[int]] = []
        for i in range(n):
            remote = pool.submit(C.upload, i)
            extracted = _then(pool, remote, C.extract)
            transformed = _then(pool, extracted, C.transform)
            futures += [
                remote,
                extracted,
                _then(pool, extracted, C.prelim_stats),
                _then(pool, remote, C.qc),
            ]
            futures += [
                _then(pool, remote, C.sync),
                transformed,
                _then(pool, transformed, C.detailed_stats),
            ]
        wait(futures)
        return sum(1 for f in futures if f.result() is not None)


if __name__ == "__main__":
    C.main("threads", {"sequential": sequential, "concurrent": concurrent, "pipeline": pipeline})
