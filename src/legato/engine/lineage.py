"""Lineage from values: a task called with a value another task returned (``.result()``, or
a plain call's return value) depends on that task, as if it had been given the future.

Values are matched by identity, as Prefect does, and only values identity can tell apart:
not None, booleans, numbers (numpy's scalars too), enum members, classes, functions, modules,
or strings and bytes shorter than 16 or that read like identifiers (Python shares one object
for equal constants, so two unrelated calls could return the same one). A returned list,
tuple or dict is remembered with its first items (one level), so ``a, b = split()`` gives
both. A value the task was given as an argument and handed back is not its product.

What is remembered is bounded: the newest ``MAX`` values, and at most ``HELD_MAX`` bytes held
strongly. An object that supports weak references is held weakly; anything else (str, bytes,
list, dict...) strongly, so its id cannot be reused while it is remembered, and only while it
is small (``HELD_ONE``). A value forgotten, too big to hold, or rebuilt (``{**a, **b}``)
gives no edge: the call records fewer dependencies, never a wrong one.
"""

from __future__ import annotations

import enum
import sys
import threading
import types
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

MAX = 4096
SHORT = 16  # strings and bytes shorter than this are not told apart by identity
ITEMS = 64  # items of a container looked at: the hot path stays short
HELD_ONE = 64 * 1024  # the largest value (shallow size) held strongly
HELD_MAX = 16 * 2**20  # all values held strongly, together
_SHARED = (
    type(None),
    bool,
    int,
    float,
    complex,
    enum.Enum,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.ModuleType,
    type(Ellipsis),
)


def _distinct(value: Any) -> bool:
    """Whether identity tells this value apart from equal values made elsewhere."""
    if isinstance(value, _SHARED):
        return False
    if _np_scalar(value):
        return False  # numpy's scalars (np.True_, np.float64(1.0)) are shared or cached
    if isinstance(value, str):
        return len(value) >= SHORT and not value.isidentifier()  # identifiers are interned
    if isinstance(value, bytes):
        return len(value) >= SHORT
    # the empty tuple and frozenset are singletons
    return not (isinstance(value, tuple | frozenset) and not value)


def _np_scalar(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.generic)


def _parts(value: Any) -> Iterator[Any]:
    """``value`` and, for a list, tuple, set or dict, its first items (dict values)."""
    yield value
    if isinstance(value, list | tuple | set | frozenset):
        items: Any = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for i, item in enumerate(items):
        if i == ITEMS:
            break
        yield item


def _shallow_size(value: Any) -> int:
    size = sys.getsizeof(value, HELD_ONE)
    if isinstance(value, list | tuple | set | frozenset | dict):
        for part in _parts(value):
            if part is not value:
                size += sys.getsizeof(part, HELD_ONE)
    return size


class Lineage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id -> (a weak or strong reference, whether weak, task run id, bytes held)
        self._by_id: OrderedDict[int, tuple[Any, bool, str, int]] = OrderedDict()
        self._held = 0

    def produced(self, value: Any, task_run_id: str, given: Any = ()) -> None:
        """``task_run_id`` returned ``value``; ``given`` holds its arguments (what it only
        handed back is not its product)."""
        if not task_run_id:
            return
        inputs = {id(p) for arg in given for p in _parts(arg)}
        with self._lock:
            for part in _parts(value):
                if id(part) in inputs or not _distinct(part):
                    continue
                try:
                    held: Any = weakref.ref(part)
                    weak, size = True, 0
                except TypeError:  # str, list, dict...: held, so the id stays its own
                    size = _shallow_size(part)
                    if size > HELD_ONE:
                        continue  # too big to keep alive for an edge
                    held, weak = part, False
                self._forget(id(part))
                self._by_id[id(part)] = (held, weak, task_run_id, size)
                self._held += size
            while len(self._by_id) > MAX or self._held > HELD_MAX:
                self._forget(next(iter(self._by_id)))

    def _forget(self, key: int) -> None:
        old = self._by_id.pop(key, None)
        if old is not None:
            self._held -= old[3]

    def _source(self, value: Any) -> str | None:
        found = self._by_id.get(id(value))
        if found is None:
            return None
        held, weak, task_run_id, _size = found
        alive = held() if weak else held
        return task_run_id if alive is value else None

    def sources(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """The task runs that returned values among the arguments (also among the first
        items of lists, tuples, sets and dict values), first seen first."""
        found: list[str] = []
        with self._lock:
            if not self._by_id:
                return found
            for arg in (*args, *kwargs.values()):
                for part in _parts(arg):
                    source = self._source(part)
                    if source is not None and source not in found:
                        found.append(source)
        return found
