"""Schedules: cron in a time zone and intervals, catch-up policies, pause, and exactly one run
per scheduled time across a scheduler restart mid-tick and with two schedulers on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from legato.errors import UsageError
from legato.models import Schedule, State
from legato.store import Store, open_store
from legato.triggers.scheduler import Scheduler, make_schedule, next_time

from .conftest import Clock, deploy_flow

EVERY = 60.0


def _runs(store: Store, deployment: str) -> list[Any]:
    return [r for r in store.list_flow_runs(limit=10_000) if r.deployment == deployment]


def test_cron_follows_the_time_zone_across_a_dst_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    sch = make_schedule("d", cron="0 2 * * 1", timezone="Europe/Paris")
    friday = datetime(2026, 3, 27, 12, 0, tzinfo=paris).timestamp()
    first = next_time(sch, friday)  # Monday 30 March, after the switch to summer time
    assert datetime.fromtimestamp(first, paris) == datetime(2026, 3, 30, 2, 0, tzinfo=paris)
    assert datetime.fromtimestamp(first, ZoneInfo("UTC")).hour == 0  # 02:00 CEST = 00:00 UTC
    second = next_time(sch, first)
    assert second - first == 7 * 24 * 3600


def test_interval_times_are_anchored_at_creation() -> None:
    sch = make_schedule("d", every=EVERY, now=1000.0)
    assert sch.next_at == 1060.0
    assert next_time(sch, 1060.0) == 1120.0
    assert next_time(sch, 1061.5) == 1120.0


@pytest.mark.parametrize(
    ("cron", "tz", "every", "catchup", "message"),
    [
        ("0 2 * *", "UTC", None, "skip", "bad cron expression"),
        ("0 2 * * 1", "Mars/Olympus", None, "skip", "unknown time zone"),
        (None, "UTC", None, "skip", "either a cron expression"),
        (None, "UTC", -5.0, "skip", "positive number"),
        (None, "UTC", 60.0, "sometimes", "--catchup must be one of"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(
    cron: str | None, tz: str, every: float | None, catchup: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        make_schedule("d", cron=cron, timezone=tz, every=every, catchup=catchup)


def _scheduled(store: Store, flows_file: Path, clock: Clock, catchup: str = "skip") -> Schedule:
    deploy_flow(store, flows_file, "nightly")
    sch = make_schedule(
        "nightly", every=EVERY, catchup=catchup, parameters={"label": "tick"}, now=clock()
    )
    store.replace_schedules("nightly", [sch])
    return sch


def test_each_scheduled_time_starts_one_run(store: Store, flows_file: Path) -> None:
    clock = Clock()
    t0 = clock.t
    _scheduled(store, flows_file, clock)
    scheduler = Scheduler(store, now=clock)
    clock.t = t0 + EVERY - 1
    assert scheduler.tick() == 0
    clock.t = t0 + EVERY
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0  # the same time again: nothing
    clock.t = t0 + 2 * EVERY + 5
    assert scheduler.tick() == 1
    times = [t for t, _ in store.scheduled_runs("nightly")]
    assert times == [t0 + EVERY, t0 + 2 * EVERY]
    runs = _runs(store, "nightly")
    assert len(runs) == 2
    assert all(r.state is State.PENDING and r.pool == "default" for r in runs)
    assert all(r.parameters == {"label": "tick"} and r.queued_at is not None for r in runs)
    assert "scheduled for" in (store.get_history(runs[0].id)[0].message or "")


@pytest.mark.parametrize(("catchup", "expected"), [("skip", 0), ("latest", 1), ("all", 10)])
def test_catch_up_after_downtime(
    store: Store, flows_file: Path, catchup: str, expected: int
) -> None:
    clock = Clock()
    t0 = clock.t
    _scheduled(store, flows_file, clock, catchup)
    clock.t = t0 + 10 * EVERY + 45  # down for ten intervals; the last time is 45 s old
    scheduler = Scheduler(store, now=clock, grace=30.0)
    assert scheduler.tick() == expected
    assert len(_runs(store, "nightly")) == expected
    (sch,) = store.list_schedules("nightly")
    assert sch.next_at == t0 + 11 * EVERY  # past now, whatever the policy
    if catchup == "latest":
        assert [t for t, _ in store.scheduled_runs("nightly")] == [t0 + 10 * EVERY]


def test_a_scheduler_killed_mid_tick_starts_nothing_twice_after_restart(
    store: Store, flows_file: Path, tmp_path: Path
) -> None:
    clock = Clock()
    t0 = clock.t
    _scheduled(store, flows_file, clock, "all")
    clock.t = t0 + 10 * EVERY
    started: list[float] = []

    def crash_after_four(_sch: Schedule, at: float) -> None:
        started.append(at)
        if len(started) == 4:
            raise RuntimeError("killed")  # between the 4th run and moving next_at

    assert Scheduler(store, now=clock, start=crash_after_four).tick() == 0  # the pass died
    assert len(_runs(store, "nightly")) == 4
    (sch,) = store.list_schedules("nightly")
    assert sch.next_at == t0 + EVERY  # not moved: the restart redoes the same times

    restarted = open_store(f"sqlite:///{tmp_path / 'triggers.db'}")  # a new process
    try:
        assert Scheduler(restarted, now=clock).tick() == 6
        assert Scheduler(restarted, now=clock).tick() == 0
    finally:
        restarted.close()
    times = [t for t, _ in store.scheduled_runs("nightly")]
    assert times == [t0 + k * EVERY for k in range(1, 11)]
    assert len(_runs(store, "nightly")) == 10


def test_paused_schedules_start_nothing_and_resume_from_now(store: Store, flows_file: Path) -> None:
    clock = Clock()
    t0 = clock.t
    sch = _scheduled(store, flows_file, clock, "all")
    assert store.set_schedules_paused("nightly", True) == 1
    assert store.set_schedules_paused(sch.id[:8], True) == 0  # already paused
    scheduler = Scheduler(store, now=clock)
    clock.t = t0 + 5 * EVERY
    assert scheduler.tick() == 0
    assert store.set_schedules_paused(sch.id, False) == 1
    assert scheduler.tick() == 0  # resumed: the paused times are not caught up
    (after,) = store.list_schedules()
    assert after.next_at == t0 + 6 * EVERY
    clock.t = t0 + 6 * EVERY
    assert scheduler.tick() == 1


def test_a_schedule_whose_deployment_is_gone_starts_nothing(store: Store, flows_file: Path) -> None:
    clock = Clock()
    _scheduled(store, flows_file, clock)
    store.delete_deployment("nightly")
    clock.t += EVERY
    assert Scheduler(store, now=clock).tick() == 0
    assert store.list_schedules()[0].next_at == clock.t + EVERY


@pytest.mark.postgres
def test_two_schedulers_on_one_postgres_start_each_time_once(
    postgres_server: Any, flows_file: Path, legato_home: Path
) -> None:
    url = postgres_server.create_database()
    first, second = open_store(url), open_store(url)
    try:
        clock = Clock()
        t0 = clock.t
        _scheduled(first, flows_file, clock, "all")
        schedulers = [Scheduler(first, now=clock), Scheduler(second, now=clock)]
        barrier = threading.Barrier(2)

        def tick(s: Scheduler) -> int:
            barrier.wait()
            return s.tick()

        total = 0
        with ThreadPoolExecutor(2) as pool:
            for step in range(1, 31):
                # Both wake at once; every third step the scheduler was down for a while.
                clock.t = t0 + (step + (step % 3 == 0)) * EVERY
                total += sum(pool.map(tick, schedulers))
        times = [t for t, _ in first.scheduled_runs("nightly")]
        last = t0 + 31 * EVERY
        assert times == [t0 + k * EVERY for k in range(1, 32) if t0 + k * EVERY <= last]
        assert total == len(times) == len(_runs(first, "nightly"))
        assert len({r for _, r in first.scheduled_runs("nightly")}) == len(times)
    finally:
        first.close()
        second.close()
