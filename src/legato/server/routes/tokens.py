"""API tokens (admin only): only their hashes are stored."""

from __future__ import annotations

from legato.models import ApiToken
from legato.server.routes._common import Audit, AuthDep, Id, Routes, StoreDep
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["list_tokens"])
def list_tokens(
    store: StoreDep,
) -> list[ApiToken]:
    """Every token, revoked ones too (never their secrets)."""
    return store.list_tokens()


@routes.op(OPERATIONS["create_token"])
def create_token(store: StoreDep, body: w.TokenCreateIn, audit: Audit) -> w.NewToken:
    """A new token; the secret is in this answer only (the store keeps its hash)."""
    token, secret = store.create_token(
        body.name, body.role, pools=body.pools, expires_at=body.expires_at
    )
    detail = {"name": token.name, "role": token.role.value, "pools": token.pools}
    audit("token.create", token.id, {**detail, "expires_at": token.expires_at})
    return w.NewToken(token=token, secret=secret)


@routes.op(OPERATIONS["revoke_token"])
def revoke_token(store: StoreDep, auth: AuthDep, id_or_name: Id, audit: Audit) -> w.Changed:
    """Revoke a live token by id, id prefix or name; ``changed`` is false if none."""
    changed = store.revoke_token(id_or_name)
    auth.forget()
    if changed:
        audit("token.revoke", id_or_name)
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["verify_token"])
def verify_token(store: StoreDep, body: w.TokenVerifyIn) -> w.TokenOrNone:
    """The live token with this secret, if any."""
    return w.TokenOrNone(token=store.verify_token(body.secret))


@routes.op(OPERATIONS["touch_token"])
def touch_token(store: StoreDep, token_id: Id) -> None:
    """Record that a token was used now."""
    store.touch_token(token_id)
