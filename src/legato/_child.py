"""Entry point of a task's child process: read the call from stdin, run it, write the outcome.

Run as ``python -m legato._child RESULT_PATH``; see ``executors.run_in_child``.
"""

from __future__ import annotations

import os
import sys


def _die_with_parent() -> None:
    """Linux: be killed if the process that started us dies (a worker killed with -9 must not
    leave its task running on, to race the attempt that replaces it)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent is already gone
        os._exit(1)


def run_payload(payload: bytes, out_path: str, *, add_path: bool = False) -> None:
    """Run the pickled call and write its outcome (value, error, logs, artifacts) to
    ``out_path`` atomically: a killed child leaves no half result. ``add_path``: keep this
    interpreter's own path and add the parent's (an engine's job, which may run on another
    machine or image, where the parent's path alone would not find even the standard
    library)."""
    import cloudpickle

    from legato import logs
    from legato._calls import unpack
    from legato.context import RunContext, current_run
    from legato.errors import CallNotLoadable

    records: list[object] = []
    artifacts: list[object] = []
    value: object = None
    error: BaseException | None = None
    try:
        fn, args, kwargs, context = unpack(payload, add_path=add_path)
    except CallNotLoadable as exc:
        error = exc
    else:
        logs.install(context.pop("log_level", "INFO"))
        if context.pop("capture_output", False):
            logs.capture_output()
        current_run.set(
            RunContext(emit_log=records.append, emit_artifact=artifacts.append, **context)
        )
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # shipped back to the engine, which decides on retries
            error = exc
    try:
        data = cloudpickle.dumps((value, error, records, artifacts))
    except Exception as exc:
        from legato.errors import SerializationError

        failure = SerializationError(f"the task's result cannot be sent back: {exc}")
        data = cloudpickle.dumps((None, failure, records, artifacts))
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out_path)
    sys.stdout.flush()
    sys.stderr.flush()


def main() -> None:
    _die_with_parent()
    run_payload(sys.stdin.buffer.read(), sys.argv[1])
    os._exit(0)


if __name__ == "__main__":
    main()
