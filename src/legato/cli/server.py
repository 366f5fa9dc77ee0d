"""`legato server start`: the HTTP API over the state database (LEGATO_DATABASE_URL)."""

from __future__ import annotations

from typing import Annotated

import typer

from legato.cli import output
from legato.errors import UsageError

server_app = typer.Typer(help="The HTTP API server.", no_args_is_help=True)


@server_app.command("start")
def server_start(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default LEGATO_SERVER_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port (default LEGATO_SERVER_PORT)."),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Serve without tokens (only on a loopback address)."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP API (/api/v1, /docs, /health, /metrics) until stopped.

    An empty database gets this Legato's schema; an older schema is never migrated here
    (run `legato db upgrade`). Tokens come from `legato tokens create`.
    """
    from legato.extras import require

    require("server", "legato server start")
    from legato.server.auth import is_loopback
    from legato.settings import get_settings

    settings = get_settings()
    host = host or settings.server_host
    port = port or settings.server_port
    if no_auth and not is_loopback(host):
        raise UsageError(
            f"refusing to serve without authentication on {host}: anyone who can reach it "
            "could run and change everything. Drop --no-auth (and use a token from "
            "`legato tokens create`), or bind 127.0.0.1"
        )
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise UsageError(f"unknown --log-level {log_level!r}: use error, warning, info or debug")

    import uvicorn

    from legato.server import create_app
    from legato.store.sql import SqlStore

    # An empty database is set up; an older one raises SchemaOutOfDate: db upgrade first.
    store = SqlStore(settings.db_url, auto_upgrade=False, create_empty=True)
    store.sole_writer = True  # clients write through us; workers reach the data only via the API
    try:
        app = create_app(store, auth=not no_auth, max_body_bytes=settings.max_body_bytes)
        if no_auth:
            output.err.print("[yellow]authentication is off (--no-auth): loopback only[/]")
        output.err.print(
            f"Legato API on http://{host}:{port} over {store.safe_url} (docs: /docs)",
            highlight=False,
            markup=False,
        )
        from legato.triggers.service import TriggerService

        service = TriggerService(store, settings).start()  # schedules, file triggers, notify
        try:
            # Long-polls hold connections up to 30 s: do not wait for them on shutdown.
            uvicorn.run(
                app,
                host=host,
                port=port,
                log_level=log_level.lower(),
                timeout_graceful_shutdown=3,
            )
        finally:
            service.stop()
    finally:
        store.close()
