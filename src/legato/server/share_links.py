"""The pages a share link opens (``/s/TOKEN``): no login, only the link's secret.

- ``GET /s/TOKEN``: what was shared (artifacts rendered, files listed with their sizes);
- ``GET /s/TOKEN/f/results/NAME`` and ``/s/TOKEN/f/files/N/PATH``: one file, streamed, with
  HTTP Range (``legato.sharing.stream``);
- ``GET /s/TOKEN/zip``: everything, as a zip streamed as it is written;
- ``POST /s/TOKEN/unlock``: the password of a protected link (a cookie for this link's path
  only); ``curl -u :PASSWORD`` works too (HTTP Basic, any user name).

A wrong link is a 404, a revoked or expired one a 410; both plain pages that say nothing of
other links. Password attempts are limited per link and client, and per link. Every request
on a known link is a row of its access log (time, client, item, bytes, status); opening the
page is in the audit log too. Pages carry a strict Content-Security-Policy and no referrer,
so the secret in the address does not leak to sites the artifacts link to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from legato.audit import Actor
from legato.models import Share, ShareAccess
from legato.sharing import files as shared
from legato.sharing.policy import Roots
from legato.sharing.stream import Meter, Unsatisfiable, byte_range, file_chunks, zip_chunks
from legato.store.shares import password_matches

COOKIE = "legato_share"
LINK = {"x-legato-auth": "share-link"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}
TRIES_PER_CLIENT = 5  # wrong passwords per link and client in WINDOW
TRIES_PER_LINK = 50  # wrong passwords per link in WINDOW, from anywhere
WINDOW = 600.0
OPEN_AUDIT_EVERY = 600.0  # one share.open row per link and client in this long
PAGE_FILES = 2000  # files listed per item on the page (the zip has them all)


class SecretsOutOfLogs(logging.Filter):
    """Masks share-link secrets in log records (uvicorn's access log prints every path): a
    log file is no place for a key to someone's data."""

    _SECRET = re.compile(r"(/s/lgs_)[A-Za-z0-9_-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._SECRET.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str) and "/s/lgs_" in record.msg:
            record.msg = self._SECRET.sub(r"\1…", record.msg)
        return True


def keep_secrets_out_of_logs() -> None:
    """Put ``SecretsOutOfLogs`` on uvicorn's access and error loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretsOutOfLogs) for f in logger.filters):
            logger.addFilter(SecretsOutOfLogs())


class Attempts:
    """Password tries, remembered for WINDOW seconds: too many wrong ones answer 429. A try
    is counted before its password is checked (``take``) and taken back when it was right
    (``right``), so tries sent in parallel count as they arrive."""

    KEYS_MAX = 100_000  # remembered link-and-client keys; past it, expired ones are dropped

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._tries: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._tries.setdefault(key, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        return times

    def _prune(self, now: float) -> None:
        stale = [k for k, times in self._tries.items() if not times or times[-1] <= now - WINDOW]
        for key in stale:
            del self._tries[key]

    def _keys(self, share_id: str, client: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return ((f"{share_id}|{client}", TRIES_PER_CLIENT), (share_id, TRIES_PER_LINK))

    def _wait(self, share_id: str, client: str, now: float) -> float:
        """Seconds until another try is allowed (0: now); the caller holds the lock."""
        waits = [
            self._tries[key][0] + WINDOW - now
            for key, most in self._keys(share_id, client)
            if key in self._tries and len(self._recent(key, now)) >= most
        ]
        return max(waits, default=0.0)

    def blocked(self, share_id: str, client: str) -> float:
        """Seconds until another try is allowed (0: now); counts nothing."""
        with self._lock:
            return self._wait(share_id, client, self.clock())

    def take(self, share_id: str, client: str) -> float:
        """Count a try now, if one is allowed: 0.0; else the seconds until one is."""
        now = self.clock()
        with self._lock:
            if len(self._tries) > self.KEYS_MAX:
                self._prune(now)
            wait = self._wait(share_id, client, now)
            if wait:
                return wait
            for key, _most in self._keys(share_id, client):
                self._recent(key, now).append(now)
            return 0.0

    def right(self, share_id: str, client: str) -> None:
        """The try just taken was right: it does not count against anyone."""
        with self._lock:
            for key, _most in self._keys(share_id, client):
                times = self._tries.get(key)
                if times:
                    times.pop()


def unlock_value(password_hash: str, share_id: str) -> str:
    """The cookie that says this browser gave the password: only the server, which holds the
    password's hash, can make it, and a new password or a revoked link voids it."""
    return hmac.new(password_hash.encode(), share_id.encode(), hashlib.sha256).hexdigest()


class ShareLinks:
    def __init__(
        self, app: FastAPI, store: Any, roots: Roots, clock: Callable[[], float], env: Any
    ) -> None:
        self.app = app
        self.store = store
        self.roots = roots
        self.clock = clock
        self.env = env
        self.attempts = Attempts(clock)
        self._opened: dict[tuple[str, str], float] = {}
        self._known: dict[tuple[str, str], float] = {}  # (share, sha256(password)) -> until

    def mount(self) -> None:
        add = self.app.add_api_route
        # No role: the link's secret is the key (so declared, as the dashboard declares its
        # session cookie), and what it opens is checked here.
        opts: dict[str, Any] = {"include_in_schema": False, "openapi_extra": LINK}
        add("/s/{secret}", self.page, methods=["GET"], **opts)
        add("/s/{secret}/unlock", self.unlock, methods=["POST"], **opts)
        add("/s/{secret}/zip", self.zip, methods=["GET"], **opts)
        add("/s/{secret}/f/{item:path}", self.download, methods=["GET"], **opts)

    # -- plumbing ---------------------------------------------------------------------------

    def _html(self, name: str, status: int, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("session", None)
        ctx.setdefault("path", "")
        ctx["status"] = status
        html = self.env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def _log(self, share: Share, request: Request, item: str, sent: int, status: int) -> None:
        client = request.client.host if request.client else "unknown"
        try:
            self.store.record_share_access(
                ShareAccess(share.id, self.clock(), client, item, sent, status)
            )
        except Exception:  # the answer went out; a full log must not turn it into an error
            logging.getLogger("legato.server").exception("could not log a share access")

    def _gone(self, share: Share | None) -> HTMLResponse:
        if share is None:
            return self._html("share_gone.html", 404, why="This link is not known here.")
        if share.revoked_at is not None:
            return self._html("share_gone.html", 410, why="This link was revoked by its owner.")
        return self._html("share_gone.html", 410, why="This link has expired.")

    def _password_given(self, request: Request, share: Share, password_hash: str) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie, unlock_value(password_hash, share.id)):
            return True
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            _user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return self._check_password(request, share, password_hash, password) == "right"

    def _check_password(
        self, request: Request, share: Share, password_hash: str, password: str
    ) -> Literal["right", "wrong", "blocked"]:
        client = request.client.host if request.client else "unknown"
        key = (share.id, hashlib.sha256(password.encode()).hexdigest())
        now = self.clock()
        if self._known.get(key, 0.0) > now:  # a download tool sends it each request
            return "right"
        if self.attempts.take(share.id, client):
            return "blocked"
        if password_matches(password, password_hash):
            self.attempts.right(share.id, client)
            if len(self._known) > 10_000:
                self._known = {k: until for k, until in self._known.items() if until > now}
            self._known[key] = now + WINDOW
            return "right"
        return "wrong"

    def _open(
        self, request: Request, item: str = "page"
    ) -> tuple[Share | None, str | None, Response | None]:
        """(share, its password hash, refusal): refusal is None when the request may go on."""
        found = self.store.open_share(request.path_params["secret"])
        if found is None:
            return None, None, self._gone(None)
        share, password_hash = found
        if not share.live(self.clock()):
            self._log(share, request, item, 0, 410)
            return share, password_hash, self._gone(share)
        return share, password_hash, None

    def _locked(self, request: Request, share: Share, password_hash: str | None) -> bool:
        return password_hash is not None and not self._password_given(request, share, password_hash)

    def _audit_open(self, share: Share, request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        now = self.clock()
        if self._opened.get((share.id, client), -1e18) > now - OPEN_AUDIT_EVERY:
            return
        if len(self._opened) > 10_000:  # a bound on what many clients leave behind
            self._opened.clear()
        self._opened[(share.id, client)] = now
        actor = Actor(f"link:{share.id[:8]}", "link")
        actor.record(self.store, "share.open", share.id, {"client": client})

    # -- pages ------------------------------------------------------------------------------

    def page(self, request: Request) -> Response:
        share, password_hash, refusal = self._open(request)
        if refusal is not None or share is None:
            return refusal or self._gone(None)
        secret = request.path_params["secret"]
        if self._locked(request, share, password_hash):
            self._log(share, request, "page", 0, 401)
            return self._html("share_password.html", 401, base=f"/s/{secret}", error=None)
        artifacts = (
            self.store.get_artifacts(share.flow_run_id)
            if any(i.kind == "artifacts" for i in share.items)
            else []
        )
        run = self.store.get_flow_run(share.flow_run_id)
        response = self._html(
            "share.html",
            200,
            share=share,
            run=run,
            base=f"/s/{secret}",
            artifacts=artifacts,
            results=shared.result_files(self.store, share, self.roots),
            paths=shared.path_files(self.store, share, self.roots),
            page_files=PAGE_FILES,
            quote=lambda s: quote(s, safe="/"),
        )
        self._log(share, request, "page", len(response.body), 200)
        self._audit_open(share, request)
        return response

    async def unlock(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = (await request.body())[:4096].decode("utf-8", "replace")
        password = dict(parse_qsl(body, keep_blank_values=True)).get("password", "")
        return await run_in_threadpool(self._unlock, request, password)

    def _unlock(self, request: Request, password: str) -> Response:
        share, password_hash, refusal = self._open(request)
        if refusal is not None or share is None:
            return refusal or self._gone(None)
        secret = request.path_params["secret"]
        base = f"/s/{secret}"
        if password_hash is None:
            return Response(status_code=303, headers={"Location": base, **HEADERS})
        client = request.client.host if request.client else "unknown"
        answer = self._check_password(request, share, password_hash, password)
        if answer == "blocked":  # over the limit, counted as it came in (parallel tries too)
            wait = self.attempts.blocked(share.id, client)
            self._log(share, request, "unlock", 0, 429)
            why = f"Too many wrong passwords: try again in {int(wait) + 1} seconds."
            response = self._html("share_password.html", 429, base=base, error=why)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        if answer == "wrong":
            self._log(share, request, "unlock", 0, 401)
            return self._html("share_password.html", 401, base=base, error="Wrong password.")
        self._log(share, request, "unlock", 0, 303)
        unlocked = Response(status_code=303, headers={"Location": base, **HEADERS})
        unlocked.set_cookie(
            COOKIE,
            unlock_value(password_hash, share.id),
            max_age=max(1, int(share.expires_at - self.clock())),
            path=base,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return unlocked

    # -- bytes ------------------------------------------------------------------------------

    def _logged(
        self,
        chunks: Iterator[bytes],
        meter: Meter,
        share: Share,
        request: Request,
        item: str,
        status: int,
    ) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:  # also when the client goes away mid-file: what went out is logged
            self._log(share, request, item, meter.sent, status)

    def _refused_bytes(self, request: Request, share: Share, item: str, status: int) -> Response:
        self._log(share, request, item, 0, status)
        headers = dict(HEADERS)
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="share link", charset="UTF-8"'
        text = {401: "this link needs its password", 404: "not part of this share"}[status]
        return Response(text + "\n", status_code=status, headers=headers, media_type="text/plain")

    def download(self, request: Request) -> Response:
        item = request.path_params["item"]
        share, password_hash, refusal = self._open(request, item)
        if refusal is not None or share is None:
            return refusal or self._gone(None)
        if self._locked(request, share, password_hash):
            return self._refused_bytes(request, share, item, 401)
        handle = None
        try:
            found = shared.find(self.store, share, self.roots, item)
            if found is not None:
                size = shared.size_of(found)
                handle = shared.open_file(found)  # here: a refusal is a 404, not a cut stream
        except OSError:  # gone since it was listed, a symlink swapped in, a storage error
            found = None
        if found is None or handle is None:
            return self._refused_bytes(request, share, item, 404)
        try:
            chosen = byte_range(request.headers.get("range"), size)
        except Unsatisfiable:
            handle.close()
            self._log(share, request, found.item, 0, 416)
            headers = {**HEADERS, "Content-Range": f"bytes */{size}"}
            return Response(status_code=416, headers=headers)
        first, last = chosen or (0, size - 1)
        status = 200 if chosen is None else 206
        headers = {
            **HEADERS,
            "Accept-Ranges": "bytes",
            "Content-Length": str(max(0, last - first + 1)),
            "Content-Disposition": "attachment; filename*=UTF-8''" + quote(found.name, safe=""),
        }
        if chosen is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        meter = Meter()
        chunks = file_chunks(handle, first, last, meter)
        media = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return StreamingResponse(
            self._logged(chunks, meter, share, request, found.item, status),
            status_code=status,
            headers=headers,
            media_type=media,
        )

    def zip(self, request: Request) -> Response:
        share, password_hash, refusal = self._open(request, "zip")
        if refusal is not None or share is None:
            return refusal or self._gone(None)
        if self._locked(request, share, password_hash):
            return self._refused_bytes(request, share, "zip", 401)
        members: list[tuple[str, shared.SharedFile]] = [
            (f.item, f) for f in shared.result_files(self.store, share, self.roots)
        ]
        for _path, found, _cut in shared.path_files(self.store, share, self.roots):
            members.extend((f.item, f) for f in found)
        extra: dict[str, bytes] = {}
        if any(i.kind == "artifacts" for i in share.items):
            arts = [
                {"title": a.title, "kind": a.kind, "data": a.data, "created_at": a.created_at}
                for a in self.store.get_artifacts(share.flow_run_id)
            ]
            extra["artifacts.json"] = json.dumps(arts, indent=2, default=str).encode()
        meter = Meter()
        name = "share-" + "".join(c for c in share.flow_run_id[:8] if c.isalnum()) + ".zip"
        headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(
            self._logged(zip_chunks(members, extra, meter), meter, share, request, "zip", 200),
            headers=headers,
            media_type="application/zip",
        )


def mount_share_links(
    app: FastAPI, store: Any, *, roots: Roots, clock: Callable[[], float] = time.time
) -> None:
    """Add the link pages to ``app`` (over a SqlStore: ``open_share`` reads the database)."""
    from legato.server.dashboard import template_env

    ShareLinks(app, store, roots, clock, template_env()).mount()
