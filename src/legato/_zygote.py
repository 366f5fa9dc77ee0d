"""The fork server: one clean process that forks a child per task run.

Starting Python for every task costs tens of milliseconds of CPU; forking this small,
single-threaded process costs about one. Run as ``python -m legato._zygote``; it reads one
JSON request per line on stdin (``{"id", "payload", "out", "env"}``), forks a child that
becomes its own session (so its whole process group can be killed), and writes
``{"id", "pid"}`` when started and ``{"exit", "status"}`` when a child ends.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys


def _child(request: dict[str, object], protocol: int) -> None:
    from legato._child import _die_with_parent, run_payload

    try:
        os.setsid()
        _die_with_parent()  # the fork server's only thread forked us: dies with it
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(protocol)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the task must not read the fork server's requests
        env = request.get("env")
        if isinstance(env, dict):
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in env.items()})
        with open(str(request["payload"]), "rb") as fh:
            payload = fh.read()
        run_payload(payload, str(request["out"]))
    finally:
        os._exit(0)  # never return into the fork server's loop


def main() -> None:
    # No PDEATHSIG here: it would fire when the thread that started us ends. The parent's
    # death closes our stdin instead, and we exit, taking our children with us.
    import cloudpickle  # noqa: F401  (imported once here, inherited by every child)

    import legato.context
    import legato.logs  # noqa: F401

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: os.write(wake_w, b"x"))
    stdin = sys.stdin.buffer
    # Replies go on a private copy of stdout; fd 1 becomes stderr, so what tasks print goes
    # to the worker's log, never into the protocol.
    protocol = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(protocol, "w", buffering=1)

    def send(message: dict[str, object]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    buffer = b""
    while True:
        try:
            ready, _, _ = select.select([stdin.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                send({"exit": pid, "status": os.waitstatus_to_exitcode(status)})
        if stdin.fileno() in ready:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                return  # the parent closed the pipe: it is gone or done
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, protocol)
                send({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    main()
