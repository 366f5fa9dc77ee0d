"""`legato notify add|ls|rm|log` and `legato slack manifest`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from legato import audit
from legato.cli import output
from legato.errors import UsageError
from legato.store import Store

notify_app = typer.Typer(
    help="Notification rules: run events to Slack, email, webhooks.", no_args_is_help=True
)
slack_app = typer.Typer(help="The Slack app (docs/slack.md).", no_args_is_help=True)


def _store() -> Store:
    from legato.cli import _store as store

    found: Store = store()
    return found


@notify_app.command("add")
def notify_add(
    channel: Annotated[
        str, typer.Argument(help="slack:#channel, email:someone@lab.org or webhook:https://...")
    ],
    on: Annotated[
        str, typer.Option("--on", help="Events: failed,crashed,paused,completed,cancelled...")
    ] = "failed,crashed",
    flow: Annotated[str | None, typer.Option("--flow", help="Only this flow's runs.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send these run events to a channel (the server sends them; retried, deduplicated)."""
    from legato.notify.rules import make_rule

    rule = make_rule(on.split(","), channel, flow)
    store = _store()
    store.add_notify_rule(rule)
    audit.record_local(store, "rule.add", rule.id, audit.rule(rule))
    if json_out:
        output.print_json(rule.to_json())
        return
    output.err.print(
        f"rule {rule.id[:13]}: {', '.join(rule.events)} of {flow or 'every flow'} -> {channel}",
        markup=False,
    )


@notify_app.command("ls")
def notify_ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every rule."""
    rules = _store().list_notify_rules()
    if json_out:
        output.print_json([r.to_json() for r in rules])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "EVENTS", "FLOW", "CHANNEL"):
        table.add_column(col, overflow="fold")
    for r in rules:
        output.add_row(table, r.id[:13], ",".join(r.events), r.flow or "*", r.channel)
    output.out.print(table)


@notify_app.command("rm")
def notify_rm(
    rule_id: Annotated[str, typer.Argument(help="Rule id (or a unique prefix).")],
) -> None:
    """Remove a rule."""
    store = _store()
    if not store.delete_notify_rule(rule_id):
        raise UsageError(f"no notification rule {rule_id!r} (see `legato notify ls`)")
    audit.record_local(store, "rule.delete", rule_id)
    output.err.print(f"removed rule {rule_id}", markup=False)


@notify_app.command("log")
def notify_log(
    failed: Annotated[bool, typer.Option("--failed", help="Only messages that failed.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages sent, waiting and failed, newest first, with the last error."""
    found = _store().list_notifications(states=["failed"] if failed else None, limit=limit)
    if json_out:
        output.print_json([n.to_json() for n in found])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("CREATED", "EVENT", "CHANNEL", "RUN", "STATE", "TRIES", "ERROR"):
        table.add_column(col, overflow="fold")
    for n in found:
        output.add_row(
            table,
            output.short_time(n.created_at),
            n.event,
            n.channel,
            (n.flow_run_id or "-")[:13],
            n.state,
            str(n.attempts),
            n.last_error or "",
        )
    output.out.print(table)


@slack_app.command("manifest")
def slack_manifest(
    url: Annotated[
        str | None,
        typer.Option("--url", help="The server's public URL (default LEGATO_PUBLIC_URL)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The app's name in Slack.")] = "Legato",
) -> None:
    """Print the Slack app manifest: paste it at api.slack.com/apps -> From a manifest."""
    from legato.integrations.slack import manifest
    from legato.settings import get_settings

    base = url or get_settings().public_url
    if not base:
        raise UsageError("give --url https://your-legato-server (or set LEGATO_PUBLIC_URL)")
    output.out.print(json.dumps(manifest(base, name), indent=2))
