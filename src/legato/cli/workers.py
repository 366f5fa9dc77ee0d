"""`legato worker start`, `legato workers ls`, `legato pools ls|create|rm`."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from legato import audit
from legato.cli import output
from legato.models import PoolType

worker_app = typer.Typer(help="Run a worker that serves one pool.", no_args_is_help=True)
workers_app = typer.Typer(help="Workers known to the server.", no_args_is_help=True)
pools_app = typer.Typer(help="Pools: their workers, capacity and queues.", no_args_is_help=True)


@worker_app.command("start")
def worker_start(
    pool: Annotated[str, typer.Option("--pool", help="The pool to serve.")],
    name: Annotated[str | None, typer.Option("--name", help="Default: POOL@host:pid.")] = None,
    resources: Annotated[
        str | None,
        typer.Option(
            "--resources", help="Capacity, e.g. gpu=2,cpu=16,mem_gb=64 (default: detected)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Task runs at once (default: CPUs).")
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds running work gets on SIGTERM.")
    ] = 30.0,
) -> None:
    """Claim and run the task runs queued for POOL until stopped (SIGTERM drains).

    For a slurm, dask or kubernetes pool (`legato pools create`), this is a bridge: each
    task run is handed to that engine instead of a local child process."""
    from legato.runtime import get_runtime
    from legato.settings import parse_resources
    from legato.worker import WorkerProcess

    rt = get_runtime()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per API request
    defined = rt.store.get_pool(pool)
    if defined is not None and defined.type is not PoolType.PROCESS:
        from legato.engines.run import run_bridge

        run_bridge(rt, defined, name=name, concurrency=concurrency, grace=grace)
        return
    capacity = parse_resources(resources) if resources else rt.settings.local_resources()
    worker = WorkerProcess(
        rt.store,
        rt.results,
        pool=pool,
        capacity=capacity,
        name=name,
        concurrency=concurrency,
        heartbeat=rt.settings.heartbeat_seconds,
        grace=grace,
        health_file=rt.settings.home / HEALTH_FILE,
    )
    worker.run()


HEALTH_FILE = "worker.health"


@worker_app.command("health")
def worker_health(
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age",
            min=1,
            help="Seconds (default: 3 heartbeat periods, LEGATO_HEARTBEAT_SECONDS).",
        ),
    ] = None,
) -> None:
    """Exit 0 if a worker on this LEGATO_HOME had a heartbeat taken by the server within
    MAX_AGE seconds, else 1: a container's or a supervisor's health check."""
    from legato.errors import LegatoError
    from legato.settings import get_settings

    settings = get_settings()
    path = settings.home / HEALTH_FILE
    limit = max_age if max_age is not None else 3 * settings.heartbeat_seconds
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        raise LegatoError(f"no worker has run on {settings.home} ({path} is missing)") from None
    if age > limit:
        raise LegatoError(f"the last heartbeat was {age:.0f} s ago (over {limit:g} s)")
    name = path.read_text().strip()
    output.err.print(f"{name}: last heartbeat {age:.0f} s ago", markup=False)


@workers_app.command("ls")
def workers_ls(
    pool: Annotated[str | None, typer.Option("--pool")] = None,
    all_workers: Annotated[bool, typer.Option("--all", help="Offline workers too.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workers: pool, capacity, use, last heartbeat."""
    from legato.runtime import get_runtime

    workers = get_runtime().store.list_workers(pool, include_offline=all_workers)
    if json_out:
        output.print_json([output.with_iso_times(w.to_json()) for w in workers])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "POOL", "STATE", "CAPACITY", "USED", "LAST HEARTBEAT"):
        table.add_column(col)
    for w in workers:
        output.add_row(
            table,
            w.name,
            w.pool,
            w.state,
            _fmt(w.capacity),
            _fmt(w.used),
            f"{time.time() - w.last_heartbeat:.0f} s ago",
        )
    output.out.print(table)


@pools_app.command("create")
def pools_create(
    name: Annotated[str, typer.Argument(help="The pool's name, as tasks give it in pool=.")],
    pool_type: Annotated[
        PoolType, typer.Option("--type", help="Who serves it: Legato's workers, or an engine.")
    ] = PoolType.PROCESS,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="KEY=VALUE for the engine, e.g. partition=gpu."),
    ] = None,
) -> None:
    """Define a pool: served by Legato's workers (process) or by an engine (a bridge)."""
    from legato.engines import check_pool, parse_options
    from legato.models import Pool
    from legato.runtime import get_runtime

    pool = Pool(name, pool_type, parse_options(option or []), time.time())
    check_pool(pool)
    store = get_runtime().store
    store.put_pool(pool)
    audit.record_local(store, "pool.put", name, audit.pool(pool))
    output.err.print(
        f"pool {name} ({pool_type}) saved; serve it with: legato worker start --pool {name}",
        markup=False,
    )


@pools_app.command("rm")
def pools_rm(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a pool's definition (its queued work stays queued)."""
    from legato.errors import UsageError
    from legato.runtime import get_runtime

    store = get_runtime().store
    if not store.delete_pool(name):
        raise UsageError(f"no pool definition named {name!r} (see legato pools ls)")
    audit.record_local(store, "pool.delete", name)
    output.err.print(f"removed pool {name}", markup=False)


@pools_app.command("ls")
def pools_ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Pools: defined ones, and those with live workers or queued work: type, workers,
    capacity, use, queue depth."""
    from legato.runtime import get_runtime

    store = get_runtime().store
    workers = store.list_workers()
    depths = store.queue_depths()
    defined = {p.name: p for p in store.list_pools()}
    waiting = store.waiting()
    rows: list[dict[str, Any]] = []
    for name in sorted({w.pool for w in workers} | set(depths) | set(defined)):
        mine = [w for w in workers if w.pool == name]
        rows.append(
            {
                "pool": name,
                "type": defined[name].type if name in defined else PoolType.PROCESS,
                "options": defined[name].options if name in defined else {},
                "workers": len(mine),
                "capacity": _sum([w.capacity for w in mine]),
                "used": _sum([w.used for w in mine]),
                "queued": depths.get(name, 0),
                "waiting": [w.to_json() for w in waiting if w.pool == name],
            }
        )
    if json_out:
        output.print_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("POOL", "TYPE", "WORKERS", "CAPACITY", "USED", "QUEUED"):
        table.add_column(col)
    for row in rows:
        output.add_row(
            table,
            str(row["pool"]),
            str(row["type"]),
            str(row["workers"]),
            _fmt(row["capacity"]),
            _fmt(row["used"]),
            str(row["queued"]),
        )
    output.out.print(table)
    _print_waiting(waiting)


def _print_waiting(waiting: list[Any]) -> None:
    """Who waits in each pool, in the order claims serve them."""
    from legato.timefmt import local_text

    pools = sorted({w.pool for w in waiting})
    for pool in pools:
        output.out.print(f"waiting in {pool} (served in this order):", markup=False)
        for w in (w for w in waiting if w.pool == pool):
            what = (
                "the run itself waits for a worker"
                if w.kind == "flow"
                else f"{w.queued} queued, {w.running} running"
            )
            output.out.print(
                f"  {w.flow} {w.flow_run_id}: {what}, priority {w.priority}, "
                f"since {local_text(w.since)}",
                markup=False,
                highlight=False,
            )


def _sum(dicts: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0.0) + v
    return total


def _fmt(d: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(d.items())) or "-"


limits_app = typer.Typer(help="Concurrency limits across all workers.", no_args_is_help=True)


def limit_key(name: str) -> str:
    """`gpu-heavy` is a tag; `pool:gpu` and `flow:lab-pipeline` name a pool or a flow."""
    kind, sep, rest = name.partition(":")
    if sep and kind in ("tag", "pool", "flow") and rest:
        return name
    if sep:
        from legato.errors import UsageError

        raise UsageError(f"bad limit name {name!r}: use TAG, tag:TAG, pool:POOL or flow:FLOW")
    return f"tag:{name}"


@limits_app.command("set")
def limits_set(
    name: Annotated[str, typer.Argument(help="TAG, or pool:POOL, or flow:FLOW.")],
    limit: Annotated[int, typer.Argument(min=0, help="Task runs RUNNING at once, at most.")],
) -> None:
    """Cap how many task runs with a tag (or of a pool, or of a flow) run at once."""
    from legato.runtime import get_runtime

    key = limit_key(name)
    store = get_runtime().store
    store.set_limit(key, limit)
    audit.record_local(store, "limit.set", key, {"limit": limit})
    output.err.print(f"limit {key} = {limit}", markup=False)


@limits_app.command("ls")
def limits_ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every concurrency limit."""
    from legato.runtime import get_runtime

    limits = get_runtime().store.list_limits()
    if json_out:
        output.print_json(limits)
        return
    for key, value in sorted(limits.items()):
        output.out.print(f"{key}\t{value}", markup=False)


@limits_app.command("rm")
def limits_rm(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a limit."""
    from legato.errors import UsageError
    from legato.runtime import get_runtime

    key = limit_key(name)
    store = get_runtime().store
    if not store.delete_limit(key):
        raise UsageError(f"no limit {key}")
    audit.record_local(store, "limit.delete", key)
    output.err.print(f"removed limit {key}", markup=False)
