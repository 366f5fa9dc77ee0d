"""Deployments: registered flows that operators start."""

from __future__ import annotations

from legato import audit as details
from legato.models import Deployment
from legato.server.routes._common import Audit, Id, Routes, StoreDep, invalid
from legato.store import wire as w
from legato.store.operations import OPERATIONS

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
def put_deployment(store: StoreDep, name: Id, body: w.DeploymentIn, audit: Audit) -> None:
    """Create or replace a deployment (its name must match the path)."""
    if body.deployment.name != name:
        raise invalid((("body", "deployment", "name"), "must match the path"))
    store.put_deployment(body.deployment)
    audit("deployment.put", name, details.deployment(body.deployment))


@routes.op(OPERATIONS["delete_deployment"])
def delete_deployment(store: StoreDep, name: Id, audit: Audit) -> w.Changed:
    """Remove a deployment; ``changed`` is false if there was none."""
    changed = store.delete_deployment(name)
    if changed:
        audit("deployment.delete", name)
    return w.Changed(changed=changed)
