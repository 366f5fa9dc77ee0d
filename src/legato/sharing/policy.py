"""What a share may give and for how long: the roots a server serves files from, the check
of a shared path against them, and a link's expiry.

Roots are the result storage and the folders or fsspec URLs of LEGATO_SHARE_ROOTS. A local
path is compared after resolving symlinks, so a link inside a root that points out of it is
outside; a remote URL is compared by protocol and normalised path. The check runs when a
share is made and again on every request for one of its files: a root removed from the
setting stops being served by the links that named it.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass

from legato.errors import UsageError
from legato.models import ShareItem
from legato.timefmt import span_seconds

DEFAULT_DAYS = 7.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Location:
    """A folder or file as (protocol, path): ``file`` paths are absolute with symlinks
    resolved, others normalised POSIX paths of their filesystem."""

    protocol: str
    path: str

    @property
    def local(self) -> bool:
        return self.protocol == "file"

    def url(self) -> str:
        """How fsspec (or ``open``) names it."""
        return self.path if self.local else f"{self.protocol}://{self.path.lstrip('/')}"

    def within(self, root: Location) -> bool:
        if self.protocol != root.protocol:
            return False
        if self.local:
            return self.path == root.path or self.path.startswith(root.path.rstrip(os.sep) + os.sep)
        return self.path == root.path or self.path.startswith(root.path.rstrip("/") + "/")


def locate(url: str) -> Location:
    """The location a folder, ``file://`` URL or fsspec URL names; UsageError for what no
    share may name (relative paths, ``..``, chained or query-string URLs, NUL bytes)."""
    if not url or "\x00" in url:
        raise UsageError("a shared path must be a non-empty folder, file or URL")
    if "::" in url or "?" in url or "#" in url:
        raise UsageError(f"{url!r}: a shared URL may not be chained or carry a query")
    protocol, sep, rest = url.partition("://")
    if not sep:
        protocol, rest = "file", url
    protocol = protocol.lower()
    if protocol == "local":
        protocol = "file"
    parts = rest.replace("\\", "/").split("/")
    if ".." in parts:
        raise UsageError(f"{url!r}: a shared path may not hold '..'")
    if protocol == "file":
        if not os.path.isabs(rest):
            raise UsageError(f"{url!r}: give an absolute path (the server resolves no other)")
        return Location("file", os.path.realpath(rest))
    return Location(protocol, posixpath.normpath("/" + rest.lstrip("/")))


class Roots:
    """The places a server's share links may give files from. The result storage is one,
    but only through a share's ``results`` item: it holds every run's results, so no path
    item may lie in it or hold it."""

    def __init__(self, urls: list[str], results: str | None = None) -> None:
        self.roots = [locate(u) for u in urls if u.strip()]
        self.results = locate(results) if results else None

    @classmethod
    def configured(cls, result_storage: str, share_roots: str) -> Roots:
        extra = [r.strip() for r in share_roots.split(",")]
        return cls([result_storage, *extra], results=result_storage)

    def other_runs(self, where: Location) -> bool:
        """Whether ``where`` is, lies in, or holds the result storage."""
        r = self.results
        return r is not None and (where.within(r) or r.within(where))

    @classmethod
    def from_settings(cls, result_storage: str | None = None) -> Roots:
        from legato.settings import get_settings

        settings = get_settings()
        return cls.configured(result_storage or settings.results_url, settings.share_roots)

    def root_of(self, where: Location) -> Location | None:
        """The root ``where`` lies in, or None."""
        return next((r for r in self.roots if where.within(r)), None)

    def check(self, url: str, own_results: frozenset[Location] = frozenset()) -> Location:
        """The location of ``url`` if it lies in a root and, in the result storage, is one
        of ``own_results`` (the run's own result files); UsageError otherwise."""
        where = locate(url)
        if self.root_of(where) is None:
            shown = ", ".join(r.url() for r in self.roots)
            raise UsageError(
                f"{url!r} is outside the folders this server shares from ({shown}); an admin "
                "adds roots with LEGATO_SHARE_ROOTS"
            )
        if self.other_runs(where) and where not in own_results:
            raise UsageError(
                f"{url!r} is in (or holds) the result storage, which holds every run's "
                "results: name one of this run's result files, or share them all with --results"
            )
        return where


def checked_items(
    items: list[ShareItem], roots: Roots, own_results: frozenset[Location] = frozenset()
) -> list[ShareItem]:
    """``items`` without duplicates, each path item in a root (in the result storage: one
    of ``own_results``) and spelt as its location."""
    seen: list[ShareItem] = []
    for item in items:
        if item.kind == "path":
            if not item.path:
                raise UsageError("a path item needs a path (--path PREFIX)")
            item = ShareItem("path", roots.check(item.path, own_results).url())
        elif item.path is not None:
            raise UsageError(f"a {item.kind} item takes no path")
        if item not in seen:
            seen.append(item)
    if not seen:
        raise UsageError("a share needs something to give: --artifacts, --results or --path")
    return seen


def expiry(expires: str | float | None, *, max_days: float, now: float | None = None) -> float:
    """When a share made ``now`` stops working: ``expires`` is a span (``7d``, ``12h``), an
    epoch time, or None for the default of 7 days; never beyond ``max_days``."""
    now = time.time() if now is None else now
    if expires is None:
        at = now + min(DEFAULT_DAYS, max_days) * DAY
    elif isinstance(expires, str):
        seconds = span_seconds(expires)
        if seconds is None or seconds <= 0:
            raise UsageError(f"--expires {expires!r}: give a span such as 7d, 12h or 2w")
        at = now + seconds
    else:
        at = float(expires)
    if not at > now:
        raise UsageError("a share's expiry must be in the future (e.g. --expires 7d)")
    if at > now + max_days * DAY + 1:
        raise UsageError(f"a share may live at most {max_days:g} days here (LEGATO_SHARE_MAX_DAYS)")
    return at


def link(base_url: str, secret: str) -> str:
    """The address of a share link under ``base_url`` (the server's public address)."""
    return base_url.rstrip("/") + "/s/" + secret
