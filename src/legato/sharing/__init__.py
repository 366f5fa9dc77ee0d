"""Share links: a run's artifacts, result files and chosen files under the server's roots,
given to someone without an account through a link that expires (docs/sharing.md).

``make_share`` is the one way a share is made, from the CLI, ``legato.share()`` and the
server's API alike: it checks the items against the roots and the expiry against the
maximum, then records the share. ``policy`` holds those rules, ``files`` finds a share's
files, ``stream`` sends them; the link pages are ``legato.server.share_links``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legato.models import Share, ShareItem

if TYPE_CHECKING:
    from legato.sharing.policy import Roots

# ``import legato`` imports this module (for ``legato.share``): what it needs beyond the
# models is imported when a share is made.
__all__ = ["NewShare", "make_share", "share", "share_items"]


@dataclass(frozen=True, slots=True)
class NewShare:
    share: Share
    secret: str
    url: str


def share_items(
    *, artifacts: bool = False, results: bool = False, paths: list[str] | None = None
) -> list[ShareItem]:
    """The items of a share, as the CLI's flags and ``legato.share()``'s arguments name them."""
    items = []
    if artifacts:
        items.append(ShareItem("artifacts"))
    if results:
        items.append(ShareItem("results"))
    items.extend(ShareItem("path", p) for p in paths or [])
    return items


def make_share(
    store: Any,
    flow_run_id: str,
    items: list[ShareItem],
    *,
    expires: str | float | None = None,
    note: str | None = None,
    password: str | None = None,
    created_by: str,
    base_url: str,
    roots: Roots | None = None,
    max_days: float | None = None,
    now: float | None = None,
) -> NewShare:
    """Record a share of ``flow_run_id``'s ``items`` and return it with its link. Through a
    server's API (an HttpStore) the server checks and records it, and spells the link."""
    from legato.settings import get_settings
    from legato.sharing.policy import Roots, checked_items, expiry, link

    settings = get_settings()
    limit = settings.share_max_days if max_days is None else max_days
    if hasattr(store, "create_share_link"):  # over HTTP: the server's roots and maximum
        at = None if expires is None else expiry(expires, max_days=36500.0, now=now)
        share, secret, url = store.create_share_link(
            flow_run_id, items, expires_at=at, note=note, password=password
        )
        return NewShare(share, secret, url)
    from legato.sharing.files import result_locations

    roots = roots or Roots.from_settings()
    own = (
        result_locations(store, flow_run_id, roots)
        if any(i.kind == "path" for i in items)
        else frozenset()
    )
    checked = checked_items(items, roots, own)
    at = expiry(expires, max_days=limit, now=now)
    share, secret = store.create_share(
        flow_run_id, checked, expires_at=at, note=note, password=password, created_by=created_by
    )
    return NewShare(share, secret, link(base_url, secret))


def public_base(host: str | None = None, port: int | None = None) -> str:
    """Where links point: LEGATO_PUBLIC_URL, else the server's own address."""
    from legato.settings import get_settings

    settings = get_settings()
    if settings.public_url:
        return settings.public_url.rstrip("/")
    shown = host or settings.server_host
    if shown in ("0.0.0.0", "::", ""):
        shown = "127.0.0.1"
    return f"http://{shown}:{port or settings.server_port}"


def share(
    *,
    artifacts: bool = True,
    results: bool = False,
    paths: list[str] | None = None,
    expires: str | None = None,
    note: str | None = None,
    password: str | None = None,
    run_id: str | None = None,
) -> str:
    """A link to this flow run's artifacts (and its result files, and ``paths`` under the
    server's share roots) for someone without an account; it expires after 7 days unless
    ``expires`` says otherwise (``"30d"``). Called from a flow function, it shares that run;
    elsewhere ``run_id`` names one. In embedded mode the link works while ``legato server
    start`` serves this database."""
    from legato.audit import Actor, local_actor
    from legato.context import current_run
    from legato.errors import UsageError
    from legato.runtime import get_runtime

    ctx = current_run.get()
    if run_id is None:
        if ctx is None:
            raise UsageError("legato.share() outside a flow run needs run_id=")
        run_id = ctx.flow_run_id
    rt = get_runtime()
    rt.recorder.flush()  # the run's own record must be in the store before it is shared
    store = rt.store
    actor = local_actor()
    if ctx is not None and ctx.flow_name:
        actor = Actor(f"flow:{ctx.flow_name}", actor.role)
    made = make_share(
        store,
        run_id,
        share_items(artifacts=artifacts, results=results, paths=paths),
        expires=expires,
        note=note,
        password=password,
        created_by=actor.name,
        base_url=public_base(),
    )
    if not store.url.startswith(("http://", "https://")):
        actor.record(store, "share.create", made.share.id, share_detail(made.share))
    return made.url


def share_detail(share: Share) -> dict[str, object]:
    """What the audit log says of a share made (never its secret or password)."""
    return {
        "flow_run_id": share.flow_run_id,
        "items": [i.path or i.kind for i in share.items],
        "expires_at": share.expires_at,
        "password": share.has_password,
    }
