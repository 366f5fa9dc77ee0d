"""The dashboard's deployments: a list, and a page per deployment with a form built from the
flow's recorded parameter schema that starts a run, and its schedules with an on/off switch.

The form is checked twice before anything is queued: read back by type (``forms.read``),
then against the deployment's schema by ``Store.start_deployment``, exactly as the API and
`legato run NAME` are; a bad parameter is shown on the page, beside the form, and no run is
created. Starting needs an operator; switching schedules needs a runner or admin, as over the
API (``/schedules/{ref}/pause``).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from legato.errors import InvalidAnswer, ParameterError, UsageError
from legato.models import Deployment, Role
from legato.server import forms
from legato.server.session import Session

if TYPE_CHECKING:
    from legato.server.dashboard import Dashboard


def parameter_form(dep: Deployment) -> forms.Field | None:
    """The form of a deployment's parameters, its own defaults filled in; None when it
    recorded no schema (deployed before schemas were kept) or takes no parameters."""
    schema = copy.deepcopy(dep.parameter_schema or {})
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    for name, value in dep.parameters.items():
        if isinstance(props.get(name), dict):
            props[name]["default"] = value
    schema.setdefault("type", "object")
    return forms.build(schema, label="Parameters")


class DeploymentPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dash = dashboard
        self.store = dashboard.store

    def mount(self) -> None:
        self.dash._get("/deployments", self.list_page)
        self.dash._get("/deployments/{name}", self.page)
        opts: dict[str, Any] = {
            "include_in_schema": False,
            "openapi_extra": {"x-legato-auth": "session"},
        }
        add = self.dash.app.add_api_route
        add("/deployments/{name}/start", self.start, methods=["POST"], **opts)
        add("/deployments/{name}/schedules", self.switch, methods=["POST"], **opts)

    def list_page(self, request: Request, session: Session) -> HTMLResponse:
        deps = self.store.list_deployments()
        schedules = {d.name: self.store.list_schedules(d.name) for d in deps}
        return self.dash.render(
            request, "deployments.html", session, deployments=deps, schedules=schedules
        )

    def page(self, request: Request, session: Session) -> HTMLResponse:
        name = request.path_params["name"]
        dep = self.store.get_deployment(name)
        if dep is None:
            return self.dash.render(
                request, "error.html", session, 404, message=f"no deployment named {name!r}"
            )
        q = request.query_params
        return self._render(request, session, dep, error=q.get("error"), notice=q.get("notice"))

    def _render(
        self,
        request: Request,
        session: Session,
        dep: Deployment,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
        given: dict[str, str] | None = None,
    ) -> HTMLResponse:
        form = parameter_form(dep)
        if form is not None and given:  # what was typed stays in the form after a refusal
            for f in [form, *form.children]:
                if f.name in given:
                    f.default = given[f.name]
        runs = [
            r
            for r in self.store.list_flow_runs(flow=dep.flow, top_level=True, limit=50)
            if r.deployment == dep.name
        ][:10]
        return self.dash.render(
            request,
            "deployment.html",
            session,
            status,
            dep=dep,
            form=form,
            schema_json=json.dumps(dep.parameter_schema or {}, indent=2),
            schedules=self.store.list_schedules(dep.name),
            runs=runs,
            error_notice=error,
            notice=notice,
            may_switch=session.role.allows(Role.RUNNER),
        )

    async def start(self, request: Request) -> Response:
        session, form, refusal = await self.dash.action_form(request)
        if refusal or session is None:
            return self.dash.refuse(request, session, refusal)
        name = request.path_params["name"]
        dep = await run_in_threadpool(self.store.get_deployment, name)
        if dep is None:
            return self.dash.refuse(request, session, f"no deployment named {name!r}")
        try:
            run = await run_in_threadpool(self._start, dep, form, session)
        except (InvalidAnswer, ParameterError, UsageError) as exc:
            # Shown on the page itself (422), with what was typed: nothing was queued.
            why = str(exc)
            return await run_in_threadpool(
                self._render, request, session, dep, error=why, status=422, given=form
            )
        notice = f"Started from the dashboard: queued on pool {dep.pool}."
        return RedirectResponse(
            f"/runs/{quote(run.id)}?{urlencode({'notice': notice})}", status_code=303
        )

    def _start(self, dep: Deployment, form: dict[str, str], session: Session) -> Any:
        from legato.server.dashboard import _actor

        fields = parameter_form(dep)
        params = forms.read(fields, form) if fields is not None else {}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        run = self.store.start_deployment(dep.name, params)
        detail = {"flow_run_id": run.id, "pool": dep.pool, "via": "dashboard"}
        _actor(session).record(self.store, "deployment.start", dep.name, detail)
        return run

    async def switch(self, request: Request) -> Response:
        session, form, refusal = await self.dash.action_form(request)
        if refusal or session is None:
            return self.dash.refuse(request, session, refusal)
        if not session.role.allows(Role.RUNNER):
            why = f"{session.name} is a {session.role.value}: switching schedules needs a runner"
            return self.dash.refuse(request, session, why)
        name = request.path_params["name"]
        paused = form.get("to") == "off"
        try:
            count = await run_in_threadpool(self._switch, name, paused, session)
        except UsageError as exc:
            return self.dash.refuse(request, session, str(exc))
        said = f"{count} schedule{'s' if count != 1 else ''} switched {'off' if paused else 'on'}."
        back = f"/deployments/{quote(name)}?{urlencode({'notice': said})}"
        return RedirectResponse(back, status_code=303)

    def _switch(self, name: str, paused: bool, session: Session) -> int:
        from legato.server.dashboard import _actor

        if self.store.get_deployment(name) is None:
            raise UsageError(f"no deployment named {name!r}")
        # This deployment's own schedules, each by its whole id (a name that looks like an
        # id prefix must not reach another deployment's).
        count = sum(
            int(self.store.set_schedules_paused(s.id, paused))
            for s in self.store.list_schedules(name)
        )
        if count:
            action = "schedule.pause" if paused else "schedule.resume"
            _actor(session).record(self.store, action, name, {"count": count, "via": "dashboard"})
        return count
