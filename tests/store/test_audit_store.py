"""The audit log's contract on every backend: events are listed newest first, filtered by
action (exact, or a prefix ending in a dot), actor, target and time. Over HTTP only the
server writes them: HttpStore refuses to, so the test writes through the server's store."""

from __future__ import annotations

from typing import Any

import pytest

from legato.errors import UsageError
from legato.models import AuditEvent
from legato.store import Store


@pytest.fixture
def writer(store: Store, request: pytest.FixtureRequest) -> Store:
    """Where events are recorded: the store itself, or the HTTP server's own store."""
    if store.url.startswith("http"):
        server_store: Store = request.getfixturevalue("http_server").store
        return server_store
    return store


def test_events_are_listed_newest_first_and_filtered(store: Store, writer: Store) -> None:
    before = {e.id for e in store.list_audit(limit=1000)}  # over HTTP: the server's own rows
    writer.record_audit(AuditEvent("ana", "operator", "run.cancel", "r1", at=100.0))
    writer.record_audit(
        AuditEvent("root", "admin", "token.create", "t1", {"name": "ci", "role": "viewer"}, 200.0)
    )
    writer.record_audit(AuditEvent("root", "admin", "token.revoke", "t1", at=300.0))
    events = [e for e in store.list_audit(limit=1000) if e.id not in before]
    assert [e.action for e in events] == ["token.revoke", "token.create", "run.cancel"]
    created = events[1]
    assert created.to_json() == {
        "id": created.id,
        "at": 200.0,
        "actor": "root",
        "role": "admin",
        "action": "token.create",
        "target": "t1",
        "detail": {"name": "ci", "role": "viewer"},
    }
    assert [e.action for e in store.list_audit(action="token.")] == [
        "token.revoke",
        "token.create",
    ]
    assert [e.target for e in store.list_audit(action="run.cancel")] == ["r1"]
    assert store.list_audit(action="token") == []  # no dot: exact
    assert [e.actor for e in store.list_audit(actor="ana")] == ["ana"]
    assert [e.action for e in store.list_audit(target="t1", since=250.0)] == ["token.revoke"]
    assert len(store.list_audit(actor="root", limit=1)) == 1


def test_a_client_cannot_write_audit_rows(http_server: Any) -> None:
    from legato.store.http import HttpStore

    client = HttpStore(http_server.url, http_server.token)
    try:
        with pytest.raises(UsageError, match="audit log"):
            client.record_audit(AuditEvent("mallory", "admin", "token.revoke", "t1"))
    finally:
        client.close()
    assert http_server.store.list_audit() == []
