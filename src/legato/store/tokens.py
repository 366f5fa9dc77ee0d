"""The SQL of API tokens: only a SHA-256 of each secret is stored."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, or_, select, update

from legato.errors import UsageError
from legato.models import ApiToken, Role, new_id
from legato.store import rows as rowmap
from legato.store import schema as s

TOKEN_PREFIX = "lgt_"


def live_token(now: float) -> ColumnElement[bool]:
    """A token neither revoked nor expired at ``now``: ``ApiToken.live`` in SQL."""
    t = s.api_tokens.c
    return and_(t.revoked_at.is_(None), or_(t.expires_at.is_(None), t.expires_at > now))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenSql:
    """Mixed into SqlStore."""

    _write: Any
    _read: Any

    def create_token(
        self,
        name: str,
        role: Role,
        *,
        pools: list[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token; returns its record and the secret (shown once, never stored).
        ``pools``: the only pools it may work for; ``expires_at``: when it stops working."""
        if not name.strip():
            raise UsageError("a token needs a name (--name)")
        now = time.time()
        if pools is not None:
            pools = sorted({p.strip() for p in pools if p.strip()})
            if not pools:
                raise UsageError("--pools names no pool: leave it out for every pool")
            if Role(role) is not Role.RUNNER:
                raise UsageError(
                    "only runner tokens can be limited to pools (--pools): they are what "
                    "workers and flow processes use"
                )
        if expires_at is not None and not (now < expires_at < 253402300799):
            raise UsageError("a token's expiry must be in the future (e.g. --expires 90d)")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            new_id(), name.strip(), Role(role), now, pools=pools, expires_at=expires_at
        )
        with self._write() as conn:
            conn.execute(
                insert(s.api_tokens),
                [
                    {
                        "id": token.id,
                        "name": token.name,
                        "role": token.role.value,
                        "hash": hash_secret(secret),
                        "created_at": token.created_at,
                        "pools": None if pools is None else json.dumps(pools),
                        "expires_at": expires_at,
                    }
                ],
            )
        return token, secret

    def verify_token(self, secret: str) -> ApiToken | None:
        """The live (unrevoked, unexpired) token with this secret, or None."""
        t = s.api_tokens.c
        q = select(s.api_tokens).where(t.hash == hash_secret(secret), live_token(time.time()))
        with self._read() as conn:
            row = conn.execute(q).first()
        return None if row is None else rowmap.token(row)

    def touch_token(self, token_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                update(s.api_tokens)
                .where(s.api_tokens.c.id == token_id)
                .values(last_used_at=time.time())
            )

    def list_tokens(self) -> list[ApiToken]:
        t = s.api_tokens.c
        with self._read() as conn:
            return [
                rowmap.token(r) for r in conn.execute(select(s.api_tokens).order_by(t.created_at))
            ]

    def revoke_token(self, id_or_name: str) -> bool:
        """Revoke a live token by id (or unique prefix) or name; False if none matched."""
        t = s.api_tokens.c
        with self._write() as conn:
            rows = conn.execute(
                select(t.id).where(
                    t.revoked_at.is_(None),
                    or_(t.id == id_or_name, t.name == id_or_name, t.id.startswith(id_or_name)),
                )
            ).all()
            if len(rows) > 1:
                raise UsageError(f"{id_or_name!r} matches {len(rows)} tokens: give the full id")
            if not rows:
                return False
            conn.execute(
                update(s.api_tokens).where(t.id == rows[0].id).values(revoked_at=time.time())
            )
        return True
