"""The SQL of dashboard sessions: one row per login, so a logout ends it on the server.

A session is live while its row is unexpired and not revoked, and its token is neither
revoked nor past its own expiry: revoking a token ends every session made with it. Rows that
can never admit anyone again are deleted when someone logs in, so they do not pile up.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from legato.models import ApiToken
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.tokens import live_token

SESSION_ID_BYTES = 32  # random bytes behind each id (43 URL-safe characters)


class SessionSql:
    """Mixed into SqlStore."""

    _write: Any
    _read: Any

    def create_session(self, token_id: str, expires_at: float) -> str:
        """A new session for ``token_id`` until ``expires_at``; returns its (secret) id.
        Rows expired or revoked before now are deleted on the way."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = time.time()
        d = s.dashboard_sessions.c
        with self._write() as conn:
            conn.execute(
                delete(s.dashboard_sessions).where(
                    or_(d.expires_at < now, d.revoked_at.is_not(None))
                )
            )
            conn.execute(
                insert(s.dashboard_sessions),
                [
                    {
                        "id": session_id,
                        "token_id": token_id,
                        "created_at": now,
                        "expires_at": expires_at,
                    }
                ],
            )
        return session_id

    def live_session(self, session_id: str) -> tuple[ApiToken, float] | None:
        """The token a live session was made with and the session's expiry, or None."""
        now = time.time()
        d, t = s.dashboard_sessions.c, s.api_tokens.c
        q = (
            select(s.api_tokens, d.expires_at.label("session_expires_at"))
            .join(s.dashboard_sessions, d.token_id == t.id)
            .where(
                d.id == session_id,
                d.revoked_at.is_(None),
                d.expires_at > now,
                live_token(now),
            )
        )
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        token = rowmap.token(row)
        expires = row.session_expires_at
        if token.expires_at is not None:  # the token's own expiry ends the session too
            expires = min(expires, token.expires_at)
        return token, expires

    def revoke_session(self, session_id: str) -> bool:
        """End a session (logout); False if it was not live."""
        d = s.dashboard_sessions.c
        with self._write() as conn:
            done = conn.execute(
                update(s.dashboard_sessions)
                .where(d.id == session_id, d.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return bool(done.rowcount)
