"""The real `legato` command, run as a subprocess against a home of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Legato = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def legato(home: Path) -> Legato:
    """``legato("runs", "ls", "--json")`` -> CompletedProcess (stdout/stderr as text)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        full_env.update({"LEGATO_HOME": str(home), "COLUMNS": "200", **(env or {})})
        return subprocess.run(
            [sys.executable, "-m", "legato", *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)
