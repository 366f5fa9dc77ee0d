"""The SQL of share links (``legato.sharing``): only a SHA-256 of a link's secret is stored, a
password only as a salted scrypt hash, and every use of a link is a row of its access log.

Which files a share may give is decided above the store (``legato.sharing`` checks the items
against the server's roots when a share is made and again on every request); the store keeps
what was given, until when, and by whom.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update

from legato.errors import UsageError
from legato.models import Share, ShareAccess, ShareItem, new_id
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.tokens import hash_secret

SHARE_PREFIX = "lgs_"
PASSWORD_MAX = 200
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 50 ms and 16 MiB per check: slows guessing


def hash_password(password: str) -> str:
    """``scrypt$SALT$HASH`` (base64) of ``password`` with a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (from ``hash_password``) was made from."""
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode()[:4096], salt=base64.b64decode(salt), dklen=32, **_SCRYPT
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


class ShareSql:
    """Mixed into SqlStore."""

    _write: Any
    _read: Any

    def create_share(
        self,
        flow_run_id: str,
        items: Sequence[ShareItem],
        *,
        expires_at: float,
        created_by: str,
        note: str | None = None,
        password: str | None = None,
    ) -> tuple[Share, str]:
        """A new share link of ``flow_run_id``'s ``items``; returns its record and the
        link's secret (shown once, never stored)."""
        now = time.time()
        if not items:
            raise UsageError("a share needs something to give: --artifacts, --results or --path")
        if not now < expires_at:
            raise UsageError("a share's expiry must be in the future (e.g. --expires 7d)")
        if password is not None and not 0 < len(password) <= PASSWORD_MAX:
            raise UsageError(f"a share's password must be 1 to {PASSWORD_MAX} characters")
        self.get_flow_run(flow_run_id)  # type: ignore[attr-defined]  # RunNotFound if none
        secret = SHARE_PREFIX + secrets.token_urlsafe(24)  # 192 random bits
        share = Share(
            id=new_id(),
            flow_run_id=flow_run_id,
            items=list(items),
            created_at=now,
            expires_at=expires_at,
            created_by=created_by[:200],
            note=note,
            has_password=password is not None,
        )
        row = {
            "id": share.id,
            "hash": hash_secret(secret),
            "flow_run_id": flow_run_id,
            "items": json.dumps([item.to_json() for item in share.items]),
            "note": note,
            "password": None if password is None else hash_password(password),
            "created_at": now,
            "expires_at": expires_at,
            "created_by": share.created_by,
        }
        with self._write() as conn:
            conn.execute(insert(s.shares), [row])
        return share, secret

    def list_shares(self, flow_run_id: str | None = None, *, limit: int = 1000) -> list[Share]:
        """Shares, newest first (revoked and expired ones too); of one run if given."""
        c = s.shares.c
        q = select(s.shares).order_by(c.created_at.desc()).limit(limit)
        if flow_run_id is not None:
            q = q.where(c.flow_run_id == flow_run_id)
        with self._read() as conn:
            return [rowmap.share(r) for r in conn.execute(q)]

    def get_share(self, share_id: str) -> Share | None:
        with self._read() as conn:
            row = conn.execute(select(s.shares).where(s.shares.c.id == share_id)).first()
        return None if row is None else rowmap.share(row)

    def revoke_share(self, share_id: str) -> bool:
        """Revoke a live share by id or unique id prefix; False if none matched."""
        c = s.shares.c
        with self._write() as conn:
            rows = conn.execute(
                select(c.id).where(
                    c.revoked_at.is_(None), (c.id == share_id) | c.id.startswith(share_id)
                )
            ).all()
            if len(rows) > 1:
                raise UsageError(f"{share_id!r} matches {len(rows)} shares: give the full id")
            if not rows:
                return False
            conn.execute(update(s.shares).where(c.id == rows[0].id).values(revoked_at=time.time()))
        return True

    def open_share(self, secret: str) -> tuple[Share, str | None] | None:
        """The share whose link holds ``secret`` (revoked and expired ones too: the link
        page tells those apart from a wrong link) and its password hash; None if none."""
        if not secret.startswith(SHARE_PREFIX) or len(secret) > 100:
            return None
        c = s.shares.c
        with self._read() as conn:
            row = conn.execute(select(s.shares).where(c.hash == hash_secret(secret))).first()
        return None if row is None else (rowmap.share(row), row.password)

    def record_share_access(self, access: ShareAccess) -> None:
        row = {
            "share_id": access.share_id,
            "at": access.at,
            "client": access.client[:100],
            "item": access.item[:1000],
            "bytes": access.bytes,
            "status": access.status,
        }
        with self._write() as conn:
            conn.execute(insert(s.share_accesses), [row])

    def list_share_accesses(self, share_id: str, *, limit: int = 100) -> list[ShareAccess]:
        """A share's accesses, newest first."""
        c = s.share_accesses.c
        q = select(s.share_accesses).where(c.share_id == share_id).order_by(c.id.desc())
        with self._read() as conn:
            return [rowmap.share_access(r) for r in conn.execute(q.limit(limit))]
