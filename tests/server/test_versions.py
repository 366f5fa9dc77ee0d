"""A client of another release line than the server is refused before anything is read or
written, with both versions named; the same line (another patch) works; HttpStore says
which version it is."""

from __future__ import annotations

import httpx
import pytest

from legato import __version__
from legato.errors import UsageError
from legato.server.app import release
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from tests.live_server import LiveServer


def _other_line(version: str) -> str:
    major, minor = release(version)
    return f"{major}.{int(minor) + 1}.0"


def _same_line_other_patch(version: str) -> str:
    major, minor = release(version)
    return f"{major}.{minor}.999"


def test_release_lines() -> None:
    assert release("0.1.0") == release("0.1.7") == ("0", "1")
    assert release("1.2.3rc1") == ("1", "2") and release("2") == ("2", "")


def test_another_release_line_is_refused_with_both_versions(server_store: SqlStore) -> None:
    live = LiveServer(server_store, auth=False)
    try:
        with httpx.Client(base_url=live.url) as c:
            refused = c.get(
                "/api/v1/flow-runs", headers={"X-Legato-Version": _other_line(__version__)}
            )
            assert refused.status_code == 400
            detail = refused.json()["detail"]
            assert _other_line(__version__) in detail and __version__ in detail
            same = c.get(
                "/api/v1/flow-runs",
                headers={"X-Legato-Version": _same_line_other_patch(__version__)},
            )
            assert same.status_code == 200
            assert c.get("/api/v1/flow-runs").status_code == 200  # no header: curl, scripts
        store = HttpStore(live.url)
        try:
            assert store.list_flow_runs() == []  # this Legato's own client is let in
        finally:
            store.close()
    finally:
        live.stop()


def test_a_worker_of_another_line_stops_with_the_message(
    server_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import legato.version

    live = LiveServer(server_store, auth=False)
    try:
        monkeypatch.setattr(legato.version, "__version__", _other_line(__version__))
        store = HttpStore(live.url)
        try:
            with pytest.raises(UsageError, match="install Legato"):
                store.list_flow_runs()
        finally:
            store.close()
    finally:
        live.stop()
