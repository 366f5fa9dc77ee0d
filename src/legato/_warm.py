"""A warm child process: runs a worker's task calls one after another.

Run as ``python -m legato._warm``. Frames on stdin and stdout are a 4-byte big-endian length
and a cloudpickle: a request is a call packed by ``legato._calls``, a reply
``(value, error, logs, artifacts)``. A thread owns stdin: when the worker goes away (killed
with -9 too, since the pipe closes), this process exits at once, even in the middle of a
task, so a task cannot race the attempt that replaces it. What a task prints goes to
stderr (the worker's log), never into the protocol.
"""

from __future__ import annotations

import os
import queue
import struct
import sys
import threading
from typing import IO, Any

_HEADER = struct.Struct(">I")


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = _read_exactly(stream, _HEADER.size)
    if head is None:
        return None
    return _read_exactly(stream, _HEADER.unpack(head)[0])


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _requests(stdin: IO[bytes], inbox: queue.Queue[bytes]) -> None:
    """Hand requests to the main thread; leave the moment the worker's end closes."""
    while True:
        frame = read_frame(stdin)
        if frame is None:
            os._exit(0)
        inbox.put(frame)


def _run(frame: bytes) -> bytes:
    import cloudpickle

    from legato import logs
    from legato._calls import unpack
    from legato.context import RunContext, current_run
    from legato.errors import CallNotLoadable

    records: list[Any] = []
    artifacts: list[Any] = []
    try:
        fn, args, kwargs, context = unpack(frame)
    except CallNotLoadable as exc:
        return bytes(cloudpickle.dumps((None, exc, records, artifacts)))
    logs.install(context.pop("log_level", "INFO"))
    if context.pop("capture_output", False):
        logs.capture_output()
    token = current_run.set(
        RunContext(emit_log=records.append, emit_artifact=artifacts.append, **context)
    )
    value, error = None, None
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # sent back: the worker decides on retries
        error = exc
    finally:
        current_run.reset(token)
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        return bytes(cloudpickle.dumps((value, error, records, artifacts)))
    except Exception as exc:
        from legato.errors import SerializationError

        failure = SerializationError(f"the task's result cannot be sent back: {exc}")
        return bytes(cloudpickle.dumps((None, failure, records, artifacts)))


def main() -> None:
    import cloudpickle  # noqa: F401  (imported before the first request, not during it)

    import legato.context
    import legato.logs  # noqa: F401

    requests = os.fdopen(os.dup(0), "rb")
    protocol = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # a task reading stdin must not read the worker's requests
    os.dup2(2, 1)  # print() in a task goes to stderr
    inbox: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(
        target=_requests, args=(requests, inbox), name="legato-warm-requests", daemon=True
    )
    reader.start()
    while True:
        write_frame(protocol, _run(inbox.get()))


if __name__ == "__main__":
    main()
