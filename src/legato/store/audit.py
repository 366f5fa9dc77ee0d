"""The SQL of the audit log: rows are only ever added, and read newest first.

Who writes them is decided above the store: the server records what its routes, pages and
Slack app do (with the caller's token), the CLI what it does on the database itself. There is
no HTTP route that writes a row (see ``SERVER_ONLY``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import insert, select

from legato.models import AuditEvent
from legato.store import rows as rowmap
from legato.store import schema as s


class AuditSql:
    """Mixed into SqlStore."""

    _write: Any
    _read: Any

    def record_audit(self, event: AuditEvent) -> None:
        """Add one event (``at`` defaults to now; the store gives the id)."""
        row = {
            "at": event.at or time.time(),
            "actor": event.actor[:200],
            "role": event.role[:20],
            "action": event.action[:50],
            "target": event.target[:500],
            "detail": json.dumps(event.detail, sort_keys=True, default=str),
        }
        with self._write() as conn:
            conn.execute(insert(s.audit_events), [row])

    def list_audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events, newest first. ``action`` ending in a dot is a prefix (``token.``)."""
        a = s.audit_events.c
        q = select(s.audit_events)
        if action:
            q = q.where(a.action.startswith(action) if action.endswith(".") else a.action == action)
        if actor:
            q = q.where(a.actor == actor)
        if target:
            q = q.where(a.target == target)
        if since is not None:
            q = q.where(a.at >= since)
        q = q.order_by(a.id.desc()).limit(limit)
        with self._read() as conn:
            return [rowmap.audit_event(r) for r in conn.execute(q)]
