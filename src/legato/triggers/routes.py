"""HTTP routes of schedules, triggers, notifications, webhooks and the Slack app.

``include(app, store)`` adds them to the server's FastAPI app (``create_app`` calls it).
Management routes take the API's bearer tokens and roles (viewer reads, operator writes);
``/api/v1/hooks/NAME`` authenticates per hook (HMAC signature or token, see webhooks.py) and
``/api/v1/slack/*`` by Slack's request signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from legato.errors import UsageError
from legato.models import Notification, NotifyRule, Role, Schedule
from legato.server.auth import require
from legato.store import Store
from legato.store.wire import Changed, Count, FoundTrigger, RuleIn, SchedulesIn, TriggerIn

Name = Annotated[str, Path(min_length=1, max_length=200)]


def check_schedule(sch: Schedule) -> None:
    """UsageError naming what is wrong with a schedule sent over the API."""
    from legato.models import CATCHUP_POLICIES
    from legato.triggers.scheduler import _zone, check_cron

    if (sch.cron is None) == (sch.every is None):
        raise UsageError("a schedule needs either cron or every")
    if sch.cron is not None:
        check_cron(sch.cron, sch.timezone)
    else:
        _zone(sch.timezone)
        if sch.every is None or sch.every <= 0:
            raise UsageError("every must be a positive number of seconds")
    if sch.catchup not in CATCHUP_POLICIES:
        raise UsageError(f"catchup must be one of {', '.join(CATCHUP_POLICIES)}")


def include(app: FastAPI, store: Store) -> None:
    from legato.server.app import API, ROLE_KEY

    def route(method: str, path: str, role: Role | None, **options: Any) -> Callable[..., Any]:
        # Routes without a role authenticate by signature (hooks, Slack): no ROLE_KEY.
        extra: dict[str, Any] = {ROLE_KEY: role.value} if role else {"x-legato-auth": "signed"}
        deps = [Depends(require(role))] if role is not None else []
        return app.api_route(
            API + path, methods=[method], dependencies=deps, openapi_extra=extra, **options
        )

    V, O = Role.VIEWER, Role.OPERATOR  # noqa: E741

    # -- schedules ----------------------------------------------------------------------------

    @route("GET", "/schedules", V, tags=["schedules"])
    def list_schedules(
        deployment: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[Schedule]:
        """Schedules, by deployment."""
        return store.list_schedules(deployment)

    @route("PUT", "/deployments/{name}/schedules", O, status_code=204, tags=["schedules"])
    def replace_schedules(name: Name, body: SchedulesIn) -> None:
        """Make these the deployment's only schedules (an empty list removes them)."""
        for sch in body.schedules:
            if sch.deployment != name:
                raise UsageError("every schedule's deployment must match the path")
            check_schedule(sch)
        store.replace_schedules(name, body.schedules)

    @route("POST", "/schedules/{ref}/pause", O, tags=["schedules"])
    def pause_schedules(ref: Name) -> Count:
        """Pause a schedule (by id or id prefix) or every schedule of a deployment."""
        return Count(count=store.set_schedules_paused(ref, True))

    @route("POST", "/schedules/{ref}/resume", O, tags=["schedules"])
    def resume_schedules(ref: Name) -> Count:
        """Resume: the next run is the next scheduled time from now (no catch-up)."""
        return Count(count=store.set_schedules_paused(ref, False))

    @route("GET", "/deployments/{name}/scheduled-runs", V, tags=["schedules"])
    def scheduled_runs(name: Name) -> list[tuple[float, str]]:
        """(scheduled time, flow run id) of every run the deployment's schedules started."""
        return store.scheduled_runs(name)

    # -- triggers -----------------------------------------------------------------------------

    @route("GET", "/triggers", V, tags=["triggers"])
    def list_triggers(
        kind: Annotated[str | None, Query(max_length=20)] = None,
    ) -> list[dict[str, Any]]:
        """File and webhook triggers (webhook secrets are not shown)."""
        return [t.to_json() for t in store.list_triggers(kind)]

    @route("GET", "/triggers/{name}", V, tags=["triggers"])
    def get_trigger(name: Name) -> FoundTrigger:
        """A trigger by name (null if none; its secret is not shown)."""
        trig = store.get_trigger(name)
        return FoundTrigger(trigger=None if trig is None else trig.to_json())

    @route("PUT", "/triggers/{name}", O, status_code=204, tags=["triggers"])
    def put_trigger(name: Name, body: TriggerIn) -> None:
        """Create or replace a trigger (its name must match the path)."""
        if body.trigger.name != name:
            raise UsageError("body.trigger.name must match the path")
        if body.trigger.kind not in ("files", "webhook"):
            raise UsageError("a trigger's kind is files or webhook")
        store.put_trigger(body.trigger)

    @route("DELETE", "/triggers/{name}", O, tags=["triggers"])
    def delete_trigger(name: Name) -> Changed:
        """Remove a trigger; ``changed`` is false if there was none."""
        return Changed(changed=store.delete_trigger(name))

    @route("POST", "/triggers/{name}/pause", O, tags=["triggers"])
    def pause_trigger(name: Name) -> Changed:
        return Changed(changed=store.set_trigger_paused(name, True))

    @route("POST", "/triggers/{name}/resume", O, tags=["triggers"])
    def resume_trigger(name: Name) -> Changed:
        return Changed(changed=store.set_trigger_paused(name, False))

    @route("GET", "/triggers/{name}/files/count", V, tags=["triggers"])
    def count_trigger_files(name: Name) -> Count:
        """How many files started runs of a file trigger."""
        return Count(count=store.count_trigger_files(name))

    # -- notifications --------------------------------------------------------------------------

    @route("GET", "/notify-rules", V, tags=["notifications"])
    def list_rules() -> list[NotifyRule]:
        """Every notification rule."""
        return store.list_notify_rules()

    @route("POST", "/notify-rules", O, status_code=204, tags=["notifications"])
    def add_rule(body: RuleIn) -> None:
        """Add a rule (events, channel, optional flow)."""
        from legato.notify.rules import make_rule

        checked = make_rule(body.rule.events, body.rule.channel, body.rule.flow)
        checked.id, checked.created_at = body.rule.id, body.rule.created_at
        store.add_notify_rule(checked)

    @route("DELETE", "/notify-rules/{rule_id}", O, tags=["notifications"])
    def delete_rule(rule_id: Name) -> Changed:
        """Remove a rule by id or unique prefix."""
        return Changed(changed=store.delete_notify_rule(rule_id))

    @route("GET", "/notifications", V, tags=["notifications"])
    def list_notifications(
        state: Annotated[list[str] | None, Query(max_length=10)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Notification]:
        """Messages sent, waiting or failed (with the last error), newest first."""
        return store.list_notifications(states=state, limit=limit)

    # -- webhooks (their own authentication) -------------------------------------------------

    @route("POST", "/hooks/{name}", None, status_code=202, tags=["triggers"])
    async def webhook(name: Name, request: Request) -> Any:
        """Start the hook's deployment; authenticated by HMAC signature or bearer token."""
        from legato.triggers.webhooks import Refused, handle

        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = request.app.state.auth

        def check(authorization: str | None) -> None:
            auth.check(authorization, Role.OPERATOR)

        try:
            return await anyio.to_thread.run_sync(
                lambda: handle(store, name, headers, body, check_token=check)
            )
        except Refused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    # -- Slack (Slack's signature) ----------------------------------------------------------

    def slack_app(request: Request) -> Any:
        found = getattr(request.app.state, "slack", None)
        if found is None:
            from legato.integrations.slack import SlackApp
            from legato.settings import get_settings

            found = request.app.state.slack = SlackApp(store, get_settings())
        return found

    @route("POST", "/slack/interactions", None, tags=["slack"])
    async def slack_interactions(request: Request) -> Any:
        """Button clicks and modal submissions from Slack (signed by Slack)."""
        body = await request.body()
        app_ = slack_app(request)
        status, answer = await anyio.to_thread.run_sync(
            lambda: app_.handle_interaction(body, dict(request.headers))
        )
        if answer is None:
            return Response(status_code=status)
        return JSONResponse(answer, status_code=status)

    @route("POST", "/slack/commands", None, tags=["slack"])
    async def slack_commands(request: Request) -> Any:
        """The ``/legato`` slash command (signed by Slack)."""
        body = await request.body()
        app_ = slack_app(request)
        status, answer = await anyio.to_thread.run_sync(
            lambda: app_.handle_command(body, dict(request.headers))
        )
        return JSONResponse(answer, status_code=status)

    @route("GET", "/slack-manifest", V, tags=["slack"])
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
