"""`import legato` stays light: the heavy dependencies load only when they are needed."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded on first use only: the store (SQL), migrations, result storage, pickling, the CLI.
MUST_NOT_IMPORT = [
    "alembic",
    "fsspec",
    "cloudpickle",
    "sqlalchemy",
    "typer",
    "rich",
    "psycopg",
    # nor validation, the server, HTTP or web modules: a run builds its models when it starts
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "jinja2",
]


def imported_by(statement: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    return modules


def test_import_legato_does_not_load_heavy_dependencies() -> None:
    modules = imported_by("import legato")
    assert "legato" in modules and "legato.api" in modules  # the measurement works
    loaded = sorted(m for m in MUST_NOT_IMPORT if m in {n.split(".")[0] for n in modules})
    assert loaded == []


def test_import_legato_leaves_the_heavy_modules_out_of_sys_modules() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, legato; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(out.stdout))
    assert "legato.api" in loaded  # the measurement works
    tops = {name.split(".")[0] for name in loaded}
    assert sorted(tops & set(MUST_NOT_IMPORT)) == []
    assert sorted(m for m in loaded if m.startswith(("legato.server", "legato.store.sql"))) == []


def test_the_public_api() -> None:
    import legato

    assert {"flow", "task", "get_logger", "artifact", "wait"} <= set(legato.__all__)
    for name in legato.__all__:
        assert hasattr(legato, name), name
