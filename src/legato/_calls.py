"""A task call as it travels to a child process (fresh or warm): the parent's ``sys.path``
first, then the pickled call, so the child puts the path in place before unpickling the
function. A function loaded from a file travels by value, but the helper modules it imports
travel by name, and the child finds them only on the parent's path (a flow file's folder
is added to it when the file is loaded)."""

from __future__ import annotations

import sys
from typing import Any


def pack(fn: Any, args: Any, kwargs: Any, context: dict[str, Any]) -> bytes:
    import cloudpickle

    call = cloudpickle.dumps((fn, args, kwargs, context))
    return bytes(cloudpickle.dumps((list(sys.path), call)))


def unpack(frame: bytes, *, add_path: bool = False) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The call; raises CallNotLoadable when the function or its arguments cannot be loaded
    here (a module the parent had that this process cannot import, say). The parent's path
    replaces this process's, or with ``add_path`` is added to it (a Dask worker's thread,
    whose own modules must stay importable)."""
    import cloudpickle

    path, call = cloudpickle.loads(frame)
    if add_path:
        sys.path.extend(entry for entry in path if entry and entry not in sys.path)
    elif sys.path != path:
        sys.path[:] = path
    try:
        fn, args, kwargs, context = cloudpickle.loads(call)
    except Exception as exc:
        from legato.errors import CallNotLoadable

        raise CallNotLoadable(
            f"the task cannot be loaded in its process: {type(exc).__name__}: {exc}"
        ) from None
    return fn, args, kwargs, context
