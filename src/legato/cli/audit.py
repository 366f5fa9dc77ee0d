"""`legato audit ls`: who answered, cancelled, retried and changed what (admins).

Embedded (no LEGATO_API_URL) it reads the database itself; through a server it needs an
admin token. Rows are written by the server and by this CLI on the database, never sent by a
client (docs/decisions.md, "The audit log").
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from legato.cli import output
from legato.errors import UsageError
from legato.timefmt import span_seconds

audit_app = typer.Typer(help="The audit log: who did what, newest first.", no_args_is_help=True)


def parse_age(text: str) -> float:
    """Seconds in ``30m``, ``12h``, ``7d``, ``2w`` (or plain seconds)."""
    seconds = span_seconds(text)
    if seconds is None:
        raise UsageError(f"--since {text!r}: give an age such as 30m, 12h, 7d or 2w")
    return seconds


@audit_app.command("ls")
def audit_ls(
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only this action (run.cancel), or a prefix (token.)."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this actor (a token's name, local:USER).")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Only what was done to this id or name.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only the last 30m, 12h, 7d, 2w...")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Audit events, newest first."""
    from legato.cli import _store

    after = time.time() - parse_age(since) if since else None
    events = _store().list_audit(
        action=action, actor=actor, target=target, since=after, limit=limit
    )
    if json_out:
        output.print_json([{**e.to_json(), "at": output.iso(e.at)} for e in events])
        return
    if not events:
        output.err.print("nothing recorded" + (" matches" if action or actor or target else ""))
        return
    import json

    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("ID", "WHEN", "ACTOR", "ROLE", "ACTION", "TARGET", "DETAIL"):
        table.add_column(col, overflow="fold")
    for e in events:
        output.add_row(
            table,
            str(e.id),
            output.short_time(e.at),
            e.actor,
            e.role,
            e.action,
            e.target,
            json.dumps(e.detail, sort_keys=True) if e.detail else "",
        )
    output.out.print(table, markup=False, highlight=False)
