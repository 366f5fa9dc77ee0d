"""A warm interpreter that forks `legato` commands on request, for tests that need many
runs of the real CLI, each in a process that can be killed, with a chosen PYTHONHASHSEED.

Start it with the hash seed in its environment; send one JSON line per command:
``{"argv": [...], "env": {...}, "out": PATH}``. It forks, the child runs ``legato ARGV``
with ``env`` added and its output in ``out``; the zygote answers ``{"status": N}``: the exit
code, or 128 + the signal that ended the child. The zygote imports Legato and the modules
named on its command line up front, and starts no thread, so forking it is safe and cheap.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback


def _child(request: dict[str, object]) -> None:
    fd = os.open(str(request["out"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(request["env"])  # type: ignore[arg-type]
    code = 0
    try:
        from legato.cli import main

        main(list(request["argv"]))  # type: ignore[call-overload]
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    for name in sys.argv[1:]:
        importlib.import_module(name)
    import legato.cli  # noqa: F401  (warm: the children start from here)

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"status": code if code >= 0 else 128 - code}), flush=True)


if __name__ == "__main__":
    main()
