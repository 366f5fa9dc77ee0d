"""The lab pipeline's shape with trivial bodies, for bench/scale.py: 8 task runs per item
(the steps of ``examples/lab_pipeline``, with the same dependencies and pools), then one
summary across all items."""

from __future__ import annotations

from legato import flow, task


@task(pool="io")
def upload(item: int) -> int:
    return item


@task(pool="gpu")
def extract(x: int) -> int:
    return x + 1


@task
def qc(up: int, ex: int) -> bool:
    return ex > up


@task(pool="cpu")
def prelim(x: int) -> int:
    return x * 2


@task(pool="gpu")
def transform(x: int) -> int:
    return x + 3


@task(pool="cpu")
def detailed(x: int) -> int:
    return x - 1


@task(pool="cpu")
def sync(a: int, b: int, ok: bool) -> int:
    return a + b if ok else 0


@task(pool="io")
def share(up: int, ex: int, tr: int) -> int:
    return up + ex + tr


@task
def summary(results: list[int]) -> int:
    return sum(results)


@flow
def one_item(item: int) -> int:
    up = upload.submit(item)
    ex = extract.submit(up)
    ok = qc.submit(up, ex)
    pre = prelim.submit(ex)
    tr = transform.submit(ex)
    det = detailed.submit(tr)
    synced = sync(pre, det, ok)
    return synced + share(up, ex, tr)


@flow
def many_items(n: int) -> int:
    return summary([f.result() for f in one_item.map(range(n))])
