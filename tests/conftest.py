"""Fixtures shared by every kind of test.

``legato_home`` gives a test its own ``LEGATO_HOME`` (in ``tmp_path``), no other ``LEGATO_*``
variable, fresh settings, and no runtime: the first flow call builds one on that home. The
runtime is closed when the test ends. Integration tests get it automatically (see
``tests/integration/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from legato.runtime import Runtime, get_runtime
from legato.testing import replace_runtime


@pytest.fixture
def legato_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("LEGATO_"):
            monkeypatch.delenv(name)
    home = tmp_path / "legato-home"
    monkeypatch.setenv("LEGATO_HOME", str(home))
    replace_runtime()  # closes any runtime left over, forgets cached settings
    yield home
    replace_runtime()


@pytest.fixture
def configure(legato_home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Runtime]:
    """``configure(resources="gpu=2", allow_pickle=False)``: set LEGATO_* variables for this
    test and return a fresh runtime built from them."""

    def apply(**settings: object) -> Runtime:
        for name, value in settings.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            monkeypatch.setenv("LEGATO_" + name.upper(), text)
        replace_runtime()
        return get_runtime()

    return apply


@pytest.fixture
def rt(legato_home: Path) -> Runtime:
    """The runtime flows in this test record to (built on the test's own home)."""
    return get_runtime()
