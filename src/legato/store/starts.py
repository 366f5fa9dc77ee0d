"""How a deployment's run is built and checked without importing its code: the run's
parameters (the deployment's defaults, then those given) are checked against the JSON schema
`legato deploy` recorded; everything else comes from the deployment. The server's routes, its
triggers and `legato run NAME` all start runs here, so none of them imports user code.
"""

from __future__ import annotations

import time
from typing import Any

from legato.errors import ParameterError
from legato.models import Deployment, FlowRun, State, new_id
from legato.results import STORED_PARAMETER


class InvalidParameters(ParameterError):
    """A run's parameters do not fit its deployment's schema; ``errors`` names each
    parameter with what is wrong with it."""

    def __init__(self, deployment: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        name, why = errors[0]
        super().__init__(f"deployment {deployment!r}: parameter {name!r}: {why}")


def parameter_errors(schema: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str]]:
    """(parameter, what is wrong) for each way ``params`` do not fit ``schema`` (a flow's
    ``parameter_schema``), in parameter order; empty if they fit."""
    import jsonschema

    props: dict[str, Any] = schema.get("properties") or {}
    takes = ", ".join(props) or "no parameters"
    closed = schema.get("additionalProperties") is False  # open for a flow taking **kwargs
    found = [
        (k, f"unknown parameter (it takes: {takes})") for k in params if closed and k not in props
    ]
    found += [(k, "missing") for k in schema.get("required") or [] if k not in params]
    try:
        validator = jsonschema.Draft202012Validator(schema)
        for e in validator.iter_errors(params):
            if e.path:  # the root's required/additionalProperties are said above
                inner = "/".join(str(p) for p in list(e.path)[1:])
                found.append((str(e.path[0]), f"{inner + ': ' if inner else ''}{e.message}"))
    except (jsonschema.SchemaError, jsonschema.exceptions.UnknownType) as exc:
        return [("*", f"the deployment's parameter schema is not usable: {exc}")]
    except Exception as exc:  # an unresolvable $ref: nothing is fetched to resolve it
        return [("*", f"the deployment's parameter schema cannot be checked: {exc}")]
    order = list(props)
    return sorted(found, key=lambda f: order.index(f[0]) if f[0] in order else len(order))


def build_run(dep: Deployment, parameters: dict[str, Any]) -> FlowRun:
    """The queued run ``Store.start_deployment`` inserts, not inserted yet (triggers insert
    it together with what started it, in one transaction). Everything but the parameters
    comes from the deployment. Nothing is imported: the parameters (the deployment's
    defaults, then these) are checked against its recorded JSON schema; a deployment
    recorded without one (before schemas were kept) is checked only by the worker, when it
    loads the flow."""
    params = {**dep.parameters, **parameters}
    # A stored value is a reference the worker would load: never taken from whoever starts.
    errors = [
        (k, "a stored value cannot be given: give the value itself")
        for k, v in parameters.items()
        if isinstance(v, dict) and STORED_PARAMETER in v
    ]
    if dep.parameter_schema is not None and not errors:
        errors = parameter_errors(dep.parameter_schema, params)
    if errors:
        raise InvalidParameters(dep.name, errors)
    # The flow's own defaults, where the schema holds them, so the run shows every value.
    props = (dep.parameter_schema or {}).get("properties") or {}
    for k, prop in props.items():
        if k not in params and isinstance(prop, dict) and "default" in prop:
            params[k] = prop["default"]
    now = time.time()
    return FlowRun(
        id=new_id(),
        flow=dep.flow,
        state=State.PENDING,
        parameters=params,
        pool=dep.pool,
        tags=list(dep.tags),
        created_at=now,
        source=dep.source,
        deployment=dep.name,
        version=dep.version,
        queued_at=now,
        priority=dep.priority,
    )
