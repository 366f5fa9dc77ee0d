"""Who runs a flow run: an owner id (``host:pid``) and whether that process is alive."""

from __future__ import annotations

import os
import socket


def owner_id() -> str:
    """Who runs a flow run: ``host:pid``, to tell a live run from a crashed one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, run_id: str | None = None) -> bool:
    """True if ``owner`` is a live process on this host (other hosts: assumed alive)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        number = int(pid)
    except ValueError:
        return False
    if number == os.getpid():
        from legato.runtime import get_runtime

        return run_id is not None and get_runtime().is_running(run_id)
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(number)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
