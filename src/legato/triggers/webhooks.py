"""Webhook triggers: ``POST /api/v1/hooks/NAME`` with a JSON body starts a deployment.

Two ways to authenticate, chosen per hook:

- ``hmac`` (the default): the sender shares a secret with Legato and signs each request like
  Slack does: ``X-Legato-Timestamp: <unix seconds>`` and ``X-Legato-Signature: v1=<hex>``, the
  HMAC-SHA256 of ``v1:<timestamp>:<raw body>`` with the secret. A request without them, with a
  wrong signature, a timestamp that is not a finite number (``nan``, ``inf``) or one more than
  5 minutes away is refused (401); the same signed
  request sent twice is refused (409): each accepted signature is recorded with its run.
- ``token``: ``Authorization: Bearer lgt_...``, an API token with the operator role. An
  ``X-Legato-Delivery`` header makes the request idempotent (the same delivery id twice: 409).

JSON fields map to parameters (``--map threshold=settings.threshold``); without a map the JSON
object's keys are the parameters. Parameters are validated against the flow before the run is
created: a bad one is a 422 naming it, and nothing starts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any

from legato.errors import LegatoError, UsageError
from legato.models import Trigger
from legato.store import Store

WINDOW_SECONDS = 300.0
SCHEME = "v1"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Legato-Signature`` value for a body sent at ``timestamp``."""
    base = f"{SCHEME}:{timestamp}:".encode() + body
    return f"{SCHEME}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def webhook_config(
    *,
    auth: str = "hmac",
    secret: str | None = None,
    mapping: dict[str, str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A checked ``config`` for a webhook trigger (a new secret when none is given)."""
    if auth not in ("hmac", "token"):
        raise UsageError(f"--auth must be hmac or token, got {auth!r}")
    config: dict[str, Any] = {"auth": auth, "map": dict(mapping or {})}
    if parameters:
        config["parameters"] = dict(parameters)
    if auth == "hmac":
        config["secret"] = secret or new_secret()
    return config


def parse_map(pairs: list[str]) -> dict[str, str]:
    """``--map param=json.field`` pairs."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"bad --map {pair!r}: expected PARAMETER=JSON.FIELD")
        out[name.strip()] = path.strip()
    return out


def pick(payload: Any, path: str) -> Any:
    """The value at a dotted path (``a.b.0.c``); KeyError naming the path if missing."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


class Refused(Exception):
    """A request refused with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _verify_hmac(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery key of a correctly signed, fresh request; Refused otherwise."""
    timestamp = headers.get("x-legato-timestamp")
    signature = headers.get("x-legato-signature")
    if not timestamp or not signature:
        raise Refused(
            401, "this hook needs signed requests: X-Legato-Timestamp and X-Legato-Signature"
        )
    try:
        at = float(timestamp)
    except ValueError:
        raise Refused(401, "X-Legato-Timestamp must be unix seconds") from None
    if not math.isfinite(at):  # abs(now - nan) > 300 is False: nan would pass any window
        raise Refused(401, "X-Legato-Timestamp must be unix seconds (a finite number)")
    if abs(now - at) > WINDOW_SECONDS:
        raise Refused(401, "the request's timestamp is more than 5 minutes away from now")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise Refused(401, "the signature does not match the body")
    return "sig:" + hashlib.sha256(signature.strip().encode()).hexdigest()


def handle(
    store: Store,
    name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    check_token: Any,
    now: float | None = None,
) -> dict[str, Any]:
    """Start the hook's deployment for one request; ``{"flow_run_id": ...}`` or Refused.

    ``headers`` have lower-case names; ``check_token(authorization)`` raises if the bearer
    token may not run work.
    """
    from legato.store.starts import build_run

    t = time.time() if now is None else now
    trig: Trigger | None = store.get_trigger(name)
    if trig is None or trig.kind != "webhook":
        raise Refused(404, f"no webhook named {name!r}")
    config = trig.config
    if config.get("auth", "hmac") == "token":
        check_token(headers.get("authorization"))
        given = headers.get("x-legato-delivery")
        delivery = (
            "id:" + hashlib.sha256(given.encode()).hexdigest()
            if given
            else "new:" + secrets.token_hex(16)
        )
    else:
        delivery = _verify_hmac(str(config.get("secret") or ""), headers, body, t)
    if trig.paused:
        raise Refused(409, f"webhook {name!r} is paused (legato triggers resume {name})")
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(422, "the body is not valid JSON") from None
    mapping: dict[str, str] = dict(config.get("map") or {})
    params: dict[str, Any] = dict(config.get("parameters") or {})
    if mapping:
        for param, path in mapping.items():
            try:
                params[param] = pick(payload, path)
            except KeyError:
                raise Refused(422, f"the JSON body has no field {path!r} (for {param})") from None
    elif isinstance(payload, dict):
        params.update(payload)
    else:
        raise Refused(422, "the body must be a JSON object (or map fields with --map)")
    dep = store.get_deployment(trig.deployment)
    if dep is None:
        raise Refused(404, f"webhook {name!r} starts deployment {trig.deployment!r}, which is gone")
    try:
        run = build_run(dep, params)
    except LegatoError as exc:
        raise Refused(422, str(exc)) from None
    if not store.start_webhook_run(run, name, delivery, message=f"webhook {name}"):
        raise Refused(409, "this request was already delivered (a replay): nothing started")
    return {"flow_run_id": run.id, "deployment": dep.name}
