"""`legato schedules ls|pause|resume|rm` and `legato triggers ls|rm|pause|resume|webhook`."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.table import Table

from legato.audit import record_local
from legato.audit import trigger as trigger_detail
from legato.cli import output
from legato.errors import UsageError
from legato.store import Store

schedules_app = typer.Typer(help="When deployments start by themselves.", no_args_is_help=True)
triggers_app = typer.Typer(help="File and webhook triggers of deployments.", no_args_is_help=True)


def _store() -> Store:
    from legato.cli import _store as store

    found: Store = store()
    return found


@schedules_app.command("ls")
def schedules_ls(
    deployment: Annotated[str | None, typer.Argument(help="Only this deployment's.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every schedule, with its next time."""
    found = _store().list_schedules(deployment)
    if json_out:
        output.print_json([s.to_json() for s in found])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "DEPLOYMENT", "WHEN", "CATCH-UP", "NEXT", "LAST", "STATE"):
        table.add_column(col, overflow="fold")
    for s in found:
        output.add_row(
            table,
            s.id[:13],
            s.deployment,
            s.describe(),
            s.catchup,
            output.iso(s.next_at) or "-",
            output.iso(s.last_at) or "-",
            "paused" if s.paused else "active",
        )
    output.out.print(table)


def _pause(ref: str, paused: bool) -> None:
    store = _store()
    count = store.set_schedules_paused(ref, paused)
    if not count:
        state = "paused" if paused else "active"
        raise UsageError(
            f"no {'active' if paused else 'paused'} schedule matches {ref!r} "
            f"(it may already be {state}; see `legato schedules ls`)"
        )
    action = "schedule.pause" if paused else "schedule.resume"
    record_local(store, action, ref, {"count": count})
    output.err.print(f"{'paused' if paused else 'resumed'} {count} schedule(s)", markup=False)


@schedules_app.command("pause")
def schedules_pause(
    ref: Annotated[str, typer.Argument(help="A deployment name, or a schedule id (prefix).")],
) -> None:
    """Stop starting runs (times passing while paused are not caught up)."""
    _pause(ref, True)


@schedules_app.command("resume")
def schedules_resume(
    ref: Annotated[str, typer.Argument(help="A deployment name, or a schedule id (prefix).")],
) -> None:
    """Start runs again, from the next scheduled time after now."""
    _pause(ref, False)


@schedules_app.command("rm")
def schedules_rm(deployment: Annotated[str, typer.Argument(help="The deployment.")]) -> None:
    """Remove every schedule of a deployment (the deployment stays)."""
    store = _store()
    count = len(store.list_schedules(deployment))
    if not count:
        raise UsageError(f"deployment {deployment!r} has no schedule")
    store.replace_schedules(deployment, [])
    record_local(store, "schedule.put", deployment, {"schedules": []})
    output.err.print(f"removed {count} schedule(s) of {deployment!r}", markup=False)


# -- triggers ------------------------------------------------------------------------------


@triggers_app.command("ls")
def triggers_ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every file and webhook trigger (webhook secrets are not shown)."""
    store = _store()
    found = store.list_triggers()
    if json_out:
        output.print_json([t.to_json() for t in found])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "KIND", "DEPLOYMENT", "WHAT", "STATE"):
        table.add_column(col, overflow="fold")
    for t in found:
        what = (
            f"{t.config.get('url')} (batch {t.config.get('batch', 1)})"
            if t.kind == "files"
            else f"POST /api/v1/hooks/{t.name} ({t.config.get('auth', 'hmac')})"
        )
        output.add_row(
            table, t.name, t.kind, t.deployment, what, "paused" if t.paused else "active"
        )
    output.out.print(table)


@triggers_app.command("rm")
def triggers_rm(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a trigger (files it already started stay recorded)."""
    store = _store()
    if not store.delete_trigger(name):
        raise UsageError(f"no trigger named {name!r}")
    record_local(store, "trigger.delete", name)
    output.err.print(f"removed trigger {name!r}", markup=False)


@triggers_app.command("pause")
def triggers_pause(name: Annotated[str, typer.Argument()]) -> None:
    """Stop a trigger from starting runs."""
    store = _store()
    if not store.set_trigger_paused(name, True):
        raise UsageError(f"no trigger named {name!r}")
    record_local(store, "trigger.pause", name)
    output.err.print(f"paused trigger {name!r}", markup=False)


@triggers_app.command("resume")
def triggers_resume(name: Annotated[str, typer.Argument()]) -> None:
    """Let a paused trigger start runs again."""
    store = _store()
    if not store.set_trigger_paused(name, False):
        raise UsageError(f"no trigger named {name!r}")
    record_local(store, "trigger.resume", name)
    output.err.print(f"resumed trigger {name!r}", markup=False)


@triggers_app.command("webhook")
def triggers_webhook(
    name: Annotated[str, typer.Argument(help="The hook's name: POST /api/v1/hooks/NAME.")],
    deployment: Annotated[str, typer.Option("--deployment", help="The deployment it starts.")],
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="PARAMETER=json.field, repeatable (default: the body)."),
    ] = None,
    auth: Annotated[
        str, typer.Option("--auth", help="hmac (signed with a shared secret) or token.")
    ] = "hmac",
    secret: Annotated[
        str | None, typer.Option("--secret", help="The shared secret (default: a new one).")
    ] = None,
) -> None:
    """Create or replace a webhook trigger; prints the secret to give the sender (once)."""
    from legato.models import Trigger
    from legato.triggers.webhooks import parse_map, webhook_config

    store = _store()
    if store.get_deployment(deployment) is None:
        raise UsageError(f"no deployment named {deployment!r} (legato deploy first)")
    config = webhook_config(auth=auth, secret=secret, mapping=parse_map(mapping or []))
    now = time.time()
    trig = Trigger(name, "webhook", deployment, config, created_at=now, updated_at=now)
    store.put_trigger(trig)
    record_local(store, "trigger.put", name, trigger_detail(trig))
    output.err.print(
        f"webhook {name!r} starts {deployment!r}: POST /api/v1/hooks/{name}", markup=False
    )
    if auth == "hmac":
        output.err.print("sign each request (docs/triggers.md); the shared secret is:")
        output.out.print(json.dumps(config["secret"]).strip('"'))
