"""Kubernetes pools: each task run attempt is a batch/v1 Job, through the official client.

The Job runs ``python -m legato.engines.job PAYLOAD OUT`` in the pool's ``image`` (which must
have Legato and the flow's code installed); the payload and the outcome travel through
storage both sides can reach (``storage``: any fsspec URL, e.g. ``s3://bucket/legato-jobs``;
default: the result storage). Resources map to the container's requests and limits (``cpu``,
``mem_gb`` -> memory, ``gpu`` -> ``nvidia.com/gpu``); the timeout to
``activeDeadlineSeconds``; ``backoffLimit`` is 0 because retries are ours. One list call per
poll reads every Job of the pool (by label).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from typing import Any

from legato.engines import (
    COMMON_RESOURCES,
    UNLIMITED,
    EngineJob,
    EngineOutcome,
    Poller,
    Status,
    job_command,
    read_outcome,
)
from legato.errors import EngineError
from legato.models import Pool

log = logging.getLogger("legato.engines.kubernetes")

MANAGED_BY = "legato"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OUTPUT_LIMIT = 64 * 1024


def job_name(job: EngineJob) -> str:
    """A DNS-1123 label (lowercase letters, digits, dashes; at most 63 characters)."""
    name = re.sub(r"[^a-z0-9-]", "-", job.label.lower())[:63].strip("-")
    return name


def job_manifest(
    job: EngineJob, pool: Pool, *, payload_url: str, outcome_url: str, python: str = "python"
) -> dict[str, Any]:
    """The batch/v1 Job for one attempt (plain JSON, as the API server takes it)."""
    options = pool.options
    name = job_name(job)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    cpu = job.resources.get("cpu", 0)
    if cpu:
        requests["cpu"] = limits["cpu"] = f"{math.ceil(cpu * 1000)}m"
    mem = job.resources.get("mem_gb", 0)
    if mem:
        requests["memory"] = limits["memory"] = f"{math.ceil(mem * 1024)}Mi"
    gpus = math.ceil(job.resources.get("gpu", 0))
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)  # extended resources: limits only (= requests)
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "legato.dev/pool": _label_value(pool.name),
        "legato.dev/run-id": job.run_id,
        "legato.dev/attempt": str(job.attempt),
    }
    container: dict[str, Any] = {
        "name": "task",
        "image": options["image"],
        "command": job_command(python, payload_url, outcome_url),
        "env": [
            {"name": "LEGATO_RUN_ID", "value": job.run_id},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
    }
    if options.get("image_pull_policy"):
        container["imagePullPolicy"] = options["image_pull_policy"]
    if requests or limits:
        container["resources"] = {
            k: v for k, v in (("requests", requests), ("limits", limits)) if v
        }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if options.get("service_account"):
        pod_spec["serviceAccountName"] = options["service_account"]
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # retries are Legato's, fenced by attempt
        "ttlSecondsAfterFinished": 3600,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if job.timeout:
        spec["activeDeadlineSeconds"] = math.ceil(job.timeout)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": options.get("namespace", "default"),
            "labels": labels,
            "annotations": {"legato.dev/task": job.name},
        },
        "spec": spec,
    }


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return value.strip("-_.") or "pool"


def check_manifest(manifest: dict[str, Any]) -> list[str]:
    """What the API server would refuse in a Job we build (names, labels, quantities)."""
    problems = []
    meta = manifest.get("metadata", {})
    name = meta.get("name", "")
    if not _NAME.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label")
    for key, value in meta.get("labels", {}).items():
        if len(value) > 63 or not re.match(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", value):
            problems.append(f"label {key}={value!r} is not a valid label value")
    spec = manifest.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("a Job's pods must have restartPolicy Never or OnFailure")
    for c in pod.get("containers", []):
        if not c.get("image"):
            problems.append(f"container {c.get('name')!r} has no image")
        for kind, values in c.get("resources", {}).items():
            for res, qty in values.items():
                if not re.match(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$", str(qty)):
                    problems.append(f"resources.{kind}.{res} {qty!r} is not a quantity")
    return problems


class KubernetesBackend:
    kind = "kubernetes"

    def __init__(self, pool: Pool, *, results_url: str) -> None:
        try:
            from kubernetes import client, config
        except ImportError:
            raise EngineError(
                "a kubernetes pool needs the kubernetes package: pip install 'legato[kubernetes]'"
            ) from None
        if not pool.options.get("image"):
            raise EngineError(
                f"kubernetes pool {pool.name!r} has no image: "
                f"legato pools create {pool.name} --type kubernetes --option image=REPO/IMAGE:TAG"
            )
        self.pool = pool
        self.namespace = pool.options.get("namespace", "default")
        self.storage = pool.options.get("storage") or f"{results_url.rstrip('/')}/engine-jobs"
        self.python = pool.options.get("python", "python")
        self.max_jobs = int(pool.options.get("max_jobs", "100"))
        if pool.options.get("host"):
            configuration = client.Configuration()
            configuration.host = pool.options["host"]
            api_client = client.ApiClient(configuration)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(context=pool.options.get("context") or None)
            api_client = client.ApiClient()
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self._selector = (
            f"app.kubernetes.io/managed-by={MANAGED_BY},legato.dev/pool={_label_value(pool.name)}"
        )
        self._jobs: dict[str, tuple[str, float]] = {}  # name -> (folder URL, submitted at)
        self._lock = threading.Lock()
        self._poller = Poller(float(pool.options.get("poll", "2.0")), self._check)

    def capacity(self) -> dict[str, float]:
        """Kubernetes schedules by requests: we do not constrain (``max_jobs`` caps how many
        Jobs we keep in flight)."""
        return {name: UNLIMITED if name != "gpu" else 4096.0 for name in COMMON_RESOURCES}

    def concurrency(self) -> int:
        return self.max_jobs

    def submit(self, job: EngineJob) -> str:
        import fsspec

        name = job_name(job)
        folder = f"{self.storage.rstrip('/')}/{name}"
        payload_url, outcome_url = f"{folder}/call.pkl", f"{folder}/outcome.pkl"
        fs, path = fsspec.core.url_to_fs(payload_url)
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(job.payload)
        manifest = job_manifest(
            job, self.pool, payload_url=payload_url, outcome_url=outcome_url, python=self.python
        )
        try:
            self.batch.create_namespaced_job(self.namespace, manifest)
        except Exception as exc:
            raise EngineError(f"the API server refused Job {name}: {_reason(exc)}") from None
        with self._lock:
            self._jobs[name] = (folder, time.time())
        self._poller.poke()
        return name

    def wait(self, job_id: str, timeout: float) -> EngineOutcome | None:
        return self._poller.wait(job_id, timeout)

    def _check(self, ids: list[str]) -> dict[str, EngineOutcome]:
        listed = self.batch.list_namespaced_job(self.namespace, label_selector=self._selector)
        by_name = {j.metadata.name: j for j in listed.items}
        found = {}
        for name in ids:
            with self._lock:
                entry = self._jobs.get(name)
            if entry is None:
                continue
            folder, submitted = entry
            job = by_name.get(name)
            if job is None:
                if time.time() - submitted > 10:
                    found[name] = EngineOutcome(
                        "cancelled", detail=f"Job {name} was deleted outside Legato"
                    )
                continue
            status = job.status
            conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"}
            if status.succeeded or "Complete" in conditions:
                found[name] = self._ended(name, folder, "done", f"Job {name} succeeded")
            elif status.failed or "Failed" in conditions:
                cond = conditions.get("Failed")
                reason = getattr(cond, "reason", "") or ""
                message = getattr(cond, "message", "") or ""
                detail = f"Job {name} failed ({reason}: {message})".replace(" (: )", "")
                if reason == "DeadlineExceeded":
                    found[name] = self._ended(name, folder, "timeout", detail)
                elif re.search(r"evict|preempt|node|disrupt", f"{reason} {message}", re.I):
                    found[name] = self._ended(name, folder, "crashed", detail)
                else:
                    found[name] = self._ended(name, folder, "failed", detail)
        return found

    def _ended(self, name: str, folder: str, status: Status, detail: str) -> EngineOutcome:
        import fsspec

        stdout = self._pod_log(name)
        outcome = None
        with (
            contextlib.suppress(FileNotFoundError, OSError),
            fsspec.open(f"{folder}/outcome.pkl", "rb") as fh,
        ):
            outcome = read_outcome(fh.read())
        if outcome is not None and status in ("done", "failed"):
            return EngineOutcome("done", outcome, detail, stdout)
        if status == "done":  # succeeded, but wrote no outcome
            return EngineOutcome("failed", None, detail + " without a result", stdout)
        if status == "failed" and stdout:
            detail += f"; output:\n{stdout[-4000:]}"
        return EngineOutcome(status, None, detail, stdout)

    def _pod_log(self, name: str) -> str:
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}")
            texts = [
                self.core.read_namespaced_pod_log(p.metadata.name, self.namespace)
                for p in pods.items
            ]
        except Exception as exc:
            log.debug("no log for Job %s: %s", name, exc)
            return ""
        text = "\n".join(t for t in texts if t)
        return text[-OUTPUT_LIMIT:]

    def cancel(self, job_id: str) -> None:
        try:
            self.batch.delete_namespaced_job(
                job_id, self.namespace, propagation_policy="Background"
            )
        except Exception as exc:
            log.warning("could not delete Job %s: %s", job_id, _reason(exc))
        self._poller.forget(job_id)
        with self._lock:
            self._jobs.pop(job_id, None)

    def close(self) -> None:
        self._poller.close()


def _reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        return str(body)[:500]
    return f"{type(exc).__name__}: {exc}"
