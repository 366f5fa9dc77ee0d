"""How task processes are started and stopped, on every platform.

Two models. ``fork``: a fork server (``legato._zygote``) forks each fresh child in about a
millisecond; Linux only, since it relies on ``fork``, ``setsid`` and ``prctl``. ``spawn``: each
child is a new interpreter started with ``subprocess``, in a session (POSIX) or process group
(Windows) of its own; slower to start but portable: Windows and macOS acquisition PCs. The
model is chosen by ``LEGATO_PROCESS_START`` (``auto``: fork where the platform has it safely,
spawn elsewhere). Warm children (``legato.warm_pool``) are always spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any


def start_mode() -> str:
    """``fork`` or ``spawn``: what ``LEGATO_PROCESS_START`` asks for, or what fits here."""
    from legato.settings import get_settings

    wanted = get_settings().process_start
    if wanted == "auto":
        # macOS has fork, but forking a process with threads there is unsafe.
        return "fork" if hasattr(os, "fork") and sys.platform.startswith("linux") else "spawn"
    if wanted == "fork" and not hasattr(os, "fork"):
        raise ValueError("LEGATO_PROCESS_START=fork: this platform has no fork; use spawn")
    return wanted


def session_options() -> dict[str, Any]:
    """Popen options that put the child at the head of its own process group, so that it
    and everything it starts can be stopped together."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def kill_tree(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Stop a child started with ``session_options`` (or forked into its own session) and,
    on POSIX, everything left in its process group."""
    if os.name == "nt":
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
