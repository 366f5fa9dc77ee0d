"""Load a flow from ``FILE.py:FLOW`` or ``package.module:FLOW`` (the CLI, resume)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from legato.errors import FlowNotFound, UsageError


def split_ref(ref: str) -> tuple[str, str | None]:
    """``path/to/file.py:flow`` -> (path, flow); the flow part is optional."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or "/" in name or name.endswith(".py"):
        return ref, None
    return where, name or None


def load_module(where: str) -> Any:
    """Import a file (by path) or a module (by dotted name)."""
    if where.endswith(".py") or "/" in where or Path(where).is_file():
        path = Path(where).resolve()
        if not path.is_file():
            raise FlowNotFound(f"no such file: {where}")
        name = "legato_flows_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FlowNotFound(f"cannot load {where} as Python")
        module = importlib.util.module_from_spec(spec)
        module.__legato_loaded__ = True  # type: ignore[attr-defined]  # see Flow.source
        sys.modules[name] = module
        # Like `python FILE.py`: the file's folder is importable (its helper modules).
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        _register_by_value(module)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise UsageError(f"cannot import {where}: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise FlowNotFound(f"cannot import module {where!r}: {exc}") from exc
    except Exception as exc:
        raise UsageError(f"cannot import {where}: {type(exc).__name__}: {exc}") from exc


def _register_by_value(module: Any) -> None:
    # A module loaded from a path cannot be imported by name in a child process, so its
    # functions travel by value.
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def load_flow(ref: str) -> Any:
    """The Flow object named by ``FILE.py:FLOW`` (or the only flow in the file)."""
    from legato.api import Flow

    where, name = split_ref(ref)
    module = load_module(where)
    flows = {k: v for k, v in vars(module).items() if isinstance(v, Flow)}
    if name is None:
        if len(flows) == 1:
            return next(iter(flows.values()))
        found = ", ".join(sorted(flows)) or "none"
        raise FlowNotFound(f"name the flow as {where}:FLOW (flows in the file: {found})")
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if obj is None:
        found = ", ".join(sorted(flows)) or "none"
        raise FlowNotFound(f"{where} has no flow named {name!r} (flows in the file: {found})")
    if not isinstance(obj, Flow):
        raise FlowNotFound(f"{where}:{name} is not a flow (decorate the function with @flow)")
    return obj


def code_ref(obj: Any) -> str | None:
    """Where a flow or task can be loaded from in another process: ``/abs/file.py:qualname``
    for code loaded from a file (or run as ``python file.py``), else ``module:qualname``."""
    fn = getattr(obj, "fn", obj)
    module = sys.modules.get(fn.__module__)
    path = getattr(module, "__file__", None)
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", None))
    if qualname is None or "<locals>" in qualname:
        return None  # defined inside a function: no other process can find it
    if fn.__module__ == "__main__" or getattr(module, "__legato_loaded__", False):
        return f"{Path(path).resolve()}:{qualname}" if path else None
    return f"{fn.__module__}:{qualname}"


_loaded: dict[str, Any] = {}


def load_ref(ref: str) -> Any:
    """The object a ``code_ref`` names (modules are loaded once per process)."""
    where, name = split_ref(ref)
    if name is None:
        raise FlowNotFound(f"{ref!r} does not name an object (expected FILE.py:NAME)")
    module = _loaded.get(where)
    if module is None:
        module = _loaded[where] = load_module(where)
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise FlowNotFound(f"{where} has no {name!r}")
    return obj
