"""What every route module shares: a collector of module-level routes, each bound to its
declared operation (``legato.store.operations``), and the dependencies that reach the store,
the authenticator and the server's settings through the app.

A module declares its routes at import time with ``routes.op(OPERATION)`` (a store operation:
method, path, role, status code and tag come from the table) or ``routes.add(...)`` (the
server's own routes); ``create_app`` registers them on the app with its body-size bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

from legato.audit import Actor
from legato.models import ApiToken, Role
from legato.server.auth import Authenticator, require
from legato.server.errors import error, invalid, responses
from legato.server.scope import TokenScope
from legato.store import PAGE_MAX, Store, wire
from legato.store.operations import API, Operation

ROLE_KEY = "x-legato-role"
BEARER = "bearer"  # the OpenAPI security scheme of API tokens (declared by create_app)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
__all__ = ["BEARER", "ROLE_KEY", "Routes", "error", "invalid"]

Id = Annotated[str, Path(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]


async def _store(request: Request) -> Store:
    # async: a plain attribute read, not worth a trip to the thread pool
    store: Store = request.app.state.store
    return store


async def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


async def _scope(request: Request) -> TokenScope:
    scope: TokenScope = request.app.state.scope
    return scope


async def _caller(request: Request) -> ApiToken:
    # set by the route's role check, which FastAPI runs before the route's own dependencies
    token: ApiToken = request.state.token
    return token


async def _max_wait(request: Request) -> float:
    return float(request.app.state.max_wait)


def _query_names(route: APIRoute) -> frozenset[str]:
    names: set[str] = set()
    todo = [route.dependant]
    while todo:  # the route's own parameters and those of its dependencies (a short walk)
        dependant = todo.pop()
        names.update(p.alias for p in dependant.query_params)
        todo.extend(dependant.dependencies)
    return frozenset(names)


async def _known_query(request: Request) -> None:
    """422 for a query parameter the route does not take: a misspelt filter (``?stat=``)
    would otherwise be dropped, and the answer would look like the unfiltered one."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        known = _query_names(route)
        unknown = [k for k in request.query_params if k not in known]
        if unknown:
            raise invalid(*((("query", k), "is not a parameter of this route") for k in unknown))


async def _result_storage(request: Request) -> str:
    return str(request.app.state.result_storage)


def check_results(root: str, body: BaseModel) -> None:
    """422 naming the field when ``body`` carries a stored result that is malformed or points
    outside this server's result storage: a run record is no way to plant a file to load."""
    errors = wire.result_ref_errors(body, root)
    if errors:
        raise invalid(*((("body", *loc), why) for loc, why in errors))


StoreDep = Annotated[Store, Depends(_store)]
ResultRoot = Annotated[str, Depends(_result_storage)]
AuthDep = Annotated[Authenticator, Depends(_auth)]
MaxWait = Annotated[float, Depends(_max_wait)]
Operator = Annotated[ApiToken, Depends(require(Role.OPERATOR))]
ScopeDep = Annotated[TokenScope, Depends(_scope)]
Caller = Annotated[ApiToken, Depends(_caller)]


@dataclass(frozen=True, slots=True)
class Auditor:
    """Records what a route did in the audit log, naming the request's token (set by the
    route's role check before the route runs): the server writes every row itself."""

    request: Request

    def __call__(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        token: ApiToken = self.request.state.token
        Actor.of_token(token).record(self.request.app.state.store, action, target, detail)


async def _auditor(request: Request) -> Auditor:
    return Auditor(request)


Audit = Annotated[Auditor, Depends(_auditor)]


@dataclass
class _Entry:
    fn: Callable[..., Any]
    method: str
    path: str
    role: Role | None
    options: dict[str, Any]
    bounded: bool  # bodies sent without a Content-Length are cut at the app's bound


@dataclass
class Routes:
    """The routes of one module, registered on an app by ``include``. ``bounded``: bodies
    sent without a Content-Length are cut at the app's bound (``max_body_size``); ``signed``:
    its role-less routes authenticate by signature (so marked in the OpenAPI document).
    Every route declares the error answers it may give (``legato.server.errors.responses``)
    and, where it needs a role, the bearer token it needs."""

    bounded: bool = True
    signed: bool = False
    entries: list[_Entry] = field(default_factory=list)

    def op(
        self, operation: Operation, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The route of a declared store operation."""
        if operation.status != 200:
            options.setdefault("status_code", operation.status)
        options.setdefault("tags", [operation.tag])
        return self.add(operation.method, API + operation.path, operation.role, **options)

    def add(
        self,
        method: str,
        path: str,
        role: Role | None,
        *,
        bounded: bool | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A route at ``path``; ``role`` None: the route authenticates by itself (a signed
        request) or needs nothing (``/health``)."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            bound = self.bounded if bounded is None else bounded
            self.entries.append(_Entry(fn, method, path, role, options, bound))
            return fn

        return register

    def include(self, app: FastAPI) -> None:
        """Add every route to ``app``, in the order they were declared."""
        for e in self.entries:
            options = dict(e.options)
            declared = responses(
                authenticated=e.role is not None or self.signed,
                role=e.role is not None,
                body=e.method in _BODY_METHODS,
            )
            options["responses"] = {**declared, **options.get("responses", {})}
            if e.role is not None:
                options["dependencies"] = [Depends(require(e.role)), Depends(_known_query)]
                options["openapi_extra"] = {ROLE_KEY: e.role.value, "security": [{BEARER: []}]}
            elif self.signed:
                options["openapi_extra"] = {"x-legato-auth": "signed"}
            if e.bounded:
                options["max_body_size"] = app.state.max_body_bytes
            app.api_route(e.path, methods=[e.method], **options)(e.fn)
