"""The dashboard's share panel: on a run's page (and its items page) operators make a share
link (what, until when, a note, a password) and see the run's links, their accesses, and a
revoke button. Viewers see the list only. The new link is shown once, on the page that
answers the form (never in a redirect's address, where history and logs would keep it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from legato.errors import RunNotFound, UsageError
from legato.server.session import Session

if TYPE_CHECKING:
    from legato.server.dashboard import Dashboard

EXPIRIES = ["1d", "7d", "30d", "90d"]
LISTED = 50  # a run's shares on its page
ACCESSES = 20  # accesses shown per share


class SharePanel:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dash = dashboard
        self.store = dashboard.store

    def context(self, run_id: str) -> dict[str, Any]:
        shares = self.store.list_shares(run_id, limit=LISTED)
        return dict(
            shares=shares,
            share_accesses={
                s.id: self.store.list_share_accesses(s.id, limit=ACCESSES) for s in shares
            },
            share_now=time.time(),
            expiries=EXPIRIES,
        )

    def mount(self) -> None:
        opts: dict[str, Any] = {
            "include_in_schema": False,
            "openapi_extra": {"x-legato-auth": "session"},
        }
        self.dash.app.add_api_route("/runs/{run_id}/share", self.create, methods=["POST"], **opts)
        self.dash.app.add_api_route(
            "/shares/{share_id}/revoke", self.revoke, methods=["POST"], **opts
        )

    def _limited(self, session: Session) -> bool:
        token = next((t for t in self.store.list_tokens() if t.id == session.token_id), None)
        return token is not None and token.pools is not None

    async def create(self, request: Request) -> Response:
        session, form, refusal = await self.dash.action_form(request)
        if refusal or session is None:
            return self.dash.refuse(request, session, refusal)
        run_id = request.path_params["run_id"]
        return await run_in_threadpool(self._create, request, session, run_id, form)

    def _create(
        self, request: Request, session: Session, run_id: str, form: dict[str, str]
    ) -> Response:
        from legato.audit import Actor
        from legato.sharing import make_share, share_detail, share_items

        state = request.app.state
        paths = [p.strip() for p in form.get("paths", "").splitlines() if p.strip()]
        try:
            if self._limited(session):
                raise UsageError(f"{session.name} is limited to pools: it cannot share from here")
            made = make_share(
                self.store,
                run_id,
                share_items(
                    artifacts=form.get("artifacts") == "on",
                    results=form.get("results") == "on",
                    paths=paths[:100],
                ),
                expires=form.get("expires") or None,
                note=(form.get("note") or "").strip()[:2000] or None,
                password=form.get("password") or None,
                created_by=session.name,
                base_url=state.public_url or str(request.base_url),
                roots=state.share_roots,
                max_days=state.share_max_days,
                now=state.clock(),
            )
        except RunNotFound as exc:
            return self.dash.render(request, "error.html", session, 404, message=str(exc))
        except UsageError as exc:
            return self.dash.run_page(request, session, share_error=str(exc))
        Actor(session.name, session.role.value).record(
            self.store,
            "share.create",
            made.share.id,
            {**share_detail(made.share), "via": "dashboard"},
        )
        return self.dash.run_page(request, session, new_link=made.url)

    async def revoke(self, request: Request) -> Response:
        session, _form, refusal = await self.dash.action_form(request)
        if refusal or session is None:
            return self.dash.refuse(request, session, refusal)
        share_id = request.path_params["share_id"]
        return await run_in_threadpool(self._revoke, request, session, share_id)

    def _revoke(self, request: Request, session: Session, share_id: str) -> Response:
        from legato.audit import Actor
        from legato.server.dashboard import back_to

        share = self.store.get_share(share_id)
        if share is None:
            return self.dash.render(request, "error.html", session, 404, message="no such share")
        if self._limited(session):
            return self.dash.refuse(request, session, f"{session.name} is limited to pools")
        if self.store.revoke_share(share.id):
            detail = {"via": "dashboard"}
            Actor(session.name, session.role.value).record(
                self.store, "share.revoke", share.id, detail
            )
            return back_to(share.flow_run_id, notice="Share revoked: its link answers 410 now.")
        return back_to(share.flow_run_id, error="That share was already revoked.")
