"""The SQL of the admin role: concurrency limits, deployments and pool definitions, and
``AdminSql``, which gathers every admin and view part (tokens, dashboard sessions, schedules,
triggers, notifications, dashboard queries, statistics, the audit log, share links).

SqlStore loads this module on first use of one of its methods (see ``sql.py``): an embedded
flow run never needs it, so it never pays for importing it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from legato.errors import UsageError
from legato.models import Deployment, FlowRun, Pool, check_priority
from legato.store import rows as rowmap
from legato.store import schema as s
from legato.store.audit import AuditSql
from legato.store.sessions import SessionSql
from legato.store.shares import ShareSql
from legato.store.stats import StatsSql
from legato.store.tokens import TokenSql
from legato.store.triggers import TriggerSql
from legato.store.views import ViewsSql


class SettingsSql:
    """Limits, deployments and pool definitions: what an admin or operator sets."""

    _write: Any
    _read: Any
    apply: Any

    def set_limit(self, name: str, limit: int) -> None:
        """At most ``limit`` task runs RUNNING at once for ``tag:X``, ``pool:X`` or ``flow:X``."""
        with self._write() as conn:
            conn.execute(delete(s.concurrency_limits).where(s.concurrency_limits.c.name == name))
            conn.execute(
                insert(s.concurrency_limits),
                [{"name": name, "limit": limit, "updated_at": time.time()}],
            )

    def list_limits(self) -> dict[str, int]:
        with self._read() as conn:
            return {r.name: r.limit for r in conn.execute(select(s.concurrency_limits))}

    def delete_limit(self, name: str) -> bool:
        with self._write() as conn:
            c = s.concurrency_limits.c
            return bool(conn.execute(delete(s.concurrency_limits).where(c.name == name)).rowcount)

    # -- deployments ----------------------------------------------------------------------------

    def put_deployment(self, dep: Deployment) -> None:
        """Create or replace a deployment (by name)."""
        row = dep.to_json()
        row["parameters"] = json.dumps(dep.parameters)
        row["tags"] = json.dumps(dep.tags)
        schema = dep.parameter_schema
        row["parameter_schema"] = None if schema is None else json.dumps(schema)
        d = s.deployments.c
        with self._write() as conn:
            existing = conn.execute(select(d.created_at).where(d.name == dep.name)).first()
            if existing is None:
                conn.execute(insert(s.deployments), [row])
            else:
                row["created_at"] = existing.created_at
                conn.execute(update(s.deployments).where(d.name == dep.name).values(row))

    def get_deployment(self, name: str) -> Deployment | None:
        d = s.deployments.c
        with self._read() as conn:
            row = conn.execute(select(s.deployments).where(d.name == name)).first()
        return None if row is None else rowmap.deployment(row)

    def list_deployments(self) -> list[Deployment]:
        with self._read() as conn:
            rows = conn.execute(select(s.deployments).order_by(s.deployments.c.name)).all()
        return [rowmap.deployment(r) for r in rows]

    def start_deployment(
        self, name: str, parameters: dict[str, Any], *, priority: int | None = None
    ) -> FlowRun:
        """Queue a run of the deployment (InvalidParameters if they do not fit its schema);
        ``priority``: the run's, instead of the deployment's."""
        from legato.store.ops import InsertFlowRun
        from legato.store.starts import build_run

        dep = self.get_deployment(name)
        if dep is None:
            raise UsageError(f"no deployment named {name!r}")
        run = build_run(dep, parameters)
        if priority is not None:
            run.priority = check_priority(priority, f"a run of {name!r}")
        self.apply([InsertFlowRun(run, message=f"queued for pool {dep.pool}")])
        return run

    def delete_deployment(self, name: str) -> bool:
        with self._write() as conn:
            return bool(
                conn.execute(delete(s.deployments).where(s.deployments.c.name == name)).rowcount
            )

    def put_pool(self, pool: Pool) -> None:
        """Create or replace a pool definition (by name); ``created_at`` is kept on replace."""
        p = s.pools.c
        row = {
            "name": pool.name,
            "type": pool.type,
            "options": json.dumps(pool.options, sort_keys=True),
            "created_at": pool.created_at or time.time(),
        }
        with self._write() as conn:
            existing = conn.execute(select(p.created_at).where(p.name == pool.name)).first()
            if existing is None:
                conn.execute(insert(s.pools), [row])
            else:
                row["created_at"] = existing.created_at
                conn.execute(update(s.pools).where(p.name == pool.name).values(row))

    def list_pools(self) -> list[Pool]:
        with self._read() as conn:
            return [rowmap.pool(r) for r in conn.execute(select(s.pools).order_by(s.pools.c.name))]

    def delete_pool(self, name: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(delete(s.pools).where(s.pools.c.name == name)).rowcount)


class AdminSql(
    SettingsSql, TokenSql, SessionSql, TriggerSql, ViewsSql, StatsSql, AuditSql, ShareSql
):
    """Every admin and view method of SqlStore."""
