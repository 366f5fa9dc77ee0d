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


def run_demo(port: int = 8787, recordings: int = 20, keep_serving: bool = True) -> int:
    """Set up, run the pipeline, serve; returns the pipeline run's exit code."""
    from legato.settings import detect_resources, get_settings

    example = example_folder()
    home = get_settings().home / "demo"
    if home.exists():
        shutil.rmtree(home)
    (home / "logs").mkdir(parents=True)
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(
        LEGATO_HOME=str(home),
        LEGATO_DATABASE_URL=f"sqlite:///{home / 'legato.db'}",
        LEGATO_RESULT_STORAGE=str(home / "results"),
        LAB_REMOTE_STORAGE=str(home / "remote-storage"),
        LAB_DATABASE_URL=f"sqlite:///{home / 'lab-results.db'}",
    )
    legato = [sys.executable, "-m", "legato"]
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        name: str, *args: str, extra: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (home / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*legato, *args], env={**env, **(extra or {})}, stdout=log, stderr=log
        )
        log.close()
        procs.append(proc)
        return proc

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        subprocess.run([*legato, "db", "upgrade"], env=env, check=True, capture_output=True)
        server = spawn("server", "server", "start", "--port", str(port), "--no-auth")
        _wait_healthy(url, server)
        say(f"server and dashboard at {url}  (logs in {home / 'logs'})")
        remote = {"LEGATO_API_URL": url}
        gpus = detect_resources().get("gpu", 0)
        gpu_capacity = f"gpu={int(gpus)}" if gpus else "gpu=2"
        spawn("worker-io", "worker", "start", "--pool", "io", "--resources", "cpu=2", extra=remote)
        spawn(
            "worker-cpu", "worker", "start", "--pool", "cpu", "--resources", "cpu=2", extra=remote
        )
        spawn(
            "worker-gpu",
            "worker",
            "start",
            "--pool",
            "gpu",
            "--resources",
            gpu_capacity,
            extra=remote,
        )
        spawn(
            "worker-flows", "worker", "start", "--pool", "flows", "--concurrency", "4", extra=remote
        )
        say(f"workers: io, cpu, gpu ({gpu_capacity}{'' if gpus else ', simulated'}), flows")
        sys.path.insert(0, str(example))
        from generate import generate  # type: ignore[import-not-found]

        incoming = home / "incoming"
        generate(incoming, recordings, noisy=(7,))
        say(f"{recordings} recordings generated in {incoming}")
        run = subprocess.run(
            [
                *legato,
                "run",
                f"{example / 'pipeline.py'}:lab_pipeline",
                "-p",
                f"incoming={incoming}",
            ],
            env={**env, **remote},
        )
        # From now on recordings start the pipeline by themselves: a file trigger on a folder.
        live = home / "incoming-live"
        live.mkdir()
        subprocess.run(
            [
                *legato,
                "deploy",
                f"{example / 'pipeline.py'}:process_recording",
                "--name",
                "lab-recording",
                "--pool",
                "flows",
                "--on-new-files",
                f"{live}/*.npz",
                "--settle",
                "1",
            ],
            env={**env, **remote},
            check=True,
            capture_output=True,
        )
        generate(live, 2, noisy=(), seed=100, prefix="live")
        # The command as this shell can type it (in a fresh clone it lives in .venv/bin).
        here = Path(sys.executable).parent / "legato"
        cli = "legato" if shutil.which("legato") == str(here) or not here.exists() else str(here)
        prefix = f"LEGATO_API_URL={url} {cli}"
        say("")
        say(f"Recordings dropped in {live} now start the pipeline by themselves (a file")
        say("trigger; two were just dropped there). Add more with:")
        say(f"  python {example / 'generate.py'} {live} 3")
        say(f"Dashboard:   {url}")
        if run.returncode == 3:
            say("One recording's QC is doubtful and waits for a person. Answer it in the dashboard")
            say(f"(Questions page), or here:  {prefix} asks ls")
            say(f"                            {prefix} answer RUN_ID yes")
            say("The answered run goes back to the `flows` pool and finishes on its worker.")
        say(f"Look around:  {prefix} runs ls   |   {prefix} runs show RUN_ID")
        if not keep_serving:
            return run.returncode
        say("Serving until Ctrl-C.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in procs):
            time.sleep(1.0)
        say("a demo process stopped unexpectedly; see the logs in " + str(home / "logs"))
        return 1
    except KeyboardInterrupt:
        say("\nstopping the demo")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
