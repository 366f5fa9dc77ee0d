"""Deployments: a flow registered to run on a pool's workers, started by name.

``legato deploy FILE.py:FLOW --name N --pool P`` records where the code is (its file path or
module) and a version (a hash of the source file); ``legato run N`` queues a flow run for the
pool; a worker of that pool claims it, loads the flow from the same path or installed package,
and runs it. How code reaches workers: a shared filesystem (the same absolute path on every
machine) or an installed package (a module path); the version is recorded on every run.

Only workers import the code. A deployment records its flow's parameters as a JSON schema,
and runs are started (``legato run NAME``, triggers, the API) by checking their parameters
against it: the server never imports what a deployment names.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from legato.errors import UsageError
from legato.models import Deployment
from legato.store import Store

DEFAULT_POOL = "default"


def source_version(source: str) -> str | None:
    """A short hash of the file (or module file) the flow comes from."""
    from legato.loader import split_ref

    where, _ = split_ref(source)
    path = Path(where) if where.endswith(".py") else None
    if path is None:
        module = sys.modules.get(where)
        file = getattr(module, "__file__", None)
        path = Path(file) if file else None
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def deploy(
    store: Store,
    flow: Any,
    *,
    name: str,
    pool: str,
    parameters: dict[str, Any],
    tags: list[str],
    priority: int | None = None,
) -> Deployment:
    """Register (or update) a deployment of ``flow``; parameters are validated now. Its runs'
    priority is ``priority``, else the flow's."""
    if flow.source is None:
        raise UsageError(f"flow {flow.name!r} is defined inside a function: workers cannot load it")
    checked = flow.validate_some(parameters)
    now = time.time()
    dep = Deployment(
        name=name,
        flow=flow.name,
        source=flow.source,
        pool=pool,
        parameters={k: parameters[k] for k in checked if k in parameters},
        tags=tags,
        version=source_version(flow.source),
        created_at=now,
        updated_at=now,
        parameter_schema=flow.parameter_schema(),
        priority=flow.priority if priority is None else priority,
    )
    store.put_deployment(dep)
    from legato import audit

    audit.record_local(store, "deployment.put", dep.name, audit.deployment(dep))
    return dep


def run_claimed_flow(run_id: str) -> str:
    """In a worker's child process: run (or resume) a claimed flow run to its end or pause."""
    from legato.engine import run_flow
    from legato.errors import Cancelled, Paused
    from legato.loader import load_flow
    from legato.runtime import get_runtime

    rt = get_runtime()
    run = rt.store.get_flow_run(run_id)
    if not run.source:
        raise UsageError(f"flow run {run_id} has no source to load its code from")
    flow = load_flow(run.source)
    params = flow.load_params(run.parameters, rt.results)
    try:
        run_flow(flow, params, run_id=run.id, resume=True)
    except (Paused, Cancelled):
        pass  # recorded by the engine; the worker's job is done
    finally:
        rt.recorder.flush()
    return rt.store.get_flow_run(run_id).state.value
