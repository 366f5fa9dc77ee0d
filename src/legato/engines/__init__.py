"""Pools backed by an engine that already runs there: Slurm, Dask, Kubernetes.

We do not manage clusters. A bridge (``legato worker start --pool NAME`` for a pool whose
type is ``slurm``, ``dask`` or ``kubernetes``) is an ordinary worker (``legato.worker``):
it claims task runs with leases, heartbeats them, fences results by attempt, retries under
the task's policy, but instead of forking a child process it hands each task run to the
engine through a ``Backend`` (submit / wait / cancel). The engine runs the same call payload
a local child would (``python -m legato.engines.job``), and the outcome comes back the same
way: value or error, logs, artifacts.

How engine outcomes map to our states:

- the job wrote an outcome: COMPLETED with the value, or the task's exception (retried under
  its policy, else FAILED);
- the engine's time limit stopped it: ``TaskTimeout`` (retried under the policy, else FAILED);
- the engine reports it failed with no outcome (killed, out of memory, exit code):
  ``EngineJobFailed`` with the job's stderr (retried under the policy, else FAILED);
- node failure, preemption, a lost Dask worker: CRASHED, queued again while attempts remain;
- cancelled from outside the engine (``scancel``, ``kubectl delete job``): CANCELLED.
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from legato.errors import UsageError
from legato.models import POOL_TYPES, Pool, PoolType

Status = Literal["done", "failed", "timeout", "cancelled", "crashed"]

# Resource names Legato knows; a pool that does not constrain one leaves it unlimited.
COMMON_RESOURCES = ("gpu", "cpu", "mem_gb")
UNLIMITED = 1e9


class EngineLost(Exception):
    """The engine lost the attempt: node failure, preemption, a lost Dask worker."""


class EngineCancelled(Exception):
    """The job was cancelled from outside Legato (``scancel``, ``kubectl delete job``)."""


@dataclass
class EngineJob:
    """One attempt of a task run (or a whole flow run) handed to an engine."""

    run_id: str
    attempt: int
    name: str  # the task's (or flow's) name, for the engine's listings
    payload: bytes  # a call packed by legato._calls (the parent's sys.path, then the call)
    resources: dict[str, float] = field(default_factory=dict)
    timeout: float | None = None

    @property
    def label(self) -> str:
        """A name for the job that engines accept (letters, digits, dashes)."""
        clean = "".join(ch if ch.isalnum() else "-" for ch in self.name.lower()).strip("-")
        return f"legato-{clean[:30] or 'task'}-{self.run_id[-12:]}-{self.attempt}"


@dataclass
class EngineOutcome:
    """What the engine says happened. ``outcome`` is the job's own result file, when it
    wrote one: ``(value, error, logs, artifacts)``."""

    status: Status
    outcome: tuple[Any, BaseException | None, list[Any], list[Any]] | None = None
    detail: str = ""  # the engine's words: state, exit code, reason
    stdout: str = ""  # what the job printed, shipped to the run's log
    stderr: str = ""


class Backend(Protocol):
    """Three calls and a capacity: what a bridge needs from an engine."""

    kind: str

    def capacity(self) -> dict[str, float]:
        """The resources the engine can run at once, for claims (``gpu``, ``cpu`` ...)."""

    def concurrency(self) -> int:
        """Task runs to keep handed to the engine at once."""

    def submit(self, job: EngineJob) -> str:
        """Hand the job to the engine; returns the engine's id for it."""

    def wait(self, job_id: str, timeout: float) -> EngineOutcome | None:
        """The job's outcome once it has ended, or None if still queued or running after
        ``timeout`` seconds."""

    def cancel(self, job_id: str) -> None:
        """Stop the job (we lost its lease, the run was cancelled, or we are stopping)."""

    def close(self) -> None:
        """Release the engine's connections and files."""


def parse_options(items: list[str]) -> dict[str, str]:
    """``["partition=gpu", "time_margin=60"]`` -> a dict; a malformed item is a UsageError."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --option {item!r}: expected KEY=VALUE, e.g. partition=gpu")
        options[key.strip()] = value.strip()
    return options


def check_pool(pool: Pool) -> None:
    """Refuse an unknown type or option before anything is stored."""
    if pool.type not in POOL_TYPES:
        raise UsageError(f"unknown pool type {pool.type!r}: use one of {', '.join(POOL_TYPES)}")
    known = KNOWN_OPTIONS[pool.type]
    unknown = sorted(set(pool.options) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise UsageError(
            f"unknown option(s) {', '.join(unknown)} for a {pool.type} pool "
            f"(its options: {listed}); see docs/engines.md"
        )


KNOWN_OPTIONS: dict[str, tuple[str, ...]] = {
    PoolType.PROCESS: (),
    PoolType.SLURM: (
        "partition",
        "account",
        "qos",
        "workdir",
        "python",
        "max_jobs",
        "array",
        "array_window",
        "poll",
        "sbatch_args",
        "setup",
    ),
    PoolType.DASK: (
        "address",
        "n_workers",
        "threads_per_worker",
        "resources",
        "resource_map",
        "max_tasks",
    ),
    PoolType.KUBERNETES: (
        "image",
        "namespace",
        "storage",
        "python",
        "service_account",
        "image_pull_policy",
        "max_jobs",
        "poll",
        "host",
        "context",
    ),
}


def make_backend(pool: Pool, *, home: str, results_url: str) -> Backend:
    """The backend serving ``pool`` (its engine library is imported here, lazily)."""
    check_pool(pool)
    if pool.type is PoolType.SLURM:
        from legato.engines.slurm import SlurmBackend

        return SlurmBackend(pool, home=home)
    if pool.type is PoolType.DASK:
        from legato.engines.dask import DaskBackend

        return DaskBackend(pool)
    if pool.type is PoolType.KUBERNETES:
        from legato.engines.kubernetes import KubernetesBackend

        return KubernetesBackend(pool, results_url=results_url)
    raise UsageError(f"pool {pool.name!r} is a {pool.type} pool: it has no engine backend")


def job_command(python: str, payload: str, out: str) -> list[str]:
    """The command an engine runs for one job (see ``legato.engines.job``)."""
    return [*shlex.split(python), "-m", "legato.engines.job", payload, out]


def default_python() -> str:
    import sys

    return sys.executable


def read_outcome(data: bytes) -> tuple[Any, BaseException | None, list[Any], list[Any]]:
    import cloudpickle

    value, error, logs, artifacts = cloudpickle.loads(data)
    return value, error, logs, artifacts


class Poller:
    """One thread asks the engine about every job in flight, every ``interval`` seconds, and
    wakes the threads waiting on them (Slurm, Kubernetes: one query for all jobs)."""

    def __init__(self, interval: float, check: Any) -> None:
        self.interval = interval
        self._check = check  # callable(list[job_id]) -> dict[job_id, EngineOutcome]
        self._cond = threading.Condition()
        self._waiting: set[str] = set()
        self._done: dict[str, EngineOutcome] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="legato-engine-poll", daemon=True)
        self._thread.start()

    def wait(self, job_id: str, timeout: float) -> EngineOutcome | None:
        with self._cond:
            self._waiting.add(job_id)
            if job_id not in self._done:
                self._cond.wait(timeout)
            found = self._done.pop(job_id, None)
            if found is not None:
                self._waiting.discard(job_id)
            return found

    def forget(self, job_id: str) -> None:
        with self._cond:
            self._waiting.discard(job_id)
            self._done.pop(job_id, None)

    def poke(self) -> None:
        """Look again now (a job was just submitted or cancelled)."""
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        import logging

        log = logging.getLogger("legato.engines")
        while not self._stop.wait(self.interval):
            with self._cond:
                ids = [i for i in self._waiting if i not in self._done]
            if not ids:
                continue
            try:
                found = self._check(ids)
            except Exception as exc:  # the engine did not answer: ask again next time
                log.warning("could not read job states: %s", exc)
                continue
            if found:
                with self._cond:
                    self._done.update(found)
                    self._cond.notify_all()

    def close(self) -> None:
        self._stop.set()


def env_flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def shared_dir(option: str | None, home: str, pool: str) -> str:
    path = option or os.path.join(home, "engine-jobs", pool)
    os.makedirs(path, exist_ok=True)
    return path
