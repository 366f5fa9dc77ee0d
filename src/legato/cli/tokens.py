"""`legato tokens create|ls|revoke`: API tokens for the server.

Without LEGATO_API_URL these talk to the database directly (LEGATO_DATABASE_URL, or the
embedded default): that is how the first admin token is made. With it, they go through the
API, which needs an admin token in LEGATO_API_TOKEN.
"""

from __future__ import annotations

from typing import Annotated

import typer

from legato.audit import record_local
from legato.cli import output
from legato.cli.connect import opened_store
from legato.errors import UsageError
from legato.models import Role

tokens_app = typer.Typer(help="API tokens for the server.", no_args_is_help=True)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses it, e.g. gpu-workers.")],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="viewer reads; operator answers, starts deployments, cancels, retries; "
            "runner records runs, deploys and works (flow processes, workers); admin manages.",
        ),
    ] = Role.VIEWER,
    pools: Annotated[
        str | None,
        typer.Option("--pools", help="Only these pools (gpu,cpu): what its workers may claim."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Stops working after 90d, 12h, 2w...")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the token as JSON.")] = False,
) -> None:
    """Create a token and print its secret: it is shown this once (only a hash is kept)."""
    import time

    from legato.timefmt import span_seconds

    pool_list = None if pools is None else [p for p in pools.split(",") if p.strip()]
    expires_at = None
    if expires is not None:
        seconds = span_seconds(expires)
        if seconds is None or seconds <= 0:
            raise UsageError(f"--expires {expires!r}: give a span such as 90d, 12h or 2w")
        expires_at = time.time() + seconds
    with opened_store() as store:
        token, secret = store.create_token(name, role, pools=pool_list, expires_at=expires_at)
        detail = {"name": token.name, "role": token.role, "pools": token.pools}
        record_local(store, "token.create", token.id, {**detail, "expires_at": expires_at})
    if json_out:
        output.print_json({**token.to_json(), "token": secret})
        return
    output.out.print(secret, markup=False, highlight=False)
    output.err.print(
        f"token {token.name!r} ({token.role.value}, id {token.id}) created; copy it now, it "
        "is not shown again. Use it as LEGATO_API_TOKEN.",
        highlight=False,
        markup=False,
    )


@tokens_app.command("ls")
def tokens_ls(
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every token (never their secrets), revoked ones too."""
    from rich.table import Table

    with opened_store() as store:
        tokens = store.list_tokens()
    if json_out:
        output.print_json([output.with_iso_times(t.to_json()) for t in tokens])
        return
    if not tokens:
        output.err.print("no tokens yet: create one with `legato tokens create --name NAME`")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "NAME", "ROLE", "POOLS", "CREATED", "LAST USED", "EXPIRES", "REVOKED"):
        table.add_column(col, overflow="fold")
    for t in tokens:
        output.add_row(
            table,
            t.id,
            t.name,
            t.role.value,
            "all" if t.pools is None else ",".join(t.pools),
            output.short_time(t.created_at),
            output.short_time(t.last_used_at),
            output.short_time(t.expires_at) if t.expires_at else "never",
            output.short_time(t.revoked_at),
        )
    output.out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    id_or_name: Annotated[str, typer.Argument(help="The token's id, id prefix or name.")],
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    with opened_store() as store:
        if not store.revoke_token(id_or_name):
            raise UsageError(
                f"no live token has id or name {id_or_name!r} (see `legato tokens ls`)"
            )
        record_local(store, "token.revoke", id_or_name)
    output.err.print(f"token {id_or_name!r} revoked", markup=False)
