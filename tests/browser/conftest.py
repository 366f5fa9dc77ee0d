"""A real browser on a real server: Debian's Chromium driven by Playwright, a live Legato server
over SQLite, a worker process serving the ``default`` pool through the server's API, and flows
started with `legato run` against it (as a user would).

Chromium is installed with apt-get when /usr/bin/chromium is missing (as root; otherwise the
tests are skipped, and under CI=true they fail). `playwright install` is never run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from legato.models import Role
from legato.store import open_store
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLOWS = str(Path(__file__).with_name("flows.py"))
SHOTS = Path(__file__).parents[1] / "artifacts" / "browser"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser tests to run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (root only)."""
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _unavailable(f"{CHROMIUM} is missing and apt-get cannot install it here (not root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

        def apt(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["apt-get", *args],
                capture_output=True,
                text=True,
                timeout=900,
                env=env,
                check=False,
            )

        done = apt("install", "-y", "-qq", "chromium")
        if done.returncode != 0:  # a fresh machine may not have package lists yet
            apt("update", "-qq")
            done = apt("install", "-y", "-qq", "chromium")
        if done.returncode != 0 or not Path(CHROMIUM).exists():
            _unavailable(f"apt-get install chromium failed: {done.stderr.strip()[-500:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


@dataclass
class Dashboard:
    """The server, its store, a token per role, and a way to run flows against it."""

    live: LiveServer
    store: SqlStore
    tokens: dict[Role, str]
    home: Path
    worker: subprocess.Popen[bytes]
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.live.url

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        env.update(
            LEGATO_HOME=str(self.home),
            LEGATO_API_URL=self.url,
            LEGATO_API_TOKEN=self.tokens[Role.RUNNER],
            LEGATO_RESULT_STORAGE=str(self.home / "results"),
            LEGATO_HEARTBEAT_SECONDS="1",
        )
        return env

    def run(self, flow: str, *params: str, timeout: float = 60) -> tuple[int, str]:
        """`legato run flows.py:FLOW -p ...` to its end or pause: (exit code, run id)."""
        args = [a for p in params for a in ("-p", p)]
        proc = subprocess.run(
            [sys.executable, "-m", "legato", "run", f"{FLOWS}:{flow}", *args, "--json"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        import json

        try:
            return proc.returncode, str(json.loads(proc.stdout)["id"])
        except (ValueError, KeyError):
            raise AssertionError(f"legato run {flow} said: {proc.stdout}\n{proc.stderr}") from None

    def start(self, flow: str, *params: str) -> subprocess.Popen[str]:
        """`legato run` in the background (the test waits for it later)."""
        args = [a for p in params for a in ("-p", p)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "legato", "run", f"{FLOWS}:{flow}", *args, "--json"],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def wait_state(self, run_id: str, state: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (run := self.store.get_flow_run(run_id)).state.value != state:
            # A run that ended otherwise will not get there: say why it ended, at once.
            assert not run.state.is_final, f"run {run_id} ended {run.state}: {run.error}"
            assert time.monotonic() < deadline, f"run {run_id} stayed {run.state}, not {state}"
            time.sleep(0.1)

    def login(self, page: Any, role: Role) -> None:
        page.goto(f"{self.url}/login")
        page.fill("input[name=token]", self.tokens[role])
        page.click("button:has-text('Log in')")
        page.wait_for_url(f"{self.url}/")


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    home = tmp_path_factory.mktemp("dashboard")
    store = open_store(f"sqlite:///{home / 'server.db'}")
    assert isinstance(store, SqlStore)
    tokens = {role: store.create_token(f"t-{role.value}", role)[1] for role in Role}
    live = LiveServer(store, max_wait=1.0)
    made = Dashboard(live, store, tokens, home, worker=None)  # type: ignore[arg-type]
    log = (home / "worker.log").open("ab")
    made.worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "legato", "worker", "start", "--pool", "default"),
            *("--name", "browser-worker", "--resources", "cpu=4", "--grace", "2"),
        ],
        env=made.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield made
    finally:
        for proc in [*made.started, made.worker]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        for proc in made.started:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        log.close()
        live.stop()
        store.close()


@pytest.fixture
def shot() -> Callable[[Any, str], None]:
    """``shot(page, name)``: a full-page PNG in tests/artifacts/browser/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> None:
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    return take
