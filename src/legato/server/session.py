"""Dashboard sessions: a signed cookie naming the API token a person logged in with.

The cookie holds the token's id, name and role, a CSRF token and an expiry, signed with an
HMAC-SHA256 under the server's session secret (``LEGATO_SESSION_SECRET``, random per start
when unset). It never holds the token's secret. It is HttpOnly and SameSite=Lax (Secure
behind https). Each request re-checks that the token is still live (a revoked token's
sessions end within ``recheck_seconds``). Every form carries the session's CSRF token, and
every POST is refused without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

from legato.models import ApiToken, Role
from legato.store import Store

COOKIE = "legato_session"
LOGIN_COOKIE = "legato_login"  # the login form's own CSRF nonce (double submit)


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str
    name: str
    role: Role
    csrf: str
    expires: float

    @property
    def can_act(self) -> bool:
        return self.role.allows(Role.OPERATOR)


class SessionSigner:
    def __init__(
        self,
        store: Store,
        *,
        secret: str | None,
        hours: float,
        auth: bool,
        recheck_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.key = (secret or secrets.token_urlsafe(32)).encode()
        self.seconds = hours * 3600
        self.auth = auth
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._live: tuple[float, set[str]] = (0.0, set())
        # With authentication off every visitor is an operator, with one CSRF token per start.
        self.open_session = Session(
            "no-auth", "no-auth", Role.OPERATOR, secrets.token_urlsafe(24), float("inf")
        )

    def _sign(self, payload: bytes) -> str:
        mac = hmac.new(self.key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, token: ApiToken) -> tuple[str, Session]:
        """A cookie value for a person who logged in with ``token``."""
        session = Session(
            token.id, token.name, token.role, secrets.token_urlsafe(24), time.time() + self.seconds
        )
        body = json.dumps(
            {
                "i": session.token_id,
                "n": session.name,
                "r": session.role.value,
                "c": session.csrf,
                "e": session.expires,
            },
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload.encode())}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session in a cookie, if it is signed by us, unexpired and its token is live."""
        if not self.auth:
            return self.open_session
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._sign(payload.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(
                str(data["i"]), str(data["n"]), Role(data["r"]), str(data["c"]), float(data["e"])
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires < time.time() or not self._is_live(session.token_id):
            return None
        return session

    def _is_live(self, token_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            until, live = self._live
        if until < now:
            live = {t.id for t in self.store.list_tokens() if t.revoked_at is None}
            with self._lock:
                self._live = (now + self.recheck_seconds, live)
        return token_id in live

    def forget(self) -> None:
        """Re-check tokens on the next request (after a revocation)."""
        with self._lock:
            self._live = (0.0, set())


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
