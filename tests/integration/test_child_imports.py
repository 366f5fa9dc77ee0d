"""A flow file's helper modules (next to it, imported by name) load in the task's own
process, fresh or warm, under both process models; a call that cannot be loaded there fails
with the reason, not with "exited without a result"."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from legato.errors import CallNotLoadable
from legato.loader import load_flow

FLOW = """
from legato import flow, task
from helper_kit import shout

@task(timeout=60)
def fresh(word: str) -> str:
    return shout(word)

@task(isolation="process")
def isolated(word: str) -> str:
    return shout(word)

@flow
def both(word: str) -> list[str]:
    return [fresh(word), isolated(word)]
"""


@pytest.fixture(params=["fork", "spawn"])
def process_start(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from legato.settings import reset_settings

    monkeypatch.setenv("LEGATO_PROCESS_START", request.param)
    reset_settings()
    yield str(request.param)
    monkeypatch.undo()
    reset_settings()


def test_helper_modules_beside_the_flow_file_load_in_the_tasks_process(
    process_start: str, tmp_path: Path
) -> None:
    folder = tmp_path / f"flows_{process_start}"
    (folder / "helper_kit").mkdir(parents=True)
    (folder / "helper_kit" / "__init__.py").write_text(
        "import os\ndef shout(w):\n    return f'{w.upper()} from {os.getpid()}'\n"
    )
    (folder / "lab.py").write_text(textwrap.dedent(FLOW))
    flow = load_flow(f"{folder / 'lab.py'}:both")
    fresh, isolated = flow("hi")
    assert fresh.startswith("HI from ") and isolated.startswith("HI from ")
    import os

    assert str(os.getpid()) not in (fresh.split()[-1], isolated.split()[-1])


def test_a_call_that_cannot_be_loaded_names_why() -> None:
    import sys

    import cloudpickle

    from legato._calls import unpack

    frame = cloudpickle.dumps((list(sys.path), b"not a pickle"))
    with pytest.raises(CallNotLoadable, match="cannot be loaded in its process"):
        unpack(frame)


def test_an_engine_job_keeps_its_own_path_and_adds_the_callers(tmp_path: Path) -> None:
    """A Kubernetes pod's Python lives elsewhere than the bridge's: the payload's path must
    not replace the job's own (the standard library and numpy would vanish)."""
    import subprocess
    import sys

    import cloudpickle

    from legato._calls import pack

    def uses_the_standard_library() -> str:
        import colorsys  # not loaded by legato: found on the job's own path, or not at all

        return f"{colorsys.rgb_to_hsv(1, 0, 0)}"

    payload = tmp_path / "call.pkl"
    real = sys.path
    try:
        sys.path = ["/nowhere/site-packages"]  # the bridge's layout, not the job's
        payload.write_bytes(
            pack(uses_the_standard_library, (), {}, {"flow_run_id": "f", "task_run_id": "t"})
        )
    finally:
        sys.path = real
    out = tmp_path / "outcome.pkl"
    done = subprocess.run(
        [sys.executable, "-m", "legato.engines.job", str(payload), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    value, error, _logs, _artifacts = cloudpickle.loads(out.read_bytes())
    assert error is None and value == "(0.0, 1.0, 1)"
