"""Deployments: flows a runner or admin registered, which operators start by name. The
server builds each run from the deployment and checks its parameters against the recorded
JSON schema: it never imports the flow (only the workers of the deployment's pool do)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from legato import audit as details
from legato.models import Deployment, FlowRun
from legato.server.routes._common import Audit, Caller, Id, Routes, StoreDep, invalid
from legato.server.scope import check_pool
from legato.store import wire as w
from legato.store.operations import OPERATIONS
from legato.store.starts import InvalidParameters

routes = Routes()


@routes.op(OPERATIONS["list_deployments"])
def list_deployments(
    store: StoreDep,
) -> list[Deployment]:
    """Every deployment, by name."""
    return store.list_deployments()


@routes.op(OPERATIONS["get_deployment"])
def get_deployment(store: StoreDep, name: Id) -> w.FoundDeployment:
    """A deployment by name (null if none)."""
    return w.FoundDeployment(deployment=store.get_deployment(name))


@routes.op(OPERATIONS["put_deployment"])
def put_deployment(
    store: StoreDep, name: Id, body: w.DeploymentIn, audit: Audit, token: Caller
) -> None:
    """Create or replace a deployment (its name must match the path). A runner limited to
    pools registers code only for its pools, and replaces only deployments in them."""
    if body.deployment.name != name:
        raise invalid((("body", "deployment", "name"), "must match the path"))
    check_pool(token, body.deployment.pool, "deploy to")
    _check_existing(store, token, name)
    _check_schema(body.deployment.parameter_schema)
    store.put_deployment(body.deployment)
    audit("deployment.put", name, details.deployment(body.deployment))


@routes.op(OPERATIONS["delete_deployment"])
def delete_deployment(store: StoreDep, name: Id, audit: Audit, token: Caller) -> w.Changed:
    """Remove a deployment; ``changed`` is false if there was none."""
    _check_existing(store, token, name)
    changed = store.delete_deployment(name)
    if changed:
        audit("deployment.delete", name)
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["start_deployment"])
def start_deployment(
    store: StoreDep, name: Id, body: w.StartDeploymentIn, audit: Audit, token: Caller
) -> FlowRun:
    """Queue a run of the deployment for its pool's workers: its code, pool, tags and
    version come from the deployment; the parameters (on top of its defaults) are checked
    against its schema (422 naming each bad parameter, nothing queued)."""
    dep = store.get_deployment(name)
    if dep is None:
        raise HTTPException(404, detail=f"no deployment named {name!r}")
    check_pool(token, dep.pool, "start runs in")
    try:
        run = store.start_deployment(dep.name, body.parameters, priority=body.priority)
    except InvalidParameters as exc:
        raise invalid(
            *((("body", "parameters", param), why) for param, why in exc.errors)
        ) from None
    audit("deployment.start", dep.name, {"flow_run_id": run.id, "pool": dep.pool})
    return run


def _check_existing(store: StoreDep, token: Caller, name: str) -> None:
    existing = store.get_deployment(name)
    if existing is not None:
        check_pool(token, existing.pool, "change deployments of")


def _check_schema(schema: dict[str, Any] | None) -> None:
    """422 unless the parameter schema is one runs can be checked against."""
    if schema is None:
        return
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise invalid((("body", "deployment", "parameter_schema"), exc.message)) from None
