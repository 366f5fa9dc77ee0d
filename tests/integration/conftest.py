"""Every integration test runs the engine through the public API on its own SQLite home."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(legato_home: Path) -> Path:
    return legato_home
