"""The dashboard: server-rendered pages (Jinja2) over the SqlStore, live through htmx polling.

Pages: runs (``/``), a flow run (``/runs/ID``), its items x steps (``/runs/ID/items``),
questions (``/questions``), pools and workers (``/pools``), the audit log (``/audit``,
admins only). Each live part of a page is also
served alone as a fragment (same URL with ``HX-Request``, or ``/live`` and ``/logs``) that
htmx polls while the run is not final. Everything renders without JavaScript.

Who may do what: a person logs in with an API token (``/login``); its role decides. Viewers
read; operators also cancel, retry, resume and answer; admins also read the audit log, where
every action taken here is recorded under the session's token name. Actions are POSTed forms
that carry the session's CSRF token; the server checks role and token on every one. A
session is a row on the server (``session.py``): logging out ends it for every copy of the
cookie. With ``--no-auth`` (loopback only) there is no login and everyone is an operator.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from legato import timefmt
from legato.audit import Actor
from legato.errors import InvalidAnswer, RunNotFound, UsageError
from legato.models import (
    FINAL_STATES,
    RETRY_FROM,
    Artifact,
    FlowRun,
    PoolType,
    Question,
    QuestionState,
    Role,
    State,
    WorkerState,
)
from legato.rerun import MAX_CHOSEN
from legato.server import forms, graphs
from legato.server.auth import Authenticator
from legato.server.session import (
    COOKIE,
    LOGIN_COOKIE,
    Session,
    SessionKeeper,
    csrf_ok,
    session_keys,
)
from legato.store.views import RunFilter

HERE = Path(__file__).parent
SESSION = {"x-legato-auth": "session"}  # a session cookie, not a bearer token (see session.py)
PAGE_SIZE = 50
ITEMS_PAGE = 100
CHILDREN_AS_ITEMS = 5  # child flow runs from which a run's graph shows them as items
ITEMS_VIEW_SECONDS = 10.0  # how stale a running parent's items picture may be
NOTIFICATIONS = 200  # messages on the notifications page
FIGURES_FOR_QUESTIONS = 20  # pending questions shown with their run's figures
FIGURES_PER_QUESTION = 3
FAILED_RECENTLY = 86400.0  # failed messages younger than this are flagged on the runs page
LOG_LINES = 500
POLL = "every 2s"
NON_FINAL = [s for s in State if s not in FINAL_STATES]
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
AUDIT_LINES = 200
LEVELS = {"": 0, "DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


def template_env() -> Any:
    """The pages' Jinja environment (the dashboard's and the share links')."""
    import jinja2
    from markdown_it import MarkdownIt
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    env.filters["markdown"] = lambda text: Markup(md.render(str(text)))
    env.filters["when"] = _when
    env.filters["took"] = _took
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, default=str, ensure_ascii=False)
    env.filters["level"] = lambda n: {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"}.get(
        n, "CRITICAL" if n >= 50 else str(n)
    )
    env.filters["svg"] = Markup
    env.filters["filesize"] = _filesize
    env.globals["final"] = lambda state: state in FINAL_STATES
    return env


def _filesize(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _when(ts: float | None) -> Any:
    """A time as ``<time>``: UTC as the page is served (so it reads right without script),
    turned into the reader's own time zone by /static/localtime.js, UTC kept on hover."""
    from markupsafe import Markup, escape

    text = timefmt.utc_text(ts)
    if ts is None or not timefmt.is_timestamp(ts):
        return escape(text)
    iso = timefmt.utc_text(ts, "%Y-%m-%dT%H:%M:%SZ")
    return Markup(f'<time datetime="{iso}" title="{text} UTC">{text} UTC</time>')


def _took(run: Any) -> str:
    return timefmt.duration(run.started_at, run.ended_at)


def mount_dashboard(
    app: FastAPI,
    store: Any,
    *,
    auth: Authenticator,
    session_secret: str | None = None,
    session_hours: float | None = None,
) -> None:
    """Add the dashboard's pages to ``app``. They need a SqlStore's view queries (see
    ``legato.store.views``): over another store nothing is added. The session secret and
    lifetime default to ``LEGATO_SESSION_SECRET`` and ``LEGATO_SESSION_HOURS``; the keys in
    ``LEGATO_SESSION_OLD_SECRETS`` are accepted too."""
    if not hasattr(store, "search_flow_runs"):
        return
    from legato.settings import get_settings

    settings = get_settings()
    keys = session_keys(session_secret or settings.session_secret, settings.session_old_secrets)
    Dashboard(app, store, auth, keys, session_hours or settings.session_hours).mount()


class Dashboard:
    def __init__(
        self, app: FastAPI, store: Any, auth: Authenticator, keys: list[str], hours: float
    ) -> None:
        self.app = app
        self.store = store
        self.auth = auth
        # Sessions live with the tokens they were made with (auth.store), in the database.
        self.sessions = SessionKeeper(auth.store, keys=keys, hours=hours, auth=auth.enabled)
        auth.on_forget.append(self.sessions.forget)  # a token revoked here ends its sessions
        self.env = template_env()
        from legato.server.deployment_pages import DeploymentPages
        from legato.server.share_panel import SharePanel

        self.shares = SharePanel(self)
        self.deployments = DeploymentPages(self)
        # run id -> (when, its state then, items picture, progress): see _items_view
        self._items_cache: dict[str, tuple[float, State, str, dict[str, tuple[int, int]]]] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        ctx.update(
            request=request,
            session=session,
            auth=self.auth.enabled,
            path=request.url.path,
            status=status,
        )
        html = self.env.get_template(name).render(**ctx)
        headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def session(self, request: Request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE))

    def page(
        self, fn: Callable[..., Response], role: Role = Role.VIEWER
    ) -> Callable[..., Response]:
        """A GET page for anyone logged in with ``role`` or above: others go to the login
        page (htmx: told to); a session with a lesser role is refused (403)."""

        def handler(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                target = "/login?next=" + quote(str(request.url.path), safe="/")
                if request.headers.get("HX-Request"):
                    return Response(status_code=401, headers={"HX-Redirect": target})
                return RedirectResponse(target, status_code=303)
            if not session.role.allows(role):
                why = f"{session.name} is a {session.role.value}: this page needs an {role.value}"
                return self.render(request, "error.html", session, 403, message=why)
            try:
                return fn(request, session)
            except RunNotFound as exc:
                return self.render(request, "error.html", session, 404, message=str(exc))

        return handler

    async def action_form(self, request: Request) -> tuple[Session | None, dict[str, str], str]:
        """(session, form fields, refusal) of a POSTed action; refusal is "" when allowed."""
        body = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        session = await run_in_threadpool(self.session, request)  # may read the database
        if session is None:
            return None, form, "log in first"
        if not csrf_ok(session, form.get("csrf") or request.headers.get("X-CSRF-Token")):
            return (
                session,
                form,
                "the form is stale or forged (CSRF token mismatch): reload the page",
            )
        if not session.can_act:
            return (
                session,
                form,
                f"{session.name} is a {session.role.value}: this needs an operator",
            )
        return session, form, ""

    def refuse(self, request: Request, session: Session | None, why: str) -> Response:
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return self.render(request, "error.html", session, 403, message=why)

    def mount(self) -> None:
        app = self.app
        app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
        get = self._get
        get("/", self.runs_page)
        get("/runs/{run_id}", self.run_page)
        get("/runs/{run_id}/live", self.run_live)
        get("/runs/{run_id}/logs", self.run_logs)
        get("/runs/{run_id}/items", self.items_page)
        get("/questions", self.questions_page)
        get("/pools", self.pools_page)
        get("/audit", self.audit_page, Role.ADMIN)
        get("/storage", self.storage_page, Role.ADMIN)
        get("/notifications", self.notifications_page, Role.OPERATOR)
        app.add_api_route(
            "/login",
            self.login_page,
            methods=["GET"],
            include_in_schema=False,
            openapi_extra=SESSION,
        )
        app.add_api_route(
            "/login", self.login, methods=["POST"], include_in_schema=False, openapi_extra=SESSION
        )
        app.add_api_route(
            "/logout", self.logout, methods=["POST"], include_in_schema=False, openapi_extra=SESSION
        )
        for verb in ("cancel", "retry", "resume"):
            app.add_api_route(
                f"/runs/{{run_id}}/{verb}",
                self._run_action(verb),
                methods=["POST"],
                include_in_schema=False,
                openapi_extra=SESSION,
            )
        app.add_api_route(
            "/runs/{run_id}/rerun",
            self.rerun,
            methods=["POST"],
            include_in_schema=False,
            openapi_extra=SESSION,
        )
        self.shares.mount()
        self.deployments.mount()
        app.add_api_route(
            "/questions/{question_id}/answer",
            self.answer,
            methods=["POST"],
            include_in_schema=False,
            openapi_extra=SESSION,
        )

    def _get(self, path: str, fn: Callable[..., Response], role: Role = Role.VIEWER) -> None:
        handler = self.page(fn, role)
        handler.__name__ = "dashboard_" + fn.__name__
        self.app.add_api_route(
            path,
            handler,
            methods=["GET"],
            include_in_schema=False,
            openapi_extra=SESSION,
            response_class=HTMLResponse,
        )

    # -- login ------------------------------------------------------------------------------

    def login_page(self, request: Request) -> Response:
        if not self.auth.enabled:
            return RedirectResponse("/", status_code=303)
        nonce = secrets.token_urlsafe(16)
        response = self.render(
            request,
            "login.html",
            None,
            nonce=nonce,
            next=_safe_next(request.query_params.get("next")),
        )
        _set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    async def login(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        target = _safe_next(form.get("next"))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(nonce, form.get("nonce", "")):
            why = "the login form expired: try again"
            return self.render(
                request, "login.html", None, 400, error=why, nonce=nonce, next=target
            )
        secret = form.get("token", "").strip()
        token = await run_in_threadpool(self.auth._verify, secret) if secret else None
        if token is None:
            why = "that token is wrong or revoked (create one with `legato tokens create`)"
            return self.render(
                request, "login.html", None, 401, error=why, nonce=nonce, next=target
            )
        cookie, session = await run_in_threadpool(self.sessions.issue, token)
        await run_in_threadpool(_actor(session).record, self.store, "session.login", token.id)
        response = RedirectResponse(target, status_code=303)
        _set_cookie(request, response, COOKIE, cookie, max_age=int(self.sessions.seconds))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        session = await run_in_threadpool(self.session, request)
        if session is not None and not csrf_ok(session, dict(parse_qsl(body)).get("csrf")):
            return self.refuse(request, session, "the form is stale or forged: reload the page")
        if session is not None and self.auth.enabled:
            await run_in_threadpool(self._end, session)
        response = RedirectResponse("/login" if self.auth.enabled else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _end(self, session: Session) -> None:
        """Log out: the session's row is revoked, whatever copies of the cookie exist."""
        self.sessions.end(session)
        _actor(session).record(self.store, "session.logout", session.token_id)

    # -- runs -------------------------------------------------------------------------------

    def runs_page(self, request: Request, session: Session) -> HTMLResponse:
        q = request.query_params
        f, chosen = _run_filter(q)
        page = max(1, _int(q.get("page"), 1))
        runs, total = self.store.search_flow_runs(f, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        ctx = dict(
            runs=runs,
            total=total,
            page=page,
            pages=pages,
            first=(page - 1) * PAGE_SIZE + 1,
            chosen=chosen,
            query=lambda **kw: "?" + urlencode({**chosen, **kw}),
            states=list(State),
            ranges=list(RANGES),
        )
        if request.headers.get("HX-Request"):
            return self.render(request, "_runs_table.html", session, **ctx)
        failed = []
        if session.can_act:
            recent = time.time() - FAILED_RECENTLY
            failed = [
                n
                for n in self.store.list_notifications(states=["failed"], limit=100)
                if n.created_at >= recent
            ]
        return self.render(
            request,
            "runs.html",
            session,
            flows=self.store.flow_names(),
            failed_notifications=len(failed),
            **ctx,
        )

    def _run_context(self, run_id: str) -> dict[str, Any]:
        run: FlowRun = self.store.get_flow_run(run_id)
        task_runs = self.store.task_runs_of(run.id)
        child_ids = [t.child_flow_run_id for t in task_runs if t.child_flow_run_id]
        children = self.store.flow_runs_by_ids(child_ids[:200]) if child_ids else {}
        questions = self.store.list_questions(flow_run_id=run.id, limit=200)
        # A run that maps child flows is drawn as its items x steps, with each child's
        # progress: its DAG would be a column of unconnected boxes (its other calls still
        # get one).
        items_view = len(child_ids) >= CHILDREN_AS_ITEMS
        matrix, progress = self._items_view(run) if items_view else ("", {})
        others = [t for t in task_runs if not t.child_flow_run_id] if items_view else task_runs
        return dict(
            run=run,
            task_runs=task_runs,
            by_id={t.id: t for t in task_runs},
            names={t.id: t.key for t in task_runs},
            dag=graphs.dag_svg(others) if others else "",
            items_matrix=matrix,
            progress=progress,
            gantt=graphs.gantt_svg(task_runs),
            children=[children[c] for c in child_ids[:200] if c in children],
            n_children=len(child_ids),
            questions=questions,
            pending=[
                (q, forms.build(q.schema)) for q in questions if q.state is QuestionState.PENDING
            ],
            live=run.state not in FINAL_STATES,
            counts=_count_states(t.state for t in task_runs),
            poll=POLL,
        )

    def _items_view(self, run: FlowRun) -> tuple[str, dict[str, tuple[int, int]]]:
        """A mapping run's items x steps picture and each child's progress, computed at most
        every ITEMS_VIEW_SECONDS per run while it runs: the live fragment polls every 2 s
        for every viewer, and a run of thousands of children is two heavy queries."""
        now_ = time.monotonic()
        cached = self._items_cache.get(run.id)
        # a picture taken once the run had ended stays true; one of a running run, a while,
        # unless the run has changed state since (it ended, it paused)
        if cached is not None and cached[1] is run.state and now_ - cached[0] < ITEMS_VIEW_SECONDS:
            return cached[2], cached[3]
        m = self.store.item_matrix(run.id)
        matrix = graphs.matrix_svg(
            m.steps,
            [(i.run_id, i.label, {k: v.value for k, v in i.steps.items()}) for i in m.items],
        )
        progress = {
            i.run_id: (sum(s.is_success for s in i.steps.values()), len(m.steps)) for i in m.items
        }
        if len(self._items_cache) > 256:  # a bound on what many parents leave behind
            self._items_cache.clear()
        # an ended run's picture never goes stale (now - inf < any bound)
        taken = math.inf if run.state in FINAL_STATES else now_
        self._items_cache[run.id] = (taken, run.state, matrix, progress)
        return matrix, progress

    def run_page(self, request: Request, session: Session, **extra: Any) -> HTMLResponse:
        """A run's page; ``extra``: what the share panel's answer adds (the new link)."""
        run_id = request.path_params["run_id"]
        ctx = self._run_context(run_id)
        run = ctx["run"]
        parent = None
        if run.parent_task_run_id:
            try:
                parent = self.store.get_task_run(run.parent_task_run_id).flow_run_id
            except RunNotFound:
                parent = None
        logs_ctx = self._logs_context(run, request)
        from legato.items import item_of
        from legato.resume import failed_while_waiting, pending_questions

        paused = run.state is State.PAUSED
        waiting_failed = failed_while_waiting(self.store, run) if paused else []
        in_children = [
            (q, item_of(self.store, run, q.flow_run_id))
            for q in (pending_questions(run, self.store) if paused else [])
            if q.flow_run_id != run.id
        ]
        return self.render(
            request,
            "run.html",
            session,
            failed_while_waiting=waiting_failed,
            children_waiting=in_children[:200],
            n_children_waiting=len(in_children),
            parent=parent,
            artifacts=self.store.get_artifacts(run.id),
            notice=request.query_params.get("notice"),
            error_notice=request.query_params.get("error"),
            levels=list(LEVELS),
            **ctx,
            **logs_ctx,
            **self.shares.context(run.id),
            **extra,
        )

    def run_live(self, request: Request, session: Session) -> Response:
        ctx = self._run_context(request.path_params["run_id"])
        seen = request.query_params.get("seen")
        state = ctx["run"].state
        if seen and seen != state.value and (state in FINAL_STATES or state is State.PAUSED):
            # The run stopped or asks something: reload the whole page (questions, results,
            # artifacts are not in this fragment).
            return Response(status_code=200, headers={"HX-Refresh": "true"})
        return self.render(request, "_run_live.html", session, **ctx)

    def _logs_context(self, run: FlowRun, request: Request) -> dict[str, Any]:
        q = request.query_params
        task = q.get("task") or None
        level = q.get("level", "")
        entries = self.store.log_tail(
            run.id, task_run_id=task, min_level=LEVELS.get(level, 0), limit=LOG_LINES
        )
        params = urlencode({"task": task or "", "level": level})
        return dict(
            logs=entries,
            log_task=task,
            log_level=level,
            logs_url=f"/runs/{run.id}/logs?{params}",
            logs_live=run.state not in FINAL_STATES,
            log_limit=LOG_LINES,
        )

    def run_logs(self, request: Request, session: Session) -> HTMLResponse:
        run = self.store.get_flow_run(request.path_params["run_id"])
        names = {t.id: t.key for t in self.store.task_runs_of(run.id)}
        ctx = self._logs_context(run, request)
        return self.render(request, "_logs.html", session, run=run, names=names, poll=POLL, **ctx)

    def items_page(self, request: Request, session: Session) -> HTMLResponse:
        run = self.store.get_flow_run(request.path_params["run_id"])
        m = self.store.item_matrix(run.id)
        q = request.query_params
        step, state = q.get("step") or "", q.get("state") or ""
        rows = m.items
        if state and step:
            rows = [i for i in rows if i.steps.get(step, State.PENDING).value == state]
        elif state:
            rows = [i for i in rows if i.state.value == state]
        page = max(1, _int(q.get("page"), 1))
        pages = max(1, math.ceil(len(rows) / ITEMS_PAGE))
        svg = graphs.matrix_svg(
            m.steps,
            [(i.run_id, i.label, {k: v.value for k, v in i.steps.items()}) for i in m.items],
        )
        chosen = {"step": step, "state": state}
        ctx = dict(
            run=run,
            matrix=m,
            svg=svg,
            rows=rows[(page - 1) * ITEMS_PAGE : page * ITEMS_PAGE],
            n_rows=len(rows),
            page=page,
            pages=pages,
            chosen=chosen,
            query=lambda **kw: "?" + urlencode({**chosen, **kw}),
            failed=sum(m.run_counts.get(s.value, 0) for s in RETRY_FROM),
            live=run.state not in FINAL_STATES,
            notice=q.get("notice"),
            error_notice=q.get("error"),
            poll="every 3s",
            states=list(State),
        )
        if request.headers.get("HX-Request"):
            return self.render(request, "_items.html", session, **ctx)
        return self.render(request, "items.html", session, **ctx, **self.shares.context(run.id))

    # -- questions, pools -------------------------------------------------------------------

    def questions_page(self, request: Request, session: Session) -> HTMLResponse:
        pending = self.store.list_questions(states=[QuestionState.PENDING], limit=200)
        answered = self.store.recent_answers(20)
        runs = self.store.flow_runs_by_ids([q.flow_run_id for q in pending + answered])
        return self.render(
            request,
            "questions.html",
            session,
            pending=[(q, forms.build(q.schema)) for q in pending],
            answered=answered,
            runs=runs,
            figures=self._figures_of([q.flow_run_id for q in pending]),
            notice=request.query_params.get("notice"),
        )

    def _figures_of(self, run_ids: list[str]) -> dict[str, list[Artifact]]:
        """The images each asking run attached before it asked (a QC plot, say), shown
        beside its question: the first runs' first few, so a long queue stays light."""
        shown: dict[str, list[Artifact]] = {}
        for run_id in dict.fromkeys(run_ids[:FIGURES_FOR_QUESTIONS]):
            images = [
                a
                for a in self.store.get_artifacts(run_id)
                if a.kind == "image" and isinstance(a.data, dict) and a.data.get("base64")
            ]
            shown[run_id] = images[:FIGURES_PER_QUESTION]
        return shown

    def notifications_page(self, request: Request, session: Session) -> HTMLResponse:
        """The outbox: what was sent, is pending, or failed for good (with its last error).
        Webhook URLs are masked for everyone but admins, in channels and in errors alike."""
        from legato.outbound import mask_channel, mask_urls

        only_failed = request.query_params.get("failed") == "1"
        found = self.store.list_notifications(
            states=["failed"] if only_failed else None, limit=NOTIFICATIONS
        )
        admin = session.role is Role.ADMIN
        rows = [
            (
                n,
                n.channel if admin else mask_channel(n.channel),
                (n.last_error or "")[:500] if admin else mask_urls((n.last_error or "")[:500]),
            )
            for n in found
        ]
        return self.render(
            request,
            "notifications.html",
            session,
            notifications=rows,
            only_failed=only_failed,
            limit=NOTIFICATIONS,
        )

    def pools_page(self, request: Request, session: Session) -> HTMLResponse:
        workers = self.store.list_workers(include_offline=True)
        depths = self.store.queue_depths()
        running = self.store.running_per_pool()
        defined = {p.name: p for p in self.store.list_pools()}
        names = sorted({w.pool for w in workers} | set(depths) | set(running) | set(defined))
        held: dict[str, list[Any]] = {}
        for h in self.store.holdings():
            held.setdefault(h.worker, []).append(h)
        pools = []
        for name in names:
            ws = [w for w in workers if w.pool == name and w.state is not WorkerState.OFFLINE]
            capacity: dict[str, float] = {}
            used: dict[str, float] = {}
            for w in ws:
                for k, v in w.capacity.items():
                    capacity[k] = capacity.get(k, 0.0) + v
                for k, v in w.used.items():
                    used[k] = used.get(k, 0.0) + v
            pools.append(
                dict(
                    name=name,
                    type=defined[name].type if name in defined else PoolType.PROCESS,
                    workers=len(ws),
                    capacity=capacity,
                    used=used,
                    queued=depths.get(name, 0),
                    running=running.get(name, 0),
                )
            )
        return self.render(
            request, "pools.html", session, pools=pools, workers=workers, held=held, now=time.time()
        )

    def audit_page(self, request: Request, session: Session) -> HTMLResponse:
        q = request.query_params
        chosen = {k: q.get(k, "").strip() for k in ("action", "actor", "target", "range")}
        since = time.time() - RANGES[chosen["range"]] if chosen["range"] in RANGES else None
        events = self.store.list_audit(
            action=chosen["action"] or None,
            actor=chosen["actor"] or None,
            target=chosen["target"] or None,
            since=since,
            limit=AUDIT_LINES,
        )
        return self.render(
            request,
            "audit.html",
            session,
            events=events,
            chosen=chosen,
            ranges=list(RANGES),
            limit=AUDIT_LINES,
        )

    def storage_page(self, request: Request, session: Session) -> HTMLResponse:
        from legato.models import human_bytes
        from legato.results import ResultStorage

        summary = self.store.storage_summary()
        root = getattr(request.app.state, "result_storage", None)
        usage = ResultStorage(str(root)).usage() if root else None
        if usage is not None:
            summary.result_files, summary.result_bytes = usage
        return self.render(
            request, "storage.html", session, summary=summary, human_bytes=human_bytes
        )

    # -- actions ----------------------------------------------------------------------------

    def _run_action(self, verb: str) -> Callable[..., Any]:
        async def action(request: Request) -> Response:
            session, _form, refusal = await self.action_form(request)
            if refusal:
                return self.refuse(request, session, refusal)
            run_id = request.path_params["run_id"]
            try:
                message = await run_in_threadpool(self._act, verb, run_id, session)
            except (RunNotFound, UsageError) as exc:
                return back_to(run_id, error=str(exc))
            return back_to(run_id, notice=message)

        action.__name__ = f"dashboard_{verb}"
        return action

    def _act(self, verb: str, run_id: str, session: Session | None) -> str:
        who = session.name if session else "someone"
        run = self.store.get_flow_run(run_id)
        if verb == "cancel":
            ok = self.store.transition_flow_run(
                run.id, State.CANCELLED, allowed_from=NON_FINAL, message=f"cancelled by {who}"
            )
            if not ok:
                raise UsageError(f"flow run {run.id} is {run.state.value}: nothing to cancel")
            _actor(session).record(self.store, "run.cancel", run.id, {"via": "dashboard"})
            return "Cancelled."
        from legato.resume import queue_for_workers

        root, pool = queue_for_workers(self.store, run.id, retry=verb == "retry")
        detail = {"via": "dashboard", "pool": pool}
        _actor(session).record(self.store, f"run.{verb}", root.id, detail)
        which = "" if root.id == run.id else f" (through its top-level run {root.id[:8]})"
        return f"Queued for pool {pool}{which}: a worker there carries it on by replay."

    async def rerun(self, request: Request) -> Response:
        """The items page's rerun: one step, for the ticked items (or all of them), in a
        state or any."""
        session, form, refusal = await self.action_form(request)
        if refusal:
            return self.refuse(request, session, refusal)
        run_id = request.path_params["run_id"]
        pairs = parse_qsl((await request.body()).decode("utf-8", "replace"))
        items = [v for k, v in pairs if k == "item"][: MAX_CHOSEN + 1]
        back = f"/runs/{quote(run_id)}/items?"
        try:
            message = await run_in_threadpool(
                self._rerun, run_id, form.get("step") or "", form.get("state") or "", items, session
            )
        except (RunNotFound, UsageError) as exc:
            return RedirectResponse(back + urlencode({"error": str(exc)}), status_code=303)
        return RedirectResponse(back + urlencode({"notice": message}), status_code=303)

    def _rerun(
        self, run_id: str, step: str, state: str, items: list[str], session: Session | None
    ) -> str:
        from legato.deployments import DEFAULT_POOL
        from legato.rerun import pick_calls, plan_rerun

        if not step:
            raise UsageError("choose the step to rerun")
        if len(items) > MAX_CHOSEN:
            raise UsageError(f"tick at most {MAX_CHOSEN} items")
        states = [State(state)] if state in State.__members__ else []
        run = self.store.get_flow_run(run_id)
        chosen = pick_calls(self.store, run, step, items=items, states=states, in_children=True)
        root = plan_rerun(self.store, [t.id for t in chosen]).root
        pool = root.pool or DEFAULT_POOL
        done = self.store.rerun_calls(
            [t.id for t in chosen], by=session.name if session else "someone", pool=pool
        )
        detail = {**done.detail(), "via": "dashboard"}
        _actor(session).record(self.store, "run.rerun", done.root, detail)
        return (
            f"Rerunning {step} for {len(chosen)} item{'s' if len(chosen) != 1 else ''} "
            f"({done.downstream} calls downstream): queued for pool {pool}, where a worker "
            "replays the run."
        )

    async def answer(self, request: Request) -> Response:
        session, form, refusal = await self.action_form(request)
        if refusal:
            return self.refuse(request, session, refusal)
        question_id = request.path_params["question_id"]
        back = form.get("back") or ""
        try:
            question: Question = await run_in_threadpool(self.store.get_question, question_id)
        except RunNotFound as exc:
            return self.refuse(request, session, str(exc))
        try:
            value = forms.read(forms.build(question.schema), form)
            await run_in_threadpool(self._answer, question, value, session)
        except (InvalidAnswer, UsageError) as exc:
            return back_to(question.flow_run_id, error=str(exc), to=back)
        return back_to(question.flow_run_id, notice="Answered: the run carries on.", to=back)

    def _answer(self, question: Question, value: Any, session: Session | None) -> None:
        from legato.ask import answer_question
        from legato.resume import queue_answered_run

        answer_question(self.store, question, value, session.name if session else None)
        detail = {"run": question.flow_run_id, "key": question.key, "via": "dashboard"}
        _actor(session).record(self.store, "question.answer", question.id, detail)
        queue_answered_run(self.store, question.flow_run_id)


# -- helpers ---------------------------------------------------------------------------------


def _actor(session: Session | None) -> Actor:
    if session is None:  # actions need a session (action_form): only a guard
        return Actor("unknown", "unknown")
    return Actor(session.name, session.role.value)


def back_to(run_id: str, *, to: str = "", **message: str) -> Response:
    base = "/questions" if to == "questions" else f"/runs/{quote(run_id)}"
    return RedirectResponse(f"{base}?{urlencode(message)}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only paths on this site (no //host or scheme): an open redirect is refused."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def _day(text: str | None) -> float | None:
    import datetime as dt

    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _run_filter(q: Any) -> tuple[RunFilter, dict[str, str]]:
    chosen = {
        k: q.get(k, "")
        for k in ("flow", "state", "tag", "range", "since", "until", "q", "children")
    }
    states = [State(v) for v in q.getlist("state") if v in State.__members__]
    since = _day(chosen["since"])
    if chosen["range"] in RANGES:
        since = time.time() - RANGES[chosen["range"]]
    until = _day(chosen["until"])
    f = RunFilter(
        flow=chosen["flow"] or None,
        states=states,
        tag=chosen["tag"] or None,
        since=since,
        until=until + 86400 if until is not None else None,  # the whole day
        text=chosen["q"].strip() or None,
        top_level=chosen["children"] != "1",
    )
    return f, {k: v for k, v in chosen.items() if v}


def _count_states(states: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in states:
        out[s.value] = out.get(s.value, 0) + 1
    return out
