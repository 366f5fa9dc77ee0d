"""`legato deploy` and `legato deployments ls|show|rm`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from legato.audit import record_local
from legato.cli import output
from legato.errors import UsageError
from legato.models import PRIORITY_MAX, PRIORITY_MIN

deployments_app = typer.Typer(help="Flows registered to run on pools.", no_args_is_help=True)


def priority_option(what: str) -> Any:
    """``--priority N`` of `legato run` and `legato deploy`: -100 to 100, higher first."""
    return typer.Option(
        "--priority",
        min=PRIORITY_MIN,
        max=PRIORITY_MAX,
        help=f"{what} -100 to 100; higher is claimed first from a pool.",
    )


def deploy(
    ref: Annotated[str, typer.Argument(help="FILE.py:FLOW (or module:FLOW).")],
    name: Annotated[str, typer.Option("--name", help="The name `legato run NAME` uses.")],
    pool: Annotated[str, typer.Option("--pool", help="The pool whose workers run it.")] = "default",
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="Default NAME=VALUE, repeatable.")
    ] = None,
    params_file: Annotated[Path | None, typer.Option("--params-file")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag runs, repeatable.")] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help='Start on a cron schedule, e.g. "0 2 * * 1".')
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of --cron (IANA name).")] = "UTC",
    every: Annotated[
        float | None, typer.Option("--every", help="Start every N seconds.", min=0.001)
    ] = None,
    catchup: Annotated[
        str, typer.Option("--catchup", help="Times missed while down: skip, latest or all.")
    ] = "skip",
    on_new_files: Annotated[
        str | None,
        typer.Option("--on-new-files", help='Start a run per new file: "/data/in/*.h5" or URL.'),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Files per run (--on-new-files; paths list).")
    ] = 1,
    settle: Annotated[
        float, typer.Option("--settle", min=0, help="Seconds a file must stop growing.")
    ] = 5.0,
    priority: Annotated[
        int | None, priority_option("Its runs' priority (default: the flow's).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a flow so that `legato run NAME` starts it on a worker of POOL; with --cron,
    --every or --on-new-files it also starts by itself (docs/triggers.md)."""
    from legato.cli import _store, parse_params
    from legato.deployments import deploy as do_deploy
    from legato.loader import load_flow

    flow = load_flow(ref)
    params = parse_params(flow.parameter_schema(), param or [], params_file)
    from legato.triggers.setup import check_options, configure

    check_options(cron=cron, tz=tz, every=every, catchup=catchup, on_new_files=on_new_files)
    store = _store()
    dep = do_deploy(
        store, flow, name=name, pool=pool, parameters=params, tags=tag or [], priority=priority
    )
    started_by = configure(
        store,
        dep,
        cron=cron,
        tz=tz,
        every=every,
        catchup=catchup,
        on_new_files=on_new_files,
        batch=batch,
        settle=settle,
    )
    if json_out:
        output.print_json({**dep.to_json(), "triggers": started_by})
        return
    output.err.print(
        f"deployed {dep.flow} as {dep.name!r} on pool {dep.pool} (version {dep.version}); "
        f"start it with `legato run {dep.name}`",
        markup=False,
    )
    for line in started_by:
        output.err.print(f"  also starts {line}", highlight=False, markup=False)


@deployments_app.command("ls")
def deployments_ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every deployment."""
    from legato.cli import _store

    deps = _store().list_deployments()
    if json_out:
        output.print_json([output.with_iso_times(d.to_json()) for d in deps])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "FLOW", "POOL", "PRIORITY", "VERSION", "SOURCE", "PARAMETERS"):
        table.add_column(col, overflow="fold")
    for d in deps:
        output.add_row(
            table,
            *(d.name, d.flow, d.pool, str(d.priority), d.version or "-", d.source),
            str(d.parameters),
        )
    output.out.print(table)


@deployments_app.command("show")
def deployments_show(name: Annotated[str, typer.Argument()]) -> None:
    """One deployment as JSON, with the parameter schema its runs are checked against."""
    from legato.cli import _store

    dep = _store().get_deployment(name)
    if dep is None:
        raise UsageError(f"no deployment named {name!r}")
    output.print_json(output.with_iso_times(dep.to_json()))


@deployments_app.command("rm")
def deployments_rm(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a deployment (its runs stay)."""
    from legato.cli import _store

    store = _store()
    if not store.delete_deployment(name):
        raise UsageError(f"no deployment named {name!r}")
    record_local(store, "deployment.delete", name)
    output.err.print(f"removed deployment {name!r}", markup=False)
