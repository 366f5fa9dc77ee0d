"""How long `make demo` takes from a fresh clone to a dashboard with 20 recordings in flight
(issue 18): clone this repository's HEAD into a temporary folder, run `make demo` there (it
makes its virtualenv and installs the `demo` extra), and time until the dashboard answers and
until 20 recordings' runs exist on it. Then stop the demo with Ctrl-C, as a person would.

    python3 bench/demo_start.py [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _get(url: str) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as got:
            return json.loads(got.read())
    except (OSError, ValueError):
        return None


def once(recordings: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="demo-start-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(tmp / "home")
    env["UV_NO_CACHE"] = "1"  # as on a new machine: every wheel downloaded
    start = time.monotonic()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp / "clone")], check=True)
    args = f"DEMO_ARGS=--port {port} --recordings {recordings}"
    with (tmp / "demo.log").open("w") as log:
        demo = subprocess.Popen(
            ["make", "demo", args], cwd=tmp / "clone", env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    found: dict[str, float] = {}
    try:
        while "in_flight_s" not in found:
            if demo.poll() is not None:
                raise SystemExit(f"make demo exited early; see {tmp / 'demo.log'}")
            if "dashboard_s" not in found and _get(f"{base}/health") is not None:
                found["dashboard_s"] = round(time.monotonic() - start, 1)
            runs = _get(f"{base}/api/v1/flow-runs?flow=process_recording&limit=200")
            if isinstance(runs, list) and len(runs) >= recordings:
                found["in_flight_s"] = round(time.monotonic() - start, 1)
            time.sleep(0.25)
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--recordings", type=int, default=20)
    args = parser.parse_args()
    for _ in range(args.reps):
        print(json.dumps(once(args.recordings)), flush=True)


if __name__ == "__main__":
    main()
