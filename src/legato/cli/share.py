"""`legato share create|ls|revoke|accesses`: links that give a run's data to someone without an
account (docs/sharing.md).

With LEGATO_API_URL these go through the server's API (an operator token in
LEGATO_API_TOKEN), which checks paths against its own roots and spells the link under
LEGATO_PUBLIC_URL. Without it they work on the database itself: the link is live while
`legato server start` serves that database.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from legato.audit import local_actor, record_local
from legato.cli import output
from legato.cli.connect import opened_store
from legato.errors import UsageError

share_app = typer.Typer(
    help="Links that give a run's data to collaborators without an account.",
    no_args_is_help=True,
)


def _password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password for the link", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().rstrip("\r\n")  # piped: the first line
    if not line:
        raise UsageError("--password: no password on standard input")
    return line


@share_app.command("create")
def share_create(
    run_id: Annotated[str, typer.Argument(help="The flow run to share.")],
    artifacts: Annotated[
        bool, typer.Option("--artifacts", help="Its artifacts (reports, tables, images).")
    ] = False,
    results: Annotated[bool, typer.Option("--results", help="Its stored result files.")] = False,
    paths: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            help="A file or folder (or fsspec URL) under the server's share roots; repeatable.",
        ),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Stops working after 7d (default), 12h, 2w...")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Shown on the link's page.")] = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password", help="Ask for a password on the link (prompted, or stdin's first line)."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the share as JSON.")] = False,
) -> None:
    """Make a share link and print it (last line). Without --artifacts, --results or --path,
    it shares the run's artifacts and results."""
    from legato.sharing import make_share, public_base, share_detail, share_items

    if not (artifacts or results or paths):
        artifacts = results = True
    items = share_items(artifacts=artifacts, results=results, paths=paths)
    secret_word = _password() if password else None
    with opened_store() as store:
        embedded = not store.url.startswith(("http://", "https://"))
        made = make_share(
            store,
            run_id,
            items,
            expires=expires,
            note=note,
            password=secret_word,
            created_by=local_actor().name,
            base_url=public_base(),
        )
        if embedded:
            record_local(store, "share.create", made.share.id, share_detail(made.share))
    share = made.share
    if json_out:
        output.print_json(
            {
                "id": share.id,
                "url": made.url,
                "expires_at": output.iso(share.expires_at),
                "items": [i.to_json() for i in share.items],
            }
        )
        return
    what = ", ".join(i.path or i.kind for i in share.items)
    output.err.print(
        f"share {share.id} of run {share.flow_run_id}: {what}; expires "
        f"{output.short_time(share.expires_at)}{'; password protected' if password else ''}",
        highlight=False,
        markup=False,
    )
    if embedded:
        output.err.print(
            "the link is live while `legato server start` serves this database "
            "(set LEGATO_PUBLIC_URL to the address collaborators open)",
            highlight=False,
        )
    output.out.print(made.url, markup=False, highlight=False, soft_wrap=True)


def _state(share: Any, now: float) -> str:
    if share.revoked_at is not None:
        return "revoked"
    return "live" if share.live(now) else "expired"


@share_app.command("ls")
def share_ls(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's shares.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every share, newest first (never their secrets), revoked and expired ones too."""
    from rich.table import Table

    with opened_store() as store:
        shares = store.list_shares(run_id)
    now = time.time()
    if json_out:
        output.print_json(
            [{**output.with_iso_times(s.to_json()), "state": _state(s, now)} for s in shares]
        )
        return
    if not shares:
        output.err.print("no shares yet: make one with `legato share create RUN_ID`")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "RUN", "ITEMS", "BY", "CREATED", "EXPIRES", "STATE", "NOTE"):
        wraps = col in ("ITEMS", "BY", "NOTE")
        table.add_column(col, overflow="fold", no_wrap=not wraps)
    for s in shares:
        items = ", ".join(i.path or i.kind for i in s.items)
        output.add_row(
            table,
            s.id,
            s.flow_run_id[:8],
            items + (" (password)" if s.has_password else ""),
            s.created_by,
            output.short_time(s.created_at),
            output.short_time(s.expires_at),
            _state(s, now),
            s.note or "",
        )
    output.out.print(table)


@share_app.command("revoke")
def share_revoke(
    share_id: Annotated[str, typer.Argument(help="The share's id or id prefix.")],
) -> None:
    """Revoke a share: its link answers 410 Gone from now on."""
    with opened_store() as store:
        if not store.revoke_share(share_id):
            raise UsageError(f"no live share has id {share_id!r} (see `legato share ls`)")
        record_local(store, "share.revoke", share_id)
    output.err.print(f"share {share_id!r} revoked", markup=False)


@share_app.command("accesses")
def share_accesses(
    share_id: Annotated[str, typer.Argument(help="The share's id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who used a share's link: when, from which address, what, how many bytes."""
    from rich.table import Table

    with opened_store() as store:
        if store.get_share(share_id) is None:
            raise UsageError(f"no share has id {share_id!r} (see `legato share ls`)")
        accesses = store.list_share_accesses(share_id, limit=limit)
    if json_out:
        output.print_json([output.with_iso_times(a.to_json()) for a in accesses])
        return
    if not accesses:
        output.err.print("nobody has used this link yet")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("AT", "CLIENT", "ITEM", "BYTES", "STATUS"):
        table.add_column(col, overflow="fold", no_wrap=col != "ITEM")
    for a in accesses:
        output.add_row(
            table, output.short_time(a.at), a.client, a.item, str(a.bytes), str(a.status)
        )
    output.out.print(table)
