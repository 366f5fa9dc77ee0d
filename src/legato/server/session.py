"""Dashboard sessions: a row per login in the database, and a signed cookie naming it.

A login adds a ``dashboard_sessions`` row (random 32-byte id, the token, an expiry
``LEGATO_SESSION_HOURS`` ahead). The cookie holds that id and the session's CSRF token,
signed with ``itsdangerous`` under ``LEGATO_SESSION_SECRET`` (random per start when unset)
with a timestamp, so a cookie older than the session's lifetime fails its signature check on
its own. It never holds the token's secret, name or role: those are read from the database.
It is HttpOnly and SameSite=Lax (Secure behind https).

Each request checks the row: live, unexpired, and its token neither revoked nor expired. The
answer is remembered for ``recheck_seconds`` per process, so a busy page costs no query per
poll; a logout or a token revocation through this server forgets it at once, one made through
another server process takes effect there within ``recheck_seconds``. Logout revokes the row.

Keys in ``LEGATO_SESSION_OLD_SECRETS`` are still accepted but never sign: the way to change
the key without logging everyone out. Every form carries the session's CSRF token, and every
POST is refused without it.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

from legato.models import ApiToken, Role
from legato.store import AdminStore

COOKIE = "legato_session"
LOGIN_COOKIE = "legato_login"  # the login form's own CSRF nonce (double submit)
SALT = "legato.session"  # keeps these signatures apart from any other use of the key
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    token_id: str
    name: str
    role: Role
    csrf: str
    expires: float

    @property
    def can_act(self) -> bool:
        return self.role.allows(Role.OPERATOR)


def session_keys(secret: str | None, old: str | None) -> list[str]:
    """The keys a cookie may be signed with, the signing one last (itsdangerous' order):
    ``old`` is a comma-separated list of earlier keys, still accepted."""
    earlier = [k.strip() for k in (old or "").split(",") if k.strip()]
    return [*earlier, secret or secrets.token_urlsafe(32)]


class SessionKeeper:
    def __init__(
        self,
        store: AdminStore,
        *,
        keys: list[str],
        hours: float,
        auth: bool,
        recheck_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.seconds = hours * 3600
        self.auth = auth
        self.recheck_seconds = recheck_seconds
        self._serializer = URLSafeTimedSerializer(keys, salt=SALT)
        # The signature's age is in whole seconds; the row's expiry is the exact bound.
        self._max_age = math.ceil(self.seconds)
        self._lock = threading.Lock()
        # session id -> (token, session expiry, recheck after): a live row seen recently
        self._live: dict[str, tuple[ApiToken, float, float]] = {}
        # Bumped by every logout and revocation: a lookup that raced one is not remembered.
        self._generation = 0
        # With authentication off every visitor is an operator, with one CSRF token per start.
        self.open_session = Session(
            "no-auth", "no-auth", "no-auth", Role.OPERATOR, secrets.token_urlsafe(24), float("inf")
        )

    def issue(self, token: ApiToken) -> tuple[str, Session]:
        """A new session for a person who logged in with ``token``, and its cookie value."""
        expires = time.time() + self.seconds
        session_id = self.store.create_session(token.id, expires)
        csrf = secrets.token_urlsafe(24)
        cookie = self._serializer.dumps({"s": session_id, "c": csrf})
        return cookie, Session(session_id, token.id, token.name, token.role, csrf, expires)

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie names, if it is signed by us within the session lifetime and
        its row is live."""
        if not self.auth:
            return self.open_session
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie, max_age=self._max_age)
            session_id, csrf = str(data["s"]), str(data["c"])
        except (BadData, KeyError, TypeError):
            return None
        found = self._lookup(session_id)
        if found is None:
            return None
        token, expires = found
        return Session(session_id, token.id, token.name, token.role, csrf, expires)

    def _lookup(self, session_id: str) -> tuple[ApiToken, float] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._live.get(session_id)
            generation = self._generation
        if hit is not None and hit[2] > now and hit[1] > time.time():
            return hit[0], hit[1]
        found = self.store.live_session(session_id)
        with self._lock:
            if found is None:
                self._live.pop(session_id, None)
            elif generation == self._generation:
                if len(self._live) >= _CACHE_MAX:
                    self._live.clear()
                self._live[session_id] = (*found, now + self.recheck_seconds)
        return found

    def end(self, session: Session) -> None:
        """Log out: the row is revoked, so the cookie admits no one again, anywhere."""
        self.store.revoke_session(session.id)
        with self._lock:
            self._generation += 1
            self._live.pop(session.id, None)

    def forget(self) -> None:
        """Re-check every session on its next request (after a token revocation)."""
        with self._lock:
            self._generation += 1
            self._live.clear()


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
