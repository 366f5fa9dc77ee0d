"""The API's error bodies, one shape per kind, as the OpenAPI document declares them.

A 422 (the request is not valid) has FastAPI's standard shape, ``HTTPValidationError``:
``{"detail": [{"loc": ["body", "ops", 1, "id"], "msg": "...", "type": "..."}]}``, whether
pydantic found the problem or one of the server's own checks did. Every other error is
``{"detail": "a message for a person"}`` (``ErrorBody``). ``responses`` is the set of error
answers a route declares; the ``Routes`` collector gives it to every route, so a new route
declares its errors without saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

Loc = Sequence[str | int]


class ErrorBody(BaseModel):
    """Every error answer but 422: what went wrong, for a person to read. A 409 for an
    illegal state change also names ``error`` and the ``index`` of the refused op."""

    detail: str


def invalid(*problems: tuple[Loc, str]) -> RequestValidationError:
    """A 422 naming each ``(loc, message)``, for the server's own checks (raise it):
    ``raise invalid((("body", "pool", "name"), "must match the path"))``."""
    return RequestValidationError(
        [{"loc": tuple(loc), "msg": msg, "type": "value_error"} for loc, msg in problems]
    )


def validation_body(errors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The 422 body of pydantic-style ``errors``: only ``loc``, ``msg`` and ``type`` (never
    ``input``, which would echo back what was sent, secrets and megabytes included)."""
    detail = []
    for e in errors:
        kind = str(e.get("type") or "value_error")
        msg = "not valid JSON" if kind == "json_invalid" else str(e.get("msg") or "not valid")
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        detail.append({"loc": loc, "msg": msg, "type": kind})
    if not detail:
        detail.append({"loc": ["body"], "msg": "invalid request", "type": "value_error"})
    return {"detail": detail}


def error(
    status: int,
    message: str,
    *,
    loc: Loc = ("body",),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer: ``{"detail": message}``, or for 422 the standard validation shape
    naming ``loc`` (default: the whole body)."""
    if status == 422:
        body = validation_body([{"loc": loc, "msg": message, "type": "value_error"}])
        return JSONResponse(body, status_code=422, headers=headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


_WHY = {
    400: "The request is well formed but cannot be done (a rule the schema cannot state).",
    401: "No token, or a token that is unknown, revoked or expired.",
    403: "The token's role is below the route's (x-legato-role).",
    404: "Nothing has that id or name.",
    409: "Conflicts with what is stored (a state that changed meanwhile, a name taken).",
    413: "The request body is over the server's limit.",
    429: "Too many requests of this kind from this token at once; see Retry-After.",
    503: "The state store cannot be reached; retry later.",
}


def responses(*, authenticated: bool, role: bool, body: bool) -> dict[int | str, Any]:
    """The error answers a route may give, for its OpenAPI entry: those of every route, 401
    where a caller authenticates, 403 where a role is needed, 413 where a body is sent."""
    codes = [400, 404, 409, 429, 503]
    if authenticated:
        codes.append(401)
    if role:
        codes.append(403)
    if body:
        codes.append(413)
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in sorted(codes)}
