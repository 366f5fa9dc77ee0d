"""Small modules with one job: no module over 1,200 lines, no function over 120 (migrations,
which restate the schema of their time, aside)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "legato"
MAX_MODULE_LINES = 1200
MAX_FUNCTION_LINES = 120


def _sources() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if "migrations" not in p.parts]


def test_the_measurement_sees_the_package() -> None:
    names = {p.relative_to(SRC).as_posix() for p in _sources()}
    assert {"engine/core.py", "store/sql.py", "worker.py"} <= names


def test_no_module_is_over_1200_lines() -> None:
    long = {
        p.relative_to(SRC).as_posix(): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_120_lines() -> None:
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC).as_posix()}:{node.name}"] = lines
    assert long == {}
