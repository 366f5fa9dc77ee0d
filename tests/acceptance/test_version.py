"""`legato --version` prints the one version (legato/version.py: the package metadata reads
it, `legato.__version__` re-exports it, clients send it to the server), and shell completion
can be installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from legato import __version__
from legato import version as version_source
from tests.acceptance.conftest import Legato

ROOT = Path(__file__).parents[2]


def test_version_and_completion(legato: Legato) -> None:
    shown = legato("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"legato {__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]  # no second copy of the number
    assert project["tool"]["hatch"]["version"]["path"] == "src/legato/version.py"
    assert version_source.__version__ == __version__
    assert "__version__ =" not in (ROOT / "src" / "legato" / "__init__.py").read_text()
    helped = legato("--help")
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
