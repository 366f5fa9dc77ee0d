"""`legato serve`: the scheduler, file triggers and notifier, embedded, until stopped."""

from __future__ import annotations

from typing import Annotated

import typer

from legato.cli import output


def serve(
    tick: Annotated[
        float | None,
        typer.Option("--tick", min=0.05, help="Seconds between passes (LEGATO_SCHEDULER_TICK)."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Start deployments on their schedules and on new files, and send notifications, over
    the local database (no server needed). Runs are queued for their pools: serve them with
    `legato worker start --pool POOL` on the same database. Stop with Ctrl-C."""
    import threading

    from legato.cli import _store
    from legato.settings import get_settings
    from legato.triggers.service import TriggerService

    settings = get_settings()
    store = _store()
    service = TriggerService(store, settings, tick=tick)
    if once:
        started = service.tick()
        if service.notifier is not None:
            service.notifier.tick()
        output.err.print(f"one pass: {started} run(s) started", markup=False)
        return
    output.err.print(
        f"legato serve: schedules, file triggers and notifications over {store.safe_url} "
        f"every {service.tick_seconds:g} s (Ctrl-C stops)",
        highlight=False,
        markup=False,
    )
    service.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        output.err.print("stopped")
