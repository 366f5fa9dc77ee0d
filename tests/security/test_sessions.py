"""Finding 7: logging out of the dashboard did not end the session. A cookie saved before
logout still opened every page, for up to LEGATO_SESSION_HOURS.

Each test drives a real server (uvicorn, in a thread) over a real SQLite database with real
HTTP: the saved cookie is refused after logout, a tampered or foreign-key cookie is refused,
an expired session and a revoked or expired token's session are refused, two logins of one
token end separately, a logout on one server ends the session on another within the cache
seconds, and changing the session key logs everyone out unless the old key is listed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from legato.models import Role
from legato.settings import reset_settings
from legato.store import open_store
from legato.store import schema as s
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

COOKIE = "legato_session"


@pytest.fixture
def serve(
    server_store: SqlStore, legato_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(SESSION_HOURS="0.01")``: a live server over ``server_store`` reading these
    LEGATO_* settings (a known session key unless told otherwise); stopped at the end."""
    started: list[LiveServer] = []

    def start(**settings: str) -> LiveServer:
        settings.setdefault("SESSION_SECRET", "the-first-key")
        for name in ("SESSION_SECRET", "SESSION_OLD_SECRETS", "SESSION_HOURS"):
            monkeypatch.delenv("LEGATO_" + name, raising=False)
        for name, value in settings.items():
            monkeypatch.setenv("LEGATO_" + name, value)
        reset_settings()
        server = LiveServer(server_store)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve()


def _login(live: LiveServer, secret: str) -> httpx.Client:
    return _login_answer(live, secret)[0]


def _login_answer(live: LiveServer, secret: str) -> tuple[httpx.Client, httpx.Response]:
    """A client logged in with ``secret``, and the login's answer."""
    c = httpx.Client(base_url=live.url, timeout=30)
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/login").text)
    assert nonce is not None
    r = c.post("/login", data={"nonce": nonce.group(1), "token": secret, "next": "/"})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    assert c.cookies.get(COOKIE)
    return c, r


def _csrf(c: httpx.Client) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', c.get("/").text)
    assert found is not None
    return found.group(1)


def _logout(c: httpx.Client) -> None:
    r = c.post("/logout", data={"csrf": _csrf(c)})
    assert r.status_code == 303 and r.headers["location"] == "/login"


def _with_cookie(live: LiveServer, cookie: str) -> httpx.Client:
    """A fresh client (a second browser, or the attacker) sending only this cookie."""
    c = httpx.Client(base_url=live.url, timeout=30)
    c.cookies.set(COOKIE, cookie)
    return c


def _cookie_admitted(live: LiveServer, cookie: str) -> bool:
    with _with_cookie(live, cookie) as c:
        return _admitted(c)


def _admitted(c: httpx.Client) -> bool:
    """True when the cookie opens a page; a refused one is sent to the login page."""
    r = c.get("/questions")
    if r.status_code == 200:
        return True
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/questions"
    htmx = c.get("/questions", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login?next=/questions"
    return False


def _eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:.0f} s: {what}")
        time.sleep(0.05)


def _session_rows(store: SqlStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(s.dashboard_sessions)))


def test_a_cookie_saved_before_logout_is_refused_after_it(
    live: LiveServer, secrets_by_role: dict[Role, str], server_store: SqlStore
) -> None:
    person = _login(live, secrets_by_role[Role.OPERATOR])
    saved = person.cookies[COOKIE]
    csrf = _csrf(person)
    assert _admitted(person)
    _logout(person)
    with _with_cookie(live, saved) as attacker:
        assert not _admitted(attacker)
        # Nor does it act: a form POSTed with the saved cookie and its CSRF token goes to
        # the login page.
        r = attacker.post("/runs/abc/cancel", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/login"
    (row,) = _session_rows(server_store)
    assert row.revoked_at is not None
    events = server_store.list_audit(action="session.")
    assert [(e.action, e.actor) for e in events] == [
        ("session.logout", "t-operator"),
        ("session.login", "t-operator"),
    ]
    person.close()


def test_a_tampered_or_foreign_cookie_is_refused(
    live: LiveServer, secrets_by_role: dict[Role, str], server_store: SqlStore
) -> None:
    person = _login(live, secrets_by_role[Role.VIEWER])
    good = person.cookies[COOKIE]
    assert _cookie_admitted(live, good)
    flipped = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    (row,) = _session_rows(server_store)

    def signed(key: str, session_id: str) -> str:
        return URLSafeTimedSerializer(key, salt="legato.session").dumps({"s": session_id, "c": "x"})

    # Signed with the server's key, a cookie naming the real session works (the format is
    # right), one naming a made-up session does not; signed with another key, neither does.
    assert _cookie_admitted(live, signed("the-first-key", row.id))
    refused = [flipped, good[:-2], "eyJpIjoiYSJ9.bad", ""]
    refused += [signed("the-first-key", "made-up"), signed("not-the-key", row.id)]
    for cookie in refused:
        assert not _cookie_admitted(live, cookie), cookie
    assert _admitted(person)  # the real one still works
    person.close()


def test_an_expired_session_is_refused(
    serve: Callable[..., LiveServer], secrets_by_role: dict[Role, str], server_store: SqlStore
) -> None:
    hours = 0.003  # 10.8 s: long enough to see it work on a loaded machine, short to wait out
    live = serve(SESSION_HOURS=str(hours))
    person, answer = _login_answer(live, secrets_by_role[Role.VIEWER])
    (row,) = _session_rows(server_store)
    assert row.expires_at - row.created_at == pytest.approx(hours * 3600, abs=1)
    max_age = re.search(r"max-age=(\d+)", answer.headers["set-cookie"].lower())
    assert max_age is not None and int(max_age.group(1)) == int(hours * 3600)
    assert _admitted(person)
    _eventually(lambda: time.time() > row.expires_at, "the session's expiry passes")
    assert not _admitted(person)
    # The signature's timestamp has whole seconds: wait out one more.
    _eventually(lambda: time.time() > row.expires_at + 1.5, "the cookie's age passes")
    # A cookie older than the lifetime is refused by its signature's age too, even where
    # the row says otherwise (a clock set back, a row edited by hand).
    with server_store.engine.begin() as conn:
        conn.execute(update(s.dashboard_sessions).values(expires_at=time.time() + 3600))
    assert not _admitted(person)
    person.close()


def test_a_revoked_or_expired_tokens_sessions_are_refused(
    live: LiveServer, secrets_by_role: dict[Role, str], server_store: SqlStore
) -> None:
    admin = httpx.Client(
        base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {live.token}"}
    )
    operator = _login(live, secrets_by_role[Role.OPERATOR])
    assert _admitted(operator)
    # Revoked through this server: refused at once.
    assert admin.delete("/api/v1/tokens/t-operator").json() == {"changed": True}
    assert not _admitted(operator)
    # Revoked elsewhere (the CLI on the database): refused within the cache seconds.
    viewer = _login(live, secrets_by_role[Role.VIEWER])
    assert _admitted(viewer)
    other = open_store(server_store.url)
    assert other.revoke_token("t-viewer")
    _eventually(lambda: not _admitted(viewer), "the revoked token's session is refused")
    # A token past its expiry: the same.
    admin_session = _login(live, secrets_by_role[Role.ADMIN])
    assert _admitted(admin_session)
    with server_store.engine.begin() as conn:
        t = s.api_tokens.c
        conn.execute(
            update(s.api_tokens).where(t.name == "t-admin").values(expires_at=time.time() - 1)
        )
    _eventually(lambda: not _admitted(admin_session), "the expired token's session is refused")
    other.close()
    for c in (admin, operator, viewer, admin_session):
        c.close()


def test_two_logins_of_one_token_end_separately(
    live: LiveServer, secrets_by_role: dict[Role, str]
) -> None:
    laptop = _login(live, secrets_by_role[Role.OPERATOR])
    desktop = _login(live, secrets_by_role[Role.OPERATOR])
    assert laptop.cookies[COOKIE] != desktop.cookies[COOKIE]
    assert _csrf(laptop) != _csrf(desktop)
    saved = laptop.cookies[COOKIE]
    _logout(laptop)
    assert not _cookie_admitted(live, saved)
    assert _admitted(desktop)
    laptop.close()
    desktop.close()


def test_a_logout_on_one_server_ends_the_session_on_another(
    serve: Callable[..., LiveServer], secrets_by_role: dict[Role, str]
) -> None:
    first, second = serve(), serve()  # one database, one session key: two server processes
    person = _login(first, secrets_by_role[Role.OPERATOR])
    there = _with_cookie(second, person.cookies[COOKIE])
    assert _admitted(there)
    _logout(person)
    _eventually(lambda: not _admitted(there), "the other server refuses the logged-out cookie")
    person.close()
    there.close()


def test_a_new_session_key_logs_everyone_out_unless_the_old_one_is_listed(
    serve: Callable[..., LiveServer], secrets_by_role: dict[Role, str]
) -> None:
    before = serve(SESSION_SECRET="key-one")
    person = _login(before, secrets_by_role[Role.VIEWER])
    cookie = person.cookies[COOKIE]
    person.close()
    rotated = serve(SESSION_SECRET="key-two")
    assert not _cookie_admitted(rotated, cookie)
    graceful = serve(SESSION_SECRET="key-two", SESSION_OLD_SECRETS="key-zero,key-one")
    assert _cookie_admitted(graceful, cookie)
    fresh = _login(graceful, secrets_by_role[Role.VIEWER])  # signed with the new key only
    assert _cookie_admitted(rotated, fresh.cookies[COOKIE])
    assert not _cookie_admitted(before, fresh.cookies[COOKIE])
    fresh.close()
