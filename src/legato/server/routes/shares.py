"""Share links through the API (operators): make one, list them, revoke one, read its access
log. The links' own pages are ``server/share_links.py``.

A runner token limited to pools may make a share of a run in its pools (``legato.share()``
in a flow a worker runs), of its artifacts and results only (the share roots hold every
pool's data), and nothing more here: listing, revoking and access logs need a token that is
not limited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, Request

from legato.deployments import DEFAULT_POOL
from legato.errors import RunNotFound
from legato.models import ApiToken, Share, ShareAccess, ShareItem
from legato.server.routes._common import Audit, Caller, Id, Limit, Routes, StoreDep
from legato.server.scope import check_pool
from legato.sharing import share_detail
from legato.sharing.files import result_locations
from legato.sharing.policy import checked_items, expiry, link
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


def _unlimited(token: ApiToken) -> None:
    if token.pools is not None:
        raise HTTPException(
            403, f"token {token.name!r} is limited to pools: it may make shares, not manage them"
        )


def _base_url(request: Request) -> str:
    public: str | None = request.app.state.public_url
    return public or str(request.base_url)


@routes.op(OPERATIONS["create_share"])
def create_share(
    store: StoreDep, token: Caller, body: w.ShareIn, request: Request, audit: Audit
) -> w.NewShare:
    """A new share link; its secret and link are in this answer only (the store keeps a
    hash). Paths must lie in the server's roots; the expiry defaults to 7 days and may not
    pass the server's maximum (LEGATO_SHARE_MAX_DAYS)."""
    run = store.get_flow_run(body.flow_run_id)
    if token.pools is not None:
        check_pool(token, run.pool or DEFAULT_POOL, "share runs of")
        if any(i.kind == "path" for i in body.items):  # roots are the lab's, not a pool's
            raise HTTPException(
                403,
                f"token {token.name!r} is limited to pools: it may share a run's artifacts "
                "and results, not paths",
            )
    state = request.app.state
    wanted = [ShareItem(i.kind, i.path) for i in body.items]
    paths = any(i.kind == "path" for i in wanted)
    own = result_locations(store, run.id, state.share_roots) if paths else frozenset()
    items = checked_items(wanted, state.share_roots, own)
    at = expiry(body.expires_at, max_days=state.share_max_days, now=state.clock())
    share, secret = store.create_share(
        run.id, items, expires_at=at, note=body.note, password=body.password, created_by=token.name
    )
    audit("share.create", share.id, share_detail(share))
    return w.NewShare(share=share, secret=secret, url=link(_base_url(request), secret))


@routes.op(OPERATIONS["list_shares"])
def list_shares(
    store: StoreDep,
    token: Caller,
    flow_run_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Limit = 1000,
) -> list[Share]:
    """Shares, newest first, revoked and expired ones too (never their secrets)."""
    _unlimited(token)
    return store.list_shares(flow_run_id, limit=limit)


@routes.op(OPERATIONS["get_share"])
def get_share(store: StoreDep, token: Caller, share_id: Id) -> Share:
    """One share."""
    _unlimited(token)
    share = store.get_share(share_id)
    if share is None:
        raise RunNotFound(f"no share {share_id!r}")
    return share


@routes.op(OPERATIONS["revoke_share"])
def revoke_share(store: StoreDep, token: Caller, share_id: Id, audit: Audit) -> w.Changed:
    """Revoke a live share by id or id prefix: its link answers 410 from now on."""
    _unlimited(token)
    changed = store.revoke_share(share_id)
    if changed:
        audit("share.revoke", share_id)
    return w.Changed(changed=changed)


@routes.op(OPERATIONS["list_share_accesses"])
def list_share_accesses(
    store: StoreDep, token: Caller, share_id: Id, limit: Limit = 100
) -> list[ShareAccess]:
    """A share's access log, newest first: when, from where, what, how many bytes."""
    _unlimited(token)
    if store.get_share(share_id) is None:
        raise RunNotFound(f"no share {share_id!r}")
    return store.list_share_accesses(share_id, limit=limit)
