"""What `legato deploy --cron/--every/--on-new-files` records next to the deployment."""

from __future__ import annotations

import time

from legato import audit
from legato.models import Deployment, Schedule, Trigger
from legato.store import Store
from legato.triggers.files import files_config
from legato.triggers.scheduler import _zone, check_cron, make_schedule


def check_options(
    *,
    cron: str | None,
    tz: str,
    every: float | None,
    catchup: str,
    on_new_files: str | None,
) -> None:
    """UsageError before anything is recorded (a bad cron must not leave half a deploy)."""
    from legato.errors import UsageError
    from legato.models import CATCHUP_POLICIES

    _zone(tz)
    if cron is not None:
        check_cron(cron, tz)
    if catchup not in CATCHUP_POLICIES:
        raise UsageError(f"--catchup must be one of {', '.join(CATCHUP_POLICIES)}, got {catchup!r}")
    if on_new_files is not None:
        files_config(on_new_files)


def files_trigger_name(deployment: str) -> str:
    return f"{deployment}-files"


def configure(
    store: Store,
    dep: Deployment,
    *,
    cron: str | None = None,
    tz: str = "UTC",
    every: float | None = None,
    catchup: str = "skip",
    on_new_files: str | None = None,
    batch: int = 1,
    settle: float = 5.0,
) -> list[str]:
    """Replace the deployment's schedules when --cron or --every is given, and its file
    trigger when --on-new-files is; returns what now starts it, in words."""
    said: list[str] = []
    if cron is not None or every is not None:
        schedules: list[Schedule] = []
        if cron is not None:
            schedules.append(make_schedule(dep.name, cron=cron, timezone=tz, catchup=catchup))
        if every is not None:
            schedules.append(make_schedule(dep.name, every=every, timezone=tz, catchup=catchup))
        store.replace_schedules(dep.name, schedules)
        audit.record_local(store, "schedule.put", dep.name, audit.schedules(schedules))
        said += [f"on {s.describe()}, catch-up {s.catchup}" for s in schedules]
    if on_new_files is not None:
        now = time.time()
        config = files_config(on_new_files, batch=batch, settle=settle)
        trig = Trigger(
            name=files_trigger_name(dep.name),
            kind="files",
            deployment=dep.name,
            config=config,
            created_at=now,
            updated_at=now,
        )
        store.put_trigger(trig)
        audit.record_local(store, "trigger.put", trig.name, audit.trigger(trig))
        per = "per file" if batch == 1 else f"per {batch} files"
        said.append(f"a run {per} arriving in {on_new_files} (parameter {config['parameter']})")
    return said
