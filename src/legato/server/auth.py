"""Who may call the API: bearer tokens (``Authorization: Bearer lgt_...``) and their roles.

viewer reads; operator also answers, starts registered deployments, cancels, retries and
resumes; runner also records runs, registers code and works (claims, heartbeats, finishes);
admin also manages tokens, triggers, rules, pools and limits (``legato.models.Role``). What a
token may touch within its role (its pools, its workers' leases) is ``server/scope.py``.

A verified token is remembered for a few seconds (by the SHA-256 of its secret, never the
secret), so a busy worker does not cost a database read per request; a revocation through
this server takes effect at once, one made elsewhere within ``cache_seconds``.
``last_used_at`` is written at most once a minute per token. Secrets are never logged.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable

from anyio import to_thread
from fastapi import HTTPException, Request

from legato.models import ApiToken, Role
from legato.store import Store

# With authentication off (--no-auth, loopback only) every caller is this admin.
NO_AUTH = ApiToken(id="no-auth", name="no-auth", role=Role.ADMIN, created_at=0.0)
_CACHE_MAX = 4096


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        enabled: bool = True,
        cache_seconds: float = 5.0,
        touch_every: float = 60.0,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.cache_seconds = cache_seconds
        self.touch_every = touch_every
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[ApiToken, float]] = {}  # sha256(secret) -> token, until
        self._touched: dict[str, float] = {}  # token id -> when last_used_at was written
        # Called by forget(): what else remembers tokens (the dashboard's sessions).
        self.on_forget: list[Callable[[], None]] = []

    def check(self, authorization: str | None, needed: Role) -> ApiToken:
        """The caller's token if it has ``needed``'s role; HTTP 401 or 403 otherwise. It may
        read and write the store: the server calls it off the event loop, and only when
        ``check_remembered`` could not answer."""
        if not self.enabled:
            return NO_AUTH
        token = self._admit(self._verify(_secret(authorization)), needed)
        self._touch(token)
        return token

    def check_remembered(self, authorization: str | None, needed: Role) -> ApiToken | None:
        """``check`` without the store: the caller's token when it is remembered and its
        ``last_used_at`` needs no write now, None when ``check`` must go to the store. A
        dictionary lookup, so the event loop may run it: most requests then skip the thread
        pool, which a storm of them would otherwise queue on."""
        if not self.enabled:
            return NO_AUTH
        token = self._remembered(_key(_secret(authorization)), time.monotonic())
        if token is None or self._touch_due(token, time.monotonic()):
            return None
        return self._admit(token, needed)

    @staticmethod
    def _admit(token: ApiToken | None, needed: Role) -> ApiToken:
        """``token`` if it is live and has ``needed``'s role; HTTP 401 or 403 otherwise."""
        if token is None or not token.live(time.time()):  # a remembered token may expire
            raise _unauthorized("the API token is wrong or revoked (or expired)")
        if not token.role.allows(needed):
            raise HTTPException(
                403,
                detail=f"token {token.name!r} has role {token.role.value}; "
                f"this needs {needed.value} or above",
            )
        return token

    def forget(self) -> None:
        """Drop every remembered token (after a revocation)."""
        with self._lock:
            self._cache.clear()
        for then in self.on_forget:
            then()

    def _remembered(self, key: str, now: float) -> ApiToken | None:
        with self._lock:
            hit = self._cache.get(key)
        return hit[0] if hit is not None and hit[1] > now else None

    def _verify(self, secret: str) -> ApiToken | None:
        key, now = _key(secret), time.monotonic()
        remembered = self._remembered(key, now)
        if remembered is not None:
            return remembered
        token = self.store.verify_token(secret)
        if token is not None:
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = (token, now + self.cache_seconds)
        return token

    def _touch_due(self, token: ApiToken, now: float) -> bool:
        with self._lock:
            last = self._touched.get(token.id)
        return last is None or now - last >= self.touch_every

    def _touch(self, token: ApiToken) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(token.id)
            if last is not None and now - last < self.touch_every:
                return
            self._touched[token.id] = now
        self.store.touch_token(token.id)


def _secret(authorization: str | None) -> str:
    """The bearer secret of an Authorization header; 401 when there is none."""
    scheme, _, secret = (authorization or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise _unauthorized(
            "this API needs a token: send `Authorization: Bearer TOKEN` "
            "(create one with `legato tokens create`)"
        )
    return secret


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@functools.cache  # one callable per role: FastAPI then runs it once per request
def require(role: Role) -> Callable[[Request], Awaitable[ApiToken]]:
    """A FastAPI dependency: the caller's token, which must have ``role`` or above."""

    async def dependency(request: Request) -> ApiToken:
        auth: Authenticator = request.app.state.auth
        header = request.headers.get("authorization")
        token = auth.check_remembered(header, role)
        if token is None:  # the store must answer (or be written): off the event loop
            token = await to_thread.run_sync(auth.check, header, role)
        request.state.token = token  # the audit log names it (routes/_common.py: Audit)
        return token

    dependency.__name__ = f"require_{role.value}"
    return dependency


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
