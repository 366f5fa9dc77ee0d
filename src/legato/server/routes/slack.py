"""The Slack app: interactions and slash commands (signed by Slack), and its manifest."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from legato.errors import UsageError
from legato.models import Role
from legato.server.routes._common import Routes
from legato.store.operations import API

routes = Routes(bounded=False, signed=True)


def _slack_app(request: Request) -> Any:
    """The Slack app of this server, made on first use."""
    found = getattr(request.app.state, "slack", None)
    if found is None:
        from legato.integrations.slack import SlackApp
        from legato.settings import get_settings

        found = request.app.state.slack = SlackApp(request.app.state.store, get_settings())
    return found


@routes.add("POST", API + "/slack/interactions", None, tags=["slack"])
async def slack_interactions(request: Request) -> Any:
    """Button clicks and modal submissions from Slack (signed by Slack)."""
    body = await request.body()
    app_ = _slack_app(request)
    status, answer = await anyio.to_thread.run_sync(
        lambda: app_.handle_interaction(body, dict(request.headers))
    )
    if answer is None:
        return Response(status_code=status)
    return JSONResponse(answer, status_code=status)


@routes.add("POST", API + "/slack/commands", None, tags=["slack"])
async def slack_commands(request: Request) -> Any:
    """The ``/legato`` slash command (signed by Slack)."""
    body = await request.body()
    app_ = _slack_app(request)
    status, answer = await anyio.to_thread.run_sync(
        lambda: app_.handle_command(body, dict(request.headers))
    )
    return JSONResponse(answer, status_code=status)


@routes.add("GET", API + "/slack-manifest", Role.VIEWER, tags=["slack"])
def slack_manifest(
    url: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The Slack app manifest for this server (``url`` defaults to LEGATO_PUBLIC_URL)."""
    from legato.integrations.slack import manifest
    from legato.settings import get_settings

    base = url or get_settings().public_url
    if not base:
        raise UsageError("give ?url=https://your-server or set LEGATO_PUBLIC_URL")
    return manifest(base)
