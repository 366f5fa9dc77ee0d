"""The lab pipeline's shape with trivial bodies, for bench/scale.py: 7 task runs per item."""

from __future__ import annotations

from legato import flow, task


@task(pool="io")
def upload(item: int) -> int:
    return item


@task(pool="gpu")
def extract(x: int) -> int:
    return x + 1


@task
def qc(x: int) -> bool:
    return x >= 0


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


@flow
def one_item(item: int) -> int:
    up = upload.submit(item)
    ex = extract.submit(up)
    ok = qc.submit(up)
    pre = prelim.submit(ex)
    tr = transform.submit(ex)
    det = detailed.submit(tr)
    return sync(pre, det, ok)


@flow
def many_items(n: int) -> int:
    total = 0
    for f in one_item.map(range(n)):
        total += f.result()
    return total
