"""Schedules: a deployment started on a cron expression (in a time zone) or every N seconds.

Each schedule row keeps ``next_at``, the next scheduled time not yet started. A pass of the
scheduler takes every schedule whose ``next_at`` has come, lists the scheduled times up to
now, keeps those its catch-up policy wants, starts one run per kept time and moves ``next_at``
past now. A run is inserted with its (deployment, scheduled time) key in one transaction: a
scheduler that crashed between starting runs and moving ``next_at``, or a second scheduler on
the same database, computes the same times and collides with the keys, so each scheduled
time starts exactly one run.

Catch-up after downtime: ``skip`` starts only times that are due now (within ``grace``
seconds), ``latest`` starts the most recent missed time once, ``all`` starts every missed time
(at most ``MAX_CATCHUP`` per pass; the rest on the next passes).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from legato.errors import UsageError
from legato.models import CATCHUP_POLICIES, Schedule, new_id
from legato.store import Store

log = logging.getLogger("legato.scheduler")
MAX_CATCHUP = 1000


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris or UTC"
        ) from None


def check_cron(expr: str, tz: str = "UTC") -> None:
    """UsageError naming what is wrong with a cron expression or time zone."""
    from cronsim import CronSim, CronSimError

    zone = _zone(tz)
    try:
        CronSim(expr, datetime.now(zone))
    except CronSimError as exc:
        raise UsageError(
            f"bad cron expression {expr!r}: {exc} (expected 5 fields: minute hour day-of-month "
            'month day-of-week, e.g. "0 2 * * 1" for Mondays at 02:00)'
        ) from None


def check_schedule(sch: Schedule) -> None:
    """UsageError naming what is wrong with a schedule sent over the API."""
    if (sch.cron is None) == (sch.every is None):
        raise UsageError("a schedule needs either cron or every")
    if sch.cron is not None:
        check_cron(sch.cron, sch.timezone)
    else:
        _zone(sch.timezone)
        if sch.every is None or sch.every <= 0:
            raise UsageError("every must be a positive number of seconds")
    if sch.catchup not in CATCHUP_POLICIES:
        raise UsageError(f"catchup must be one of {', '.join(CATCHUP_POLICIES)}")


def next_time(schedule: Schedule, after: float) -> float:
    """The first scheduled time strictly after ``after`` (epoch seconds)."""
    if schedule.cron is not None:
        from cronsim import CronSim

        zone = _zone(schedule.timezone)
        start = datetime.fromtimestamp(after, zone)
        return next(CronSim(schedule.cron, start)).timestamp()
    every = schedule.every
    assert every is not None and every > 0
    anchor = schedule.created_at
    if after < anchor:
        return anchor
    return anchor + every * (math.floor((after - anchor) / every) + 1)


def make_schedule(
    deployment: str,
    *,
    cron: str | None = None,
    timezone: str = "UTC",
    every: float | None = None,
    catchup: str = "skip",
    parameters: dict[str, Any] | None = None,
    paused: bool = False,
    now: float | None = None,
) -> Schedule:
    """A checked schedule; its first time is the first one after ``now``."""
    if (cron is None) == (every is None):
        raise UsageError("a schedule needs either a cron expression (--cron) or --every SECONDS")
    if cron is not None:
        check_cron(cron, timezone)
    else:
        _zone(timezone)
    if every is not None and not (every > 0 and math.isfinite(every)):
        raise UsageError(f"--every must be a positive number of seconds, got {every!r}")
    if catchup not in CATCHUP_POLICIES:
        raise UsageError(f"--catchup must be one of {', '.join(CATCHUP_POLICIES)}, got {catchup!r}")
    t = time.time() if now is None else now
    sch = Schedule(
        id=new_id(),
        deployment=deployment,
        cron=cron,
        timezone=timezone,
        every=every,
        catchup=catchup,
        paused=paused,
        parameters=dict(parameters or {}),
        created_at=t,
        updated_at=t,
    )
    sch.next_at = next_time(sch, t)
    return sch


def choose(times: list[float], policy: str, now: float, grace: float) -> list[float]:
    """Which of the due ``times`` (oldest first) to start under a catch-up policy."""
    if not times:
        return []
    if policy == "all":
        return times
    if policy == "latest":
        return [times[-1]]
    return [t for t in times if now - t <= grace]


class Scheduler:
    """Starts the runs of due schedules; call ``tick()`` (the trigger service does, every
    ``LEGATO_SCHEDULER_TICK`` seconds). ``now`` is injectable for tests."""

    def __init__(
        self,
        store: Store,
        *,
        now: Callable[[], float] = time.time,
        grace: float = 30.0,
        start: Callable[..., Any] | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self.grace = grace
        # Tests stop a scheduler between starting runs and moving next_at (a crash mid-tick).
        self._after_start = start

    def tick(self) -> int:
        """One pass; returns how many runs it started."""
        started = 0
        now = self.now()
        for sch in self.store.due_schedules(now):
            try:
                started += self._run_schedule(sch, now)
            except Exception as exc:  # one bad schedule must not stop the others
                log.error("schedule %s of %s failed: %s", sch.id, sch.deployment, exc)
        return started

    def _run_schedule(self, sch: Schedule, now: float) -> int:
        if sch.next_at is None:  # new or resumed: start from now, catch nothing up
            self.store.advance_schedule(sch.id, None, next_time(sch, now), None)
            return 0
        times: list[float] = []
        t = sch.next_at
        while t <= now and len(times) < MAX_CATCHUP:
            times.append(t)
            t = next_time(sch, t)
        chosen = choose(times, sch.catchup, now, self.grace)
        started = 0
        dep = self.store.get_deployment(sch.deployment) if chosen else None
        if chosen and dep is None:
            log.warning(
                "schedule %s: deployment %r is gone; nothing started", sch.id, sch.deployment
            )
            chosen = []
        if dep is not None:
            from legato.store.starts import build_run

            for at in chosen:
                run = build_run(dep, sch.parameters)
                when = datetime.fromtimestamp(at, _zone(sch.timezone)).isoformat()
                if self.store.start_scheduled_run(
                    run, sch.id, at, message=f"scheduled for {when} ({sch.describe()})"
                ):
                    started += 1
                    log.info("started run %s of %s scheduled for %s", run.id, dep.name, when)
                if self._after_start is not None:
                    self._after_start(sch, at)
        skipped = len(times) - len(chosen)
        if skipped:
            log.info(
                "schedule %s of %s: %d missed time(s) not started (catch-up %s)",
                sch.id,
                sch.deployment,
                skipped,
                sch.catchup,
            )
        self.store.advance_schedule(sch.id, sch.next_at, t, chosen[-1] if chosen else None)
        return started
