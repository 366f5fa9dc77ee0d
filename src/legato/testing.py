"""Helpers for testing code that uses Legato: an isolated home, store and runtime per test.

Flows run durably, so a test that calls one writes to ``$LEGATO_HOME``. These helpers point
Legato at a fresh temporary home and a fresh runtime, and put everything back afterwards::

    from legato.testing import isolated_runtime

    def test_my_flow():
        with isolated_runtime() as rt:
            assert my_flow(3) == 9
            [run] = rt.store.list_flow_runs()
            assert run.state == "COMPLETED"

Settings can be given as keyword arguments, named like the ``LEGATO_*`` variables without the
prefix: ``isolated_runtime(resources="gpu=2", allow_pickle="false")``.

Tasks called outside a flow are plain function calls and need none of this.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from legato.models import FlowRun, TaskRun
    from legato.runtime import Runtime
    from legato.store import Store

_PREFIX = "LEGATO_"


def _env_name(name: str) -> str:
    name = name.upper()
    return name if name.startswith(_PREFIX) else _PREFIX + name


@contextmanager
def temporary_home(
    path: str | os.PathLike[str] | None = None, **settings: str | int | float | bool
) -> Iterator[Path]:
    """Point ``LEGATO_HOME`` at a fresh folder (``path``, or a temporary one removed afterwards)
    with no other ``LEGATO_*`` variable set except ``settings``; restore the environment and
    the cached settings when done. The process's runtime is left alone: see
    ``isolated_runtime`` for that."""
    from legato.settings import reset_settings

    saved = {k: v for k, v in os.environ.items() if k.startswith(_PREFIX)}
    made = None
    if path is None:
        made = tempfile.mkdtemp(prefix="legato-home-")
        home = Path(made)
    else:
        home = Path(path)
        home.mkdir(parents=True, exist_ok=True)
    try:
        for name in saved:
            del os.environ[name]
        os.environ["LEGATO_HOME"] = str(home)
        for name, value in settings.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            os.environ[_env_name(name)] = text
        reset_settings()
        yield home
    finally:
        for name in [k for k in os.environ if k.startswith(_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)
        reset_settings()
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


@contextmanager
def isolated_runtime(
    path: str | os.PathLike[str] | None = None, **settings: str | int | float | bool
) -> Iterator[Runtime]:
    """A fresh home (see ``temporary_home``) and a fresh runtime on it: flows called inside
    the block record to a new SQLite database there. The runtime is closed afterwards and the
    one that was installed before is put back."""
    from legato.runtime import Runtime, set_runtime
    from legato.settings import get_settings

    with temporary_home(path, **settings):
        rt = Runtime(get_settings())
        previous = set_runtime(rt)
        try:
            yield rt
        finally:
            set_runtime(previous)
            rt.close()


def replace_runtime() -> None:
    """Close the process's runtime (if any) so the next flow call builds one from the current
    settings. Use after changing ``LEGATO_*`` variables inside a test."""
    from legato.runtime import set_runtime
    from legato.settings import reset_settings

    previous = set_runtime(None)
    reset_settings()
    if previous is not None:
        previous.close()


def last_flow_run(store: Store, flow: str | None = None) -> FlowRun:
    """The newest top-level flow run (of ``flow`` if given); AssertionError if there is none."""
    runs = [r for r in store.list_flow_runs(flow=flow, limit=1000) if r.parent_task_run_id is None]
    if not runs:
        raise AssertionError(f"no flow run{f' of {flow!r}' if flow else ''} was recorded")
    return runs[0]


def task_runs_by_key(store: Store, flow_run_id: str) -> Mapping[str, TaskRun]:
    """The task runs of a flow run by call key (``{"add:0": TaskRun, ...}``)."""
    return {tr.key: tr for tr in store.get_task_runs(flow_run_id)}


__all__ = [
    "isolated_runtime",
    "last_flow_run",
    "replace_runtime",
    "task_runs_by_key",
    "temporary_home",
]
