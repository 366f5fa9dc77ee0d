"""legato.testing: helpers users can use in their own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from legato import State, flow, task
from legato.runtime import get_runtime, set_runtime
from legato.settings import get_settings
from legato.testing import isolated_runtime, last_flow_run, task_runs_by_key, temporary_home


@task
def inc(x: int) -> int:
    return x + 1


@flow
def incremented(x: int) -> int:
    return inc(x)


@pytest.fixture(autouse=True)
def outer_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LEGATO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEGATO_HOME", str(tmp_path / "outer"))
    monkeypatch.setenv("LEGATO_RESOURCES", "gpu=1")


def test_temporary_home_sets_and_restores_the_environment(tmp_path: Path) -> None:
    with temporary_home(resources="gpu=3", allow_pickle=False) as home:
        assert home.is_dir()
        assert os.environ["LEGATO_HOME"] == str(home)
        assert os.environ["LEGATO_RESOURCES"] == "gpu=3"
        assert os.environ["LEGATO_ALLOW_PICKLE"] == "false"
        assert get_settings().home == home
        assert get_settings().allow_pickle is False
    assert not home.exists()
    assert os.environ["LEGATO_HOME"] == str(tmp_path / "outer")
    assert os.environ["LEGATO_RESOURCES"] == "gpu=1"
    assert "LEGATO_ALLOW_PICKLE" not in os.environ
    assert get_settings().home == tmp_path / "outer"


def test_temporary_home_drops_other_legato_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_DATABASE_URL", "postgresql://production/legato")
    with temporary_home() as home:
        assert "LEGATO_DATABASE_URL" not in os.environ
        assert get_settings().db_url == f"sqlite:///{home / 'legato.db'}"
    assert os.environ["LEGATO_DATABASE_URL"] == "postgresql://production/legato"


def test_temporary_home_at_a_given_path_is_kept(tmp_path: Path) -> None:
    with temporary_home(tmp_path / "mine") as home:
        assert home == tmp_path / "mine"
    assert home.is_dir()


def test_isolated_runtime_records_to_a_fresh_store_and_restores_the_previous_one() -> None:
    before = set_runtime(None)
    try:
        with isolated_runtime() as rt:
            assert get_runtime() is rt
            assert incremented(1) == 2
            run = last_flow_run(rt.store)
            assert run.state is State.COMPLETED
            assert task_runs_by_key(rt.store, run.id)["inc:0"].result == {"v": 2}
            home = rt.settings.home
            assert (home / "legato.db").exists()
        with isolated_runtime() as second:
            assert second is not rt
            assert second.store.list_flow_runs() == []
        from legato import runtime

        assert runtime._runtime is None
    finally:
        set_runtime(before)


def test_last_flow_run_says_when_there_is_none() -> None:
    previous = set_runtime(None)
    try:
        with isolated_runtime() as rt, pytest.raises(AssertionError, match="no flow run"):
            last_flow_run(rt.store)
    finally:
        set_runtime(previous)
