"""LEGATO_* settings: parsing, defaults and clear errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.errors import ConfigurationError
from legato.settings import (
    Settings,
    detect_resources,
    get_settings,
    parse_resources,
    reset_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("LEGATO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEGATO_HOME", str(tmp_path / "home"))
    reset_settings()
    yield
    reset_settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu=2,cpu=8,mem_gb=64", {"gpu": 2.0, "cpu": 8.0, "mem_gb": 64.0}),
        (" gpu = 1 , licence=0.5 ", {"gpu": 1.0, "licence": 0.5}),
        ("cpu=4,", {"cpu": 4.0}),
        ("", {}),
    ],
)
def test_parse_resources(text: str, expected: dict[str, float]) -> None:
    assert parse_resources(text) == expected


@pytest.mark.parametrize("text", ["gpu", "gpu=two", "=2", "gpu=2,cpu"])
def test_bad_resources_name_the_bad_part(text: str) -> None:
    with pytest.raises(ConfigurationError, match="NAME=NUMBER"):
        parse_resources(text)


def test_defaults_live_in_legato_home(tmp_path: Path) -> None:
    settings = get_settings()
    home = tmp_path / "home"
    assert settings.home == home
    assert settings.db_url == f"sqlite:///{home / 'legato.db'}"
    assert settings.results_url == str(home / "results")
    assert settings.allow_pickle is True
    assert settings.inline_result_max_bytes == 65536
    assert settings.log_level == "INFO"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_DATABASE_URL", "postgresql://db/legato")
    monkeypatch.setenv("LEGATO_RESULT_STORAGE", "s3://bucket/results")
    monkeypatch.setenv("LEGATO_ALLOW_PICKLE", "false")
    monkeypatch.setenv("LEGATO_RESOURCES", "gpu=2,cpu=8")
    monkeypatch.setenv("LEGATO_LOG_LEVEL", "debug")
    monkeypatch.setenv("LEGATO_MAX_WORKERS", "4")
    settings = get_settings()
    assert settings.db_url == "postgresql://db/legato"
    assert settings.results_url == "s3://bucket/results"
    assert settings.allow_pickle is False
    # What LEGATO_RESOURCES names replaces detection; what it does not name is detected.
    assert settings.local_resources() == {**detect_resources(), "gpu": 2.0, "cpu": 8.0}
    assert settings.log_level == "DEBUG"
    assert settings.max_workers == 4


def test_settings_are_cached_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("LEGATO_LOG_LEVEL", "WARNING")
    assert get_settings().log_level == "INFO"
    reset_settings()
    assert get_settings().log_level == "WARNING"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEGATO_LOG_LEVEL", "LOUD"),
        ("LEGATO_ALLOW_PICKLE", "perhaps"),
        ("LEGATO_MAX_WORKERS", "many"),
    ],
)
def test_a_bad_setting_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        get_settings()


def test_detected_resources_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    found = detect_resources()
    assert found["gpu"] == 2.0
    assert found["cpu"] >= 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_resources()["gpu"] == 0.0
    assert Settings().local_resources() == detect_resources()
