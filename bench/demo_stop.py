"""How long Ctrl-C takes to stop `legato demo` (issue 22): start the demo with 20
recordings, wait until it serves, send SIGINT to its process group as a terminal does, and
time until it has exited. Prints one figure per rep.

    .venv/bin/python bench/demo_stop.py [--reps 4] [--recordings 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def once(recordings: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="demo-stop-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(home)
    out = home / "demo.log"
    with out.open("w") as log:
        demo = subprocess.Popen(
            [
                *(sys.executable, "-m", "legato", "demo"),
                "--port",
                str(port),
                "--recordings",
                str(recordings),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while "Serving until Ctrl-C." not in out.read_text():
            if demo.poll() is not None:
                raise SystemExit(out.read_text())
            time.sleep(0.2)
        time.sleep(0.5)  # the live folder's two recordings are in flight
        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(300)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--recordings", type=int, default=20)
    args = parser.parse_args()
    took = [once(args.recordings) for _ in range(args.reps)]
    print("Ctrl-C to exit (s): " + ", ".join(f"{t:.2f}" for t in took))


if __name__ == "__main__":
    main()
