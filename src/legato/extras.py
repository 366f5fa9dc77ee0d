"""Optional parts of Legato and the libraries each needs (the package's extras): a command
that needs a missing one says which extra to install, before it starts anything."""

from __future__ import annotations

import importlib.util

from legato.errors import UsageError

EXTRAS = {
    "server": ("fastapi", "uvicorn", "jinja2", "markdown_it", "itsdangerous"),
    "demo": ("numpy", "scipy", "matplotlib", "sleap_io", "imageio_ffmpeg"),
    "postgres": ("psycopg",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` this interpreter cannot import."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, command: str) -> None:
    """Raise a UsageError naming the extra when any of its libraries is missing."""
    lacking = missing(extra)
    if lacking:
        raise UsageError(
            f"{command} needs {', '.join(lacking)}: install the {extra} extra, "
            f"pip install 'legato[{extra}]'"
        )
