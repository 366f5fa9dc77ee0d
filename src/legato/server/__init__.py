"""Server mode: the HTTP API (and, later, the dashboard) over a Store."""

from __future__ import annotations

from legato.server.app import create_app

__all__ = ["create_app"]
