"""Pure functions for the engine's policies: retry delays, jitter, cache keys (which
attempt comes next is decided in ``legato.attempts``)."""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

RetryDelay = float | Sequence[float] | None


def retry_delay(delays: RetryDelay, attempt: int, jitter: float = 0.0, rng: Any = random) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after attempt ``attempt`` (1-based) failed.

    A list gives one delay per retry; its last entry repeats. ``jitter`` (0..1) spreads the
    delay uniformly over ``delay * (1 ± jitter)`` so many failing tasks do not retry at once.
    """
    if delays is None:
        base = 0.0
    elif isinstance(delays, int | float):
        base = float(delays)
    else:
        seq = list(delays)
        base = float(seq[min(attempt - 1, len(seq) - 1)]) if seq else 0.0
    if jitter and base:
        base *= 1 + jitter * (2 * rng.random() - 1)
    return max(base, 0.0)


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """A hash of a function's code: its source when available, else its bytecode."""
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code is not None else repr(fn)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def inputs_fingerprint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """A stable hash of call inputs, or None when they cannot be hashed stably."""
    try:
        text = json.dumps([list(args), kwargs], sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        try:
            import cloudpickle

            data = cloudpickle.dumps((args, sorted(kwargs.items())))
        except Exception:
            return None
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(
    task_name: str, code: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """The default cache key: same task, same code, same inputs."""
    inputs = inputs_fingerprint(args, kwargs)
    if inputs is None:
        return None
    return hashlib.sha256(f"{task_name}\0{code}\0{inputs}".encode()).hexdigest()
