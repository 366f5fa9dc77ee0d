"""Schedules of deployments (cron or intervals)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from legato import audit as details
from legato.errors import UsageError
from legato.models import Schedule
from legato.server.routes._common import Audit, Caller, Id, Routes, StoreDep
from legato.server.scope import check_pool
from legato.store.operations import OPERATIONS
from legato.store.wire import Count, SchedulesIn
from legato.triggers.scheduler import check_schedule

routes = Routes(bounded=False, signed=True)


@routes.op(OPERATIONS["list_schedules"])
def list_schedules(
    store: StoreDep,
    deployment: Annotated[str | None, Query(max_length=200)] = None,
) -> list[Schedule]:
    """Schedules, by deployment."""
    return store.list_schedules(deployment)


@routes.op(OPERATIONS["replace_schedules"])
def replace_schedules(
    store: StoreDep, name: Id, body: SchedulesIn, audit: Audit, token: Caller
) -> None:
    """Make these the deployment's only schedules (an empty list removes them)."""
    dep = store.get_deployment(name)
    if dep is not None:
        check_pool(token, dep.pool, "schedule runs in")
    for sch in body.schedules:
        if sch.deployment != name:
            raise UsageError("every schedule's deployment must match the path")
        check_schedule(sch)
    store.replace_schedules(name, body.schedules)
    audit("schedule.put", name, details.schedules(body.schedules))


@routes.op(OPERATIONS["pause_schedules"])
def pause_schedules(store: StoreDep, ref: Id, audit: Audit) -> Count:
    """Pause a schedule (by id or id prefix) or every schedule of a deployment."""
    count = store.set_schedules_paused(ref, True)
    if count:
        audit("schedule.pause", ref, {"count": count})
    return Count(count=count)


@routes.op(OPERATIONS["resume_schedules"])
def resume_schedules(store: StoreDep, ref: Id, audit: Audit) -> Count:
    """Resume: the next run is the next scheduled time from now (no catch-up)."""
    count = store.set_schedules_paused(ref, False)
    if count:
        audit("schedule.resume", ref, {"count": count})
    return Count(count=count)


@routes.op(OPERATIONS["scheduled_runs"])
def scheduled_runs(store: StoreDep, name: Id) -> list[tuple[float, str]]:
    """(scheduled time, flow run id) of every run the deployment's schedules started."""
    return store.scheduled_runs(name)
