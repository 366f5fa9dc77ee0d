"""Input fingerprints: stable hashes of a call's identity and of each of its arguments.

Replay matches a re-run's calls to recorded ones by these, so a call is never served a result
computed from other inputs, whatever order the calls come in. A value counts by a canonical
serialization: canonical JSON where it is JSON-like (dict keys sorted, sets sorted, so
``PYTHONHASHSEED`` does not matter), a few common types by what they hold (paths, bytes,
dates, enums, dataclasses, pydantic models, NumPy arrays), anything else by its cloudpickle
bytes. A future counts by the fingerprint of the call that produces it, so a changed input
upstream changes every fingerprint downstream. A value none of these can serialize (a lock, a
socket, a generator) makes the call unfingerprintable: it is matched by position only.

Hashing reads every byte of every argument; large data should be passed by reference (a
path or URL), which is also what result storage wants.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import math
import pathlib
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_PLAIN = (str, int, bool, type(None))
_LONG_TEXT = 4096  # longer strings are hashed as bytes, not escaped into JSON first


class Unfingerprintable(Exception):
    """A value that no canonical form or serializer can turn into bytes."""


def _digest(data: bytes | memoryview, size: int = 16) -> str:
    # SHA-256, truncated: CPUs hash it in hardware, twice as fast as BLAKE2b on large data.
    return hashlib.sha256(data).hexdigest()[: 2 * size]


def _canonical(value: Any, futures: Callable[[Any], str | None]) -> Any:
    """A JSON-able canonical form of ``value`` (tagged where JSON would be ambiguous)."""
    kind = type(value)
    if kind in _PLAIN:
        if kind is str and len(value) > _LONG_TEXT:
            return {"~text": _digest(value.encode("utf-8", "surrogatepass"))}
        return value
    if kind is float:
        return value if math.isfinite(value) else {"~float": repr(value)}
    if kind is list:
        if all(type(v) in _PLAIN for v in value):  # already canonical: skip the recursion
            return value
        return [_canonical(v, futures) for v in value]
    if kind is tuple:
        return {"~tuple": [_canonical(v, futures) for v in value]}
    if kind is dict:
        if all(type(k) is str for k in value):
            return {"~dict": {k: _canonical(v, futures) for k, v in value.items()}}
        pairs = [[_canonical(k, futures), _canonical(v, futures)] for k, v in value.items()]
        return {"~pairs": sorted(pairs, key=_dumps)}
    if kind is set or kind is frozenset:
        return {"~set": sorted((_canonical(v, futures) for v in value), key=_dumps)}
    fp = futures(value)
    if fp is not None:
        return {"~future": fp}
    return _canonical_object(value, futures)


def _qualname(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _canonical_object(value: Any, futures: Callable[[Any], str | None]) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"~bytes": _digest(memoryview(value).cast("B"))}
    if isinstance(value, pathlib.PurePath):
        return {"~path": str(value)}
    if isinstance(value, enum.Enum):
        return {"~enum": [_qualname(value), _canonical(value.value, futures)]}
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return {"~time": [_qualname(value), value.isoformat()]}
    if isinstance(value, _dt.timedelta):
        return {"~timedelta": value.total_seconds()}
    if isinstance(value, Decimal | uuid.UUID):
        return {"~" + type(value).__name__: str(value)}
    if isinstance(value, int | str | float):  # subclasses (IntEnum is handled above)
        return {"~" + _qualname(value): _canonical(type(value).__mro__[1](value), futures)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _canonical(getattr(value, f.name), futures) for f in dataclasses.fields(value)
        }
        return {"~dataclass": [_qualname(value), fields]}
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        dumped = value.model_dump(mode="json", warnings=False)
        return {"~model": [_qualname(value), _canonical(dumped, futures)]}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray) and value.dtype != object:
            data = memoryview(numpy.ascontiguousarray(value)).cast("B")  # no copy
            return {"~ndarray": [value.dtype.str, list(value.shape), _digest(data)]}
        if isinstance(value, numpy.generic):
            return {"~numpy": [value.dtype.str, _canonical(value.item(), futures)]}
    try:
        import cloudpickle

        data = cloudpickle.dumps(value)
    except Exception as exc:
        raise Unfingerprintable(str(exc)) from None
    return {"~pickle": [_qualname(value), _digest(data)]}


def value_hash(value: Any, futures: Callable[[Any], str | None]) -> str:
    """The hash of one argument. ``futures(v)`` gives the fingerprint a future stands for
    (None for a value that is not a future). Raises Unfingerprintable."""
    if type(value) is int:
        return _digest(b"\0i%d" % value, 8)
    if type(value) is str and len(value) <= _LONG_TEXT:
        # The common case, fast; the prefix keeps it apart from any JSON text (1 vs "1").
        return _digest(b"\0s" + value.encode("utf-8", "surrogatepass"), 8)
    upstream = futures(value)
    if upstream is not None:  # a future argument, the pipeline's common case
        return _digest(b"\0f" + upstream.encode(), 8)
    try:
        return _digest(_dumps(_canonical(value, futures)).encode("utf-8", "surrogatepass"), 8)
    except RecursionError:
        raise Unfingerprintable("nested too deeply") from None


def call_fingerprint(identity: str, hashes: dict[str, str]) -> str:
    """The fingerprint of a call: its task's identity and every argument's hash."""
    if len(hashes) == 1:
        ((k, v),) = hashes.items()
        text = f"{identity}\0{k}={v}"
    else:
        text = identity + "\0" + "\0".join(f"{k}={hashes[k]}" for k in sorted(hashes))
    return _digest(text.encode("utf-8", "surrogatepass"))


def question_fingerprint(prompt: str, schema: dict[str, Any]) -> str:
    """What tells one ``ask()`` from another: its prompt and its answer's schema."""
    return call_fingerprint(
        "ask",
        {"prompt": value_hash(prompt, _no_futures), "schema": value_hash(schema, _no_futures)},
    )


def _no_futures(value: Any) -> None:
    return None


def argument_names(params: tuple[str, ...], args: tuple[Any, ...]) -> list[str]:
    """Names for positional arguments: the parameter each binds to, else ``*args[i]``."""
    return [params[i] if i < len(params) else f"*args[{i}]" for i in range(len(args))]


def differing(recorded: dict[str, str] | None, now: dict[str, str]) -> list[str]:
    """The argument names whose hashes differ between a record and a call."""
    if recorded is None:
        return sorted(now)
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
