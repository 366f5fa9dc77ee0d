"""The HTTP API: a thin FastAPI shell over a Store (no SQL here), versioned under /api/v1.

Every route names the role it needs (``x-legato-role`` in the OpenAPI document): viewer reads;
operator writes run state, claims, heartbeats, finishes, answers; admin manages tokens. The
routes live in ``legato.server.routes``, one module per resource; each store route is bound
to its operation in ``legato.store.operations``.
Errors are JSON ``{"detail": "..."}``, but a 422 (an invalid request) takes FastAPI's standard
shape, ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`` (``server.errors``): 4xx for
anything wrong with the request, 503 when the store cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from legato.errors import IllegalTransition, RunNotFound, StoreError, UsageError
from legato.server.auth import Authenticator
from legato.server.errors import error, validation_body
from legato.server.routes._common import BEARER, ROLE_KEY
from legato.server.scope import TokenScope
from legato.store import Store
from legato.store.operations import API, VERSION_HEADER

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
MAX_WAIT_SECONDS = 30.0  # the longest one long-poll request waits
__all__ = ["API", "DEFAULT_MAX_BODY_BYTES", "ROLE_KEY", "create_app"]


def create_app(
    store: Store,
    *,
    auth: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_wait: float = MAX_WAIT_SECONDS,
    authenticator: Authenticator | None = None,
    result_storage: str | None = None,
    outbound_allow: str | None = None,
    max_waits_per_token: int | None = None,
    share_roots: str | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API over ``store``. ``auth=False`` makes every caller an admin (loopback only: the
    CLI refuses anything else). ``authenticator`` checks tokens elsewhere than in ``store``
    (tests whose store must start empty). Stored results sent to it must point into
    ``result_storage`` (default: LEGATO_RESULT_STORAGE as this process sees it). Webhook
    rules must name URLs ``outbound_allow`` lets through (default: LEGATO_OUTBOUND_ALLOW;
    ``legato.outbound``). A token holds at most ``max_waits_per_token`` long-polls at once
    (default: LEGATO_MAX_WAITS_PER_TOKEN). Share links give files from the result storage
    and ``share_roots`` (default: LEGATO_SHARE_ROOTS), and expire by ``clock`` (tests)."""
    from legato.version import __version__

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # Sync route functions run in these threads (long-polls hold none: server/waits.py);
        # many, so many workers' short requests do not queue behind one another.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 256
        from legato.server.share_links import keep_secrets_out_of_logs

        keep_secrets_out_of_logs()  # uvicorn has set its loggers up by now
        yield

    app = FastAPI(
        title="Legato",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
    )
    app.add_middleware(DeclaredSizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(VersionCheck, version=__version__)
    app.state.store = store
    app.state.max_body_bytes = max_body_bytes
    from legato.server.waits import WaitSlots
    from legato.settings import get_settings

    if result_storage is None:
        result_storage = get_settings().results_url
    app.state.result_storage = result_storage.rstrip("/")
    if outbound_allow is None:
        outbound_allow = get_settings().outbound_allow
    from legato.outbound import Policy

    app.state.outbound = Policy.parse(outbound_allow)
    if max_waits_per_token is None:
        max_waits_per_token = get_settings().max_waits_per_token
    app.state.waits = WaitSlots(max_waits_per_token)
    from legato.sharing.policy import Roots

    settings = get_settings()
    roots = share_roots if share_roots is not None else settings.share_roots
    app.state.share_roots = Roots.configured(result_storage, roots)
    app.state.share_max_days = settings.share_max_days
    app.state.public_url = settings.public_url.rstrip("/") + "/" if settings.public_url else None
    app.state.clock = clock
    app.state.auth = authenticator or Authenticator(store, enabled=auth)
    app.state.scope = TokenScope(store)  # type: ignore[arg-type]  # the server's SQL store
    _error_handlers(app)
    app.state.max_wait = max_wait
    from legato.server.routes import include_routes

    include_routes(app)  # on the app itself: app.routes lists them
    from legato.server.dashboard import mount_dashboard

    mount_dashboard(app, store, auth=app.state.auth)  # the pages at /, over a SqlStore
    from legato.server.share_links import mount_share_links

    mount_share_links(app, store, roots=app.state.share_roots, clock=clock)  # /s/TOKEN
    _declare_bearer(app)
    return app


def _declare_bearer(app: FastAPI) -> None:
    """The OpenAPI document names the bearer-token scheme its routes' ``security`` refers to
    (tokens are checked by ``server.auth``, not by a FastAPI security dependency)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from `legato tokens create`.",
            }
            _errors_are_json(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _errors_are_json(doc: dict[str, Any]) -> None:
    """FastAPI files a route's declared error answers under the route's own media type
    (text/plain for /metrics); every error body is JSON, so say so."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if status[:1] in "45" and content and "application/json" not in content:
                    answer["content"] = {"application/json": next(iter(content.values()))}


# -- errors ----------------------------------------------------------------------------------


class DeclaredSizeLimit:
    """A body whose Content-Length is over the limit gets a JSON 413 before it is read.
    (Bodies sent without a length are cut off by FastAPI's ``max_body_size``.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"0")
            size = int(declared) if declared.isdigit() else 0
            if size > self.max_bytes:
                message = f"the request body is {size} bytes; the limit is {self.max_bytes}"
                await error(413, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def release(version: str) -> tuple[str, str]:
    """A version's release line (major, minor): within one, the API does not change."""
    major, _, rest = version.partition(".")
    return major, rest.partition(".")[0]


class VersionCheck:
    """A Legato client (worker, flow, CLI) of another release line than this server gets a
    400 naming both versions, before anything is read or written: an API that changed
    between them must not half-work. Clients without the header (curl, scripts) pass."""

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(VERSION_HEADER.lower().encode())
            if sent is not None:
                theirs = sent.decode("latin-1")[:40]
                if release(theirs) != release(self.version):
                    message = (
                        f"this client is Legato {theirs} and the server is {self.version}: "
                        f"install Legato {'.'.join(release(self.version))}.x on this machine "
                        "(docs/deploy.md, Upgrading)"
                    )
                    await error(400, message)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _databaseerror(exc: Exception, message: str | None) -> JSONResponse:
    """409 for a conflict with stored rows, 400 for a value the database refuses, else 503."""
    from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

    orig = getattr(exc, "orig", None)
    reason = message or " ".join(str(orig if orig is not None else exc).split())[:300]
    if isinstance(exc, IntegrityError):
        return error(409, f"conflicts with what is stored: {reason}")
    if isinstance(exc, DataError) or (
        not isinstance(exc, DBAPIError) and isinstance(orig, ValueError | OverflowError)
    ):
        return error(400, f"a value could not be stored: {reason}")
    return error(503, f"the state database is unavailable: {reason}")


def _error_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(HTTPException)
    async def refused(_: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI's own answer, but a 422 raised with a message takes the 422 shape.
        return error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RunNotFound)
    async def not_found(_: Request, exc: RunNotFound) -> JSONResponse:
        return error(404, str(exc))

    @app.exception_handler(UsageError)
    async def usage(_: Request, exc: UsageError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(IllegalTransition)
    async def illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        body = {"detail": str(exc), "error": "IllegalTransition", "index": exc.index}
        return JSONResponse(body, status_code=409)

    @app.exception_handler(StoreError)
    async def store_failed(_: Request, exc: StoreError) -> JSONResponse:
        # SqlStore wraps the database's refusal of a write: its cause says whose fault it is.
        cause = exc.__cause__
        if isinstance(cause, SQLAlchemyError):
            return _databaseerror(cause, str(exc))
        return error(503, f"the state store is unavailable: {exc}")

    @app.exception_handler(SQLAlchemyError)
    async def database(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        return _databaseerror(exc, None)

    @app.exception_handler(OverflowError)
    async def overflow(_: Request, exc: OverflowError) -> JSONResponse:
        return error(400, f"a number is out of range: {exc}")

    @app.exception_handler(UnicodeError)
    async def unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return error(400, f"a string could not be stored: {exc}")
