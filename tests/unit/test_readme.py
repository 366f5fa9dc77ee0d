"""The README stays true: every LEGATO_* setting is in its configuration table, and the two
set-up commands come first."""

from __future__ import annotations

import re
from pathlib import Path

from legato.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(LEGATO_[A-Z_]+)` \|", README, flags=re.MULTILINE))
    expected = {f"LEGATO_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "add these to the README's configuration table"
    assert documented - expected - {"LEGATO_TEST_POSTGRES_URL"} == set(), "stale rows"


def test_make_demo_and_make_test_come_first() -> None:
    head = README[:1500]
    assert "make demo" in head and "make test" in head
