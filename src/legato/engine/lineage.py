"""Lineage from values: a task called with a value another task returned (``.result()``, or
a plain call's return value) depends on that task, as if it had been given the future.

Values are matched by identity, as Prefect does, and only values identity can tell apart: not
None, booleans, numbers, or strings and bytes shorter than 16 (Python shares one object for
equal small constants, so two unrelated calls could return the same one). A returned list,
tuple or dict is remembered with its items (one level), so ``a, b = split()`` gives both.

What is remembered is bounded (the newest ``MAX`` values): an object that supports weak
references is held weakly, anything else strongly so its id cannot be reused while it is
remembered. A value forgotten, or rebuilt (``{**a, **b}``), gives no edge: the call simply
records fewer dependencies, never a wrong one.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

MAX = 4096
SHORT = 16  # strings and bytes shorter than this are not told apart by identity
ITEMS = 1000  # items of a returned container remembered


def _distinct(value: Any) -> bool:
    """Whether identity tells this value apart from equal values made elsewhere."""
    if value is None or isinstance(value, bool | int | float | complex):
        return False
    if isinstance(value, str | bytes):
        return len(value) >= SHORT
    # the empty tuple and frozenset are singletons
    return not (isinstance(value, tuple | frozenset) and not value)


def _parts(value: Any) -> Iterator[Any]:
    """``value`` and, for a list, tuple, set or dict, its first items (dict values)."""
    yield value
    if isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            if i == ITEMS:
                break
            yield item
    elif isinstance(value, dict):
        for i, item in enumerate(value.values()):
            if i == ITEMS:
                break
            yield item


class Lineage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: OrderedDict[int, tuple[Any, bool, str]] = OrderedDict()  # id -> ref

    def produced(self, value: Any, task_run_id: str) -> None:
        """``task_run_id`` returned ``value``."""
        if not task_run_id:
            return
        with self._lock:
            for part in _parts(value):
                if not _distinct(part):
                    continue
                try:
                    held: Any = weakref.ref(part)
                    weak = True
                except TypeError:  # str, list, dict...: held, so the id stays its own
                    held, weak = part, False
                self._by_id[id(part)] = (held, weak, task_run_id)
                self._by_id.move_to_end(id(part))
            while len(self._by_id) > MAX:
                self._by_id.popitem(last=False)

    def _source(self, value: Any) -> str | None:
        found = self._by_id.get(id(value))
        if found is None:
            return None
        held, weak, task_run_id = found
        alive = held() if weak else held
        return task_run_id if alive is value else None

    def sources(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """The task runs that returned values among the arguments (also inside lists,
        tuples, sets and dict values, as futures are found), first seen first."""
        found: list[str] = []
        with self._lock:
            if not self._by_id:
                return found
            for arg in (*args, *kwargs.values()):
                for part in _parts(arg):
                    if _distinct(part):
                        source = self._source(part)
                        if source is not None and source not in found:
                            found.append(source)
        return found
