"""Dashboard sessions in the database, on SQLite and PostgreSQL: a session is live until it
expires or is revoked, or its token is revoked or expires; a login deletes the rows that can
never admit anyone again. Over HTTP they do not exist: the dashboard lives in the server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, update

from legato.errors import UsageError
from legato.models import Role
from legato.store import Store
from legato.store import schema as s
from legato.store.sql import SqlStore

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _ids(store: SqlStore) -> set[str]:
    with store.engine.connect() as conn:
        return {r.id for r in conn.execute(select(s.dashboard_sessions.c.id))}


@pytest.mark.parametrize("store_url", DATABASES, indirect=True)
def test_a_session_lives_until_revoked_or_expired(store: Store) -> None:
    assert isinstance(store, SqlStore)
    token, _ = store.create_token("ana", Role.OPERATOR)
    until = time.time() + 3600
    first = store.create_session(token.id, until)
    second = store.create_session(token.id, until)
    assert first != second and len(first) >= 43  # 32 random bytes, URL-safe
    found = store.live_session(first)
    assert found is not None
    assert (found[0].id, found[0].name, found[0].role, found[1]) == (
        token.id,
        "ana",
        Role.OPERATOR,
        pytest.approx(until),
    )
    assert store.revoke_session(first) is True
    assert store.live_session(first) is None
    assert store.revoke_session(first) is False
    assert store.live_session(second) is not None  # the other login of the same token
    assert store.live_session("made-up") is None
    gone = store.create_session(token.id, time.time() - 1)
    assert store.live_session(gone) is None


@pytest.mark.parametrize("store_url", DATABASES, indirect=True)
def test_a_revoked_or_expired_token_ends_its_sessions(store: Store) -> None:
    assert isinstance(store, SqlStore)
    ana, _ = store.create_token("ana", Role.VIEWER)
    bo, _ = store.create_token("bo", Role.ADMIN)
    session = store.create_session(ana.id, time.time() + 3600)
    other = store.create_session(bo.id, time.time() + 3600)
    assert store.revoke_token("ana")
    assert store.live_session(session) is None
    # A token with an expiry: the session ends with it, whichever comes first.
    soon = time.time() + 60
    with store.engine.begin() as conn:
        conn.execute(update(s.api_tokens).where(s.api_tokens.c.id == bo.id).values(expires_at=soon))
    found = store.live_session(other)
    assert found is not None and found[1] == pytest.approx(soon)
    with store.engine.begin() as conn:
        conn.execute(update(s.api_tokens).where(s.api_tokens.c.id == bo.id).values(expires_at=1.0))
    assert store.live_session(other) is None


@pytest.mark.parametrize("store_url", DATABASES, indirect=True)
def test_a_login_deletes_the_rows_that_admit_no_one(store: Store) -> None:
    assert isinstance(store, SqlStore)
    token, _ = store.create_token("ana", Role.VIEWER)
    expired = store.create_session(token.id, time.time() - 1)
    assert _ids(store) == {expired}
    revoked = store.create_session(token.id, time.time() + 3600)
    assert _ids(store) == {revoked}  # the expired one went at this login
    store.revoke_session(revoked)
    live = store.create_session(token.id, time.time() + 3600)
    assert _ids(store) == {live}  # and the revoked one at this
    newest = store.create_session(token.id, time.time() + 3600)
    assert _ids(store) == {live, newest}


def test_a_client_has_no_sessions(http_server: Any) -> None:
    from legato.store.http import HttpStore

    client = HttpStore(http_server.url, http_server.token)
    try:
        for call in (
            lambda: client.create_session("t", time.time() + 60),
            lambda: client.live_session("s"),
            lambda: client.revoke_session("s"),
        ):
            with pytest.raises(UsageError, match="dashboard"):
                call()
    finally:
        client.close()
