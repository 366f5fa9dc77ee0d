"""Slurm pools: each task run attempt is a Slurm job, submitted with ``sbatch``.

We drive Slurm through its own command-line tools (``sbatch``, ``squeue``, ``scancel``,
``scontrol``, ``sinfo``), not a Python library: they are on every Slurm login node, in
every version, and need no accounting database (``sacct`` does; submitit reads job states
with ``sacct``). See docs/decisions.md.

A job's files live in a folder shared with the compute nodes (``workdir``, default
``$LEGATO_HOME/engine-jobs/POOL``): ``call.pkl`` (the cloudpickled call), ``outcome.pkl``
(written by the job when the call returns), ``stdout.txt`` and ``stderr.txt``.
Resources map to ``--gres=gpu:N``, ``--cpus-per-task``, ``--mem``; the task's timeout to
``--time`` (whole minutes, rounded up: Slurm's unit). Submissions that arrive together
(within ``array_window`` seconds) with the same options go as one job array.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import math
import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from legato.engines import (
    UNLIMITED,
    EngineJob,
    EngineOutcome,
    Poller,
    default_python,
    env_flag,
    read_outcome,
    shared_dir,
)
from legato.errors import EngineError
from legato.models import Pool

log = logging.getLogger("legato.engines.slurm")

# squeue states, and what they mean to us (None: not ended yet).
_RUNNING = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
}
_CRASHED = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED"}
_TIMEOUT = {"TIMEOUT", "DEADLINE"}
_FAILED = {"FAILED", "OUT_OF_MEMORY"}

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr shipped to the run's log, per stream


@dataclass
class _Job:
    dir: str
    stdout: str
    stderr: str
    submitted_at: float
    started_at: float | None = None


def slurm_time(timeout: float) -> str:
    """``--time`` for a timeout in seconds: whole minutes, rounded up (at least one)."""
    return str(max(1, math.ceil(timeout / 60)))


def sbatch_options(job: EngineJob, options: dict[str, str]) -> list[str]:
    """The sbatch options for a job's resources, timeout and the pool's options."""
    args = [f"--job-name={job.label}", "--export=ALL", "--nodes=1", "--ntasks=1"]
    for key in ("partition", "account", "qos"):
        if options.get(key):
            args.append(f"--{key}={options[key]}")
    res = job.resources
    gpus = math.ceil(res.get("gpu", 0))
    if gpus:
        args.append(f"--gres=gpu:{gpus}")
    cpus = math.ceil(res.get("cpu", 0))
    if cpus:
        args.append(f"--cpus-per-task={cpus}")
    mem = res.get("mem_gb", 0)
    if mem:
        args.append(f"--mem={math.ceil(mem * 1024)}M")
    if job.timeout:
        args.append(f"--time={slurm_time(job.timeout)}")
    args.extend(shlex.split(options.get("sbatch_args", "")))
    return args


def _script(python: str, setup: str, body: str) -> str:
    lines = ["#!/bin/sh", "# written by legato: one task run attempt (see legato.engines.job)"]
    if setup:
        lines.append(setup)
    lines.append(body)
    return "\n".join(lines) + "\n"


def _run(args: list[str], *, stdin: str | None = None, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise EngineError(
            f"{args[0]} not found: run the Slurm bridge on a machine with the Slurm client "
            "tools (a login node)"
        ) from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{args[0]} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise EngineError(f"{' '.join(args[:2])} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def _tail(path: str, limit: int = OUTPUT_LIMIT) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return ("[...]\n" if size > limit else "") + text


class SlurmBackend:
    kind = "slurm"

    def __init__(self, pool: Pool, *, home: str) -> None:
        self.pool = pool
        self.options = dict(pool.options)
        self.workdir = shared_dir(self.options.get("workdir"), home, pool.name)
        self.python = self.options.get("python") or default_python()
        self.array = env_flag(self.options.get("array"), True)
        self.array_window = float(self.options.get("array_window", "0.2"))
        self.max_jobs = int(self.options.get("max_jobs", "256"))
        self.user = getpass.getuser()
        if shutil.which("sbatch") is None:
            raise EngineError(
                "sbatch not found: run the bridge of a Slurm pool on a machine with the Slurm "
                "client tools (a login node)"
            )
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._batch: list[tuple[EngineJob, list[Any], threading.Event]] = []
        self._batch_lock = threading.Lock()
        self._poller = Poller(float(self.options.get("poll", "1.0")), self._check)

    # -- capacity -----------------------------------------------------------------------------

    def capacity(self) -> dict[str, float]:
        """What the partition's nodes hold (CPUs, GPUs, memory): we keep at most that much
        handed to Slurm, and Slurm decides when each job starts."""
        args = ["sinfo", "-h", "-N", "-o", "%n|%c|%m|%G"]
        if self.options.get("partition"):
            args += ["-p", self.options["partition"]]
        cpus = mem_gb = gpus = 0.0
        seen = set()
        for line in _run(args).splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4 or parts[0] in seen:
                continue
            seen.add(parts[0])
            cpus += float(parts[1] or 0)
            with contextlib.suppress(ValueError):
                mem_gb += float(parts[2].rstrip("+")) / 1024
            gpus += _gres_gpus(parts[3])
        return {"cpu": cpus or UNLIMITED, "mem_gb": mem_gb or UNLIMITED, "gpu": gpus}

    def concurrency(self) -> int:
        return self.max_jobs

    # -- submit -------------------------------------------------------------------------------

    def submit(self, job: EngineJob) -> str:
        folder = os.path.join(self.workdir, job.label)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "call.pkl"), "wb") as fh:
            fh.write(job.payload)
        if not self.array or self.array_window <= 0:
            return self._submit_one(job, folder)
        slot: list[Any] = [None, None]
        done = threading.Event()
        with self._batch_lock:
            leader = not self._batch
            self._batch.append((job, slot, done))
        if leader:  # the first caller of a window submits everything queued in it
            time.sleep(self.array_window)
            with self._batch_lock:
                batch, self._batch = self._batch, []
            self._submit_batch(batch)
        done.wait()
        if slot[1] is not None:
            raise slot[1]
        job_id: str = slot[0]
        return job_id

    def _submit_batch(self, batch: list[tuple[EngineJob, list[Any], threading.Event]]) -> None:
        groups: dict[tuple[str, ...], list[tuple[EngineJob, list[Any], threading.Event]]] = {}
        for item in batch:
            key = tuple(a for a in sbatch_options(item[0], self.options) if "job-name" not in a)
            groups.setdefault(key, []).append(item)
        for items in groups.values():
            try:
                if len(items) == 1:
                    job = items[0][0]
                    ids = [self._submit_one(job, os.path.join(self.workdir, job.label))]
                else:
                    ids = self._submit_array([it[0] for it in items])
                for (_, slot, _), job_id in zip(items, ids, strict=True):
                    slot[0] = job_id
            except Exception as exc:
                for _, slot, _ in items:
                    slot[1] = exc
            finally:
                for _, _, done in items:
                    done.set()

    def _submit_one(self, job: EngineJob, folder: str) -> str:
        stdout, stderr = os.path.join(folder, "stdout.txt"), os.path.join(folder, "stderr.txt")
        body = "exec " + shlex.join(
            [
                *shlex.split(self.python),
                "-m",
                "legato.engines.job",
                os.path.join(folder, "call.pkl"),
                os.path.join(folder, "outcome.pkl"),
            ]
        )
        args = [
            "sbatch",
            "--parsable",
            f"--output={stdout}",
            f"--error={stderr}",
            f"--chdir={folder}",
            *sbatch_options(job, self.options),
        ]
        out = _run(args, stdin=_script(self.python, self.options.get("setup", ""), body))
        job_id = out.strip().split(";")[0]
        with self._lock:
            self._jobs[job_id] = _Job(folder, stdout, stderr, time.time())
        self._poller.poke()
        return job_id

    def _submit_array(self, jobs: list[EngineJob]) -> list[str]:
        """Many jobs with the same options as one job array: index i runs the i-th folder."""
        array_dir = os.path.join(self.workdir, f"array-{jobs[0].label}")
        os.makedirs(array_dir, exist_ok=True)
        folders = [os.path.join(self.workdir, j.label) for j in jobs]
        listing = os.path.join(array_dir, "folders.txt")
        with open(listing, "w") as fh:
            fh.write("\n".join(folders) + "\n")
        py = shlex.join(shlex.split(self.python))
        body = (
            f'D=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(listing)})\n'
            f'cd "$D" && exec {py} -m legato.engines.job "$D/call.pkl" "$D/outcome.pkl"'
        )
        options = [a for a in sbatch_options(jobs[0], self.options) if "job-name" not in a]
        args = [
            "sbatch",
            "--parsable",
            f"--array=0-{len(jobs) - 1}",
            f"--job-name=legato-array-{len(jobs)}",
            f"--output={array_dir}/%a.stdout.txt",
            f"--error={array_dir}/%a.stderr.txt",
            f"--chdir={array_dir}",
            *options,
        ]
        out = _run(args, stdin=_script(self.python, self.options.get("setup", ""), body))
        array_id = out.strip().split(";")[0]
        ids = []
        now = time.time()
        with self._lock:
            for i, folder in enumerate(folders):
                job_id = f"{array_id}_{i}"
                self._jobs[job_id] = _Job(
                    folder,
                    os.path.join(array_dir, f"{i}.stdout.txt"),
                    os.path.join(array_dir, f"{i}.stderr.txt"),
                    now,
                )
                ids.append(job_id)
        self._poller.poke()
        return ids

    # -- states -------------------------------------------------------------------------------

    def wait(self, job_id: str, timeout: float) -> EngineOutcome | None:
        return self._poller.wait(job_id, timeout)

    def started_at(self, job_id: str) -> float | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return None if job is None else job.started_at

    def _check(self, ids: list[str]) -> dict[str, EngineOutcome]:
        """One squeue for every job in flight; ended jobs become outcomes."""
        out = _run(["squeue", "--states=all", "-h", "-r", "-u", self.user, "-o", "%i|%T|%r"])
        states: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = (parts[1], parts[2])
        found = {}
        now = time.time()
        for job_id in ids:
            with self._lock:
                job = self._jobs.get(job_id)
            if job is None:
                continue
            state, reason = states.get(job_id, ("", ""))
            if state == "RUNNING" and job.started_at is None:
                job.started_at = now
            if state in _RUNNING:
                continue
            if not state and now - job.submitted_at < 10:
                continue  # not listed yet
            found[job_id] = self._outcome(job_id, job, state, reason)
        return found

    def _outcome(self, job_id: str, job: _Job, state: str, reason: str) -> EngineOutcome:
        out, err = _tail(job.stdout), _tail(job.stderr)
        outcome_path = os.path.join(job.dir, "outcome.pkl")
        detail = f"Slurm job {job_id} {state or 'vanished from squeue'}"
        if reason and reason not in ("None", "(null)"):
            detail += f" ({reason})"
        if state in _CRASHED:
            return EngineOutcome("crashed", detail=detail, stdout=out, stderr=err)
        if state in _TIMEOUT:
            return EngineOutcome("timeout", detail=detail, stdout=out, stderr=err)
        if state == "CANCELLED" and not os.path.exists(outcome_path):
            return EngineOutcome("cancelled", detail=detail, stdout=out, stderr=err)
        if os.path.exists(outcome_path):
            with open(outcome_path, "rb") as fh:
                return EngineOutcome("done", read_outcome(fh.read()), detail, out, err)
        if not state:
            return EngineOutcome("crashed", detail=detail, stdout=out, stderr=err)
        exit_code = _exit_code(job_id)
        if exit_code:
            detail += f", exit code {exit_code}"
        stderr = _tail(job.stderr, 4000).strip()
        if stderr:
            detail += f"; stderr:\n{stderr}"
        return EngineOutcome("failed", detail=detail, stdout=out, stderr=err)

    def cancel(self, job_id: str) -> None:
        try:
            _run(["scancel", job_id])
        except EngineError as exc:
            log.warning("scancel %s: %s", job_id, exc)
        self._poller.forget(job_id)

    def close(self) -> None:
        self._poller.close()


def _gres_gpus(gres: str) -> float:
    """``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:1,shard:4`` -> GPUs."""
    total = 0.0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts and parts[0] == "gpu" and len(parts) >= 2:
            with contextlib.suppress(ValueError):
                total += float(parts[-1])
    return total


def _exit_code(job_id: str) -> str:
    try:
        out = _run(["scontrol", "show", "job", "-o", job_id], timeout=15)
    except EngineError:
        return ""
    for field in out.split():
        if field.startswith("ExitCode="):
            return field.split("=", 1)[1]
    return ""
