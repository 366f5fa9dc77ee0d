"""`legato demo` (and `make demo`): the lab pipeline on one machine, as a lab would run it.

A server with the dashboard, workers for the io, cpu, gpu and flows pools (two simulated GPUs
when there is none), 20 generated recordings, the pipeline run with a progress bar, one
recording left waiting for a person's approval, then serving until Ctrl-C. Everything lives
in ``$LEGATO_HOME/demo``, made afresh each time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from legato.errors import UsageError


def example_folder() -> Path:
    """The lab pipeline example: inside the installed package, or in a source checkout."""
    here = Path(__file__).parent
    for candidate in (
        here / "_examples" / "lab_pipeline",
        here.parents[1] / "examples" / "lab_pipeline",
    ):
        if (candidate / "pipeline.py").is_file():
            return candidate
    raise UsageError("the lab pipeline example is missing from this installation")


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UsageError(f"the demo server exited with code {proc.returncode}; see its log")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise UsageError(f"the demo server did not answer at {url} within {timeout:.0f} s")


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(port: int = 8787, recordings: int = 20, keep_serving: bool = True) -> int:
    """Set up, run the pipeline, serve; returns the pipeline run's exit code."""
    from legato.extras import require
    from legato.settings import get_settings

    require("server", "legato demo")
    require("demo", "legato demo")

    site = DemoSite(get_settings().home / "demo", _free_port(port))
    # Its processes have sessions of their own, so a closed terminal (SIGHUP) or a SIGTERM
    # reaches the demo alone: both stop it the way Ctrl-C does, which stops them in order.
    for name in ("SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    try:
        site.start_server()
        site.start_workers()
        code = site.run_pipeline(recordings)
        live = site.watch_folder()
        site.say_what_next(code, live)
        if not keep_serving:
            return code
        return site.serve()
    except KeyboardInterrupt:
        site.say("\nstopping the demo")
        return 0
    finally:
        site.stop()


class DemoSite:
    """The demo's processes (server, workers), their home, and what the demo tells the user."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.example = example_folder()
        if home.exists():
            shutil.rmtree(home)
        (home / "logs").mkdir(parents=True)
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
        env.update(
            LEGATO_HOME=str(home),
            LEGATO_DATABASE_URL=f"sqlite:///{home / 'legato.db'}",
            LEGATO_RESULT_STORAGE=str(home / "results"),
            LAB_REMOTE_STORAGE=str(home / "remote-storage"),
            LEGATO_SHARE_ROOTS=str(home / "remote-storage"),  # share links give its files
            LAB_DATABASE_URL=f"sqlite:///{home / 'lab-results.db'}",
        )
        self.env = env
        self.remote = {**env, "LEGATO_API_URL": self.url}  # what clients of the server use
        self.legato = [sys.executable, "-m", "legato"]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.server: subprocess.Popen[bytes] | None = None

    @staticmethod
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def spawn(self, name: str, *args: str, remote: bool = True) -> subprocess.Popen[bytes]:
        """A long-running ``legato ...`` process, its output in logs/NAME.log."""
        log = (self.home / "logs" / f"{name}.log").open("ab")
        env = self.remote if remote else self.env
        # A session of its own: a terminal's Ctrl-C reaches the demo alone, which then stops
        # its processes in order (``stop``), instead of all of them at once.
        # Stop signals wait until the process is in self.procs: one arriving in between
        # would leave a process that ``stop`` does not know of (seen with SIGHUP).
        blocked = {signal.SIGINT, signal.SIGTERM} | {getattr(signal, "SIGHUP", signal.SIGINT)}
        masking = hasattr(signal, "pthread_sigmask")
        if masking:
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            proc = subprocess.Popen(
                [*self.legato, *args],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # the child must not inherit the blocked signals: stop() sends it SIGTERM
                preexec_fn=(lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked))
                if masking
                else None,
            )
            self.procs.append(proc)
        finally:
            log.close()
            if masking:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        return proc

    def start_server(self) -> None:
        subprocess.run(
            [*self.legato, "db", "upgrade"], env=self.env, check=True, capture_output=True
        )
        args = ("server", "start", "--port", str(self.port), "--no-auth")
        server = self.spawn("server", *args, remote=False)
        self.server = server
        _wait_healthy(self.url, server)
        self.say(f"server and dashboard at {self.url}  (logs in {self.home / 'logs'})")

    def start_workers(self) -> None:
        from legato.settings import detect_resources

        gpus = detect_resources().get("gpu", 0)
        gpu_capacity = f"gpu={int(gpus)}" if gpus else "gpu=2"
        for pool, option, value in (
            ("io", "--resources", "cpu=2"),
            ("cpu", "--resources", "cpu=2"),
            ("gpu", "--resources", gpu_capacity),
            ("flows", "--concurrency", "4"),
        ):
            self.spawn(f"worker-{pool}", "worker", "start", "--pool", pool, option, value)
        simulated = "" if gpus else ", simulated"
        self.say(f"workers: io, cpu, gpu ({gpu_capacity}{simulated}), flows")

    def run_pipeline(self, recordings: int) -> int:
        """Generate recordings and run the pipeline over them; its exit code."""
        generate = self._generator()
        incoming = self.home / "incoming"
        generate(incoming, recordings, noisy=(min(7, recordings - 1),))  # one for a person
        self.say(f"{recordings} recordings generated in {incoming}")
        flow = f"{self.example / 'pipeline.py'}:lab_pipeline"
        run = subprocess.run(
            [*self.legato, "run", flow, "-p", f"incoming={incoming}"], env=self.remote
        )
        return run.returncode

    def watch_folder(self) -> Path:
        """From now on recordings start the pipeline by themselves: a file trigger on a
        folder, with two recordings dropped in it at once."""
        live = self.home / "incoming-live"
        live.mkdir()
        subprocess.run(
            [
                *self.legato,
                *("deploy", f"{self.example / 'pipeline.py'}:process_recording"),
                *("--name", "lab-recording", "--pool", "flows"),
                *("--on-new-files", f"{live}/*.mp4", "--settle", "1"),
            ],
            env=self.remote,
            check=True,
            capture_output=True,
        )
        self._generator()(live, 2, noisy=(), seed=100, prefix="live")
        return live

    def say_what_next(self, code: int, live: Path) -> None:
        # The command as this shell can type it (in a fresh clone it lives in .venv/bin).
        here = Path(sys.executable).parent / "legato"
        cli = "legato" if shutil.which("legato") == str(here) or not here.exists() else str(here)
        prefix = f"LEGATO_API_URL={self.url} {cli}"
        say = self.say
        say("")
        say(f"Recordings dropped in {live} now start the pipeline by themselves (a file")
        say("trigger; two were just dropped there). Add more with:")
        say(f"  python {self.example / 'generate.py'} {live} 3")
        say(f"Dashboard:   {self.url}")
        if code == 3:
            say("One recording's QC is doubtful and waits for a person. Answer it in the dashboard")
            say(f"(Questions page), or here:  {prefix} asks ls")
            say(f"                            {prefix} answer RUN_ID yes")
            say("The answered run goes back to the `flows` pool and finishes on its worker.")
        say(f"Look around:  {prefix} runs ls   |   {prefix} runs show RUN_ID")

    def serve(self) -> int:
        """Until Ctrl-C (0), or until a demo process stops by itself (1)."""
        self.say("Serving until Ctrl-C.")
        while all(p.poll() is None for p in self.procs):
            time.sleep(1.0)
        self.say("a demo process stopped unexpectedly; see the logs in " + str(self.home / "logs"))
        return 1

    def stop(self) -> None:
        """Workers first (each drains and says goodbye to the server), then the server: a
        worker whose server went first would retry it for a while before giving up."""
        workers = [p for p in self.procs if p is not self.server]
        for group in (workers, [self.server] if self.server is not None else []):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 10
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def _generator(self) -> Any:
        if str(self.example) not in sys.path:
            sys.path.insert(0, str(self.example))
        from generate import generate  # type: ignore[import-not-found]

        return generate
