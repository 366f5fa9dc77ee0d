"""Timestamps as people and scripts see them, whatever is stored.

Every stored time is epoch seconds (UTC). The API refuses values outside ``0`` to
``MAX_TIMESTAMP`` (the end of year 9999), but a row written by other means may hold anything a
float can (``1e308``, ``inf``, negative); these helpers show such a value as not a time instead
of raising, so one bad row cannot break a page or a listing for everyone.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z: the last second datetime can show


def is_timestamp(ts: Any) -> bool:
    """True for a finite number of epoch seconds from 1970 to the end of year 9999."""
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return False
    return math.isfinite(ts) and 0 <= ts <= MAX_TIMESTAMP


def _invalid(ts: Any) -> str:
    return f"invalid time ({ts!r})"


def utc_text(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``ts`` in UTC as ``fmt``; ``-`` for None, ``invalid time (...)`` for a value that is
    not a time."""
    if ts is None:
        return "-"
    if not is_timestamp(ts):
        return _invalid(ts)
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)


def local_text(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``ts`` in this machine's time zone, as ``utc_text`` otherwise."""
    if ts is None:
        return "-"
    if not is_timestamp(ts):
        return _invalid(ts)
    try:
        return dt.datetime.fromtimestamp(ts).strftime(fmt)
    except (OverflowError, ValueError, OSError):  # a zone east of UTC past year 9999
        return utc_text(ts, fmt)


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds (``--json``); None for None; a value that is not a time
    comes out as ``invalid time (...)``, still a string, so scripts see it rather than fail."""
    if ts is None:
        return None
    if not is_timestamp(ts):
        return _invalid(ts)
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def duration(start: float | None, end: float | None, now: float | None = None) -> str:
    """How long from ``start`` to ``end`` (or to now, while running): ``-`` when it has not
    started, ``?`` when either end is not a time."""
    if start is None:
        return "-"
    stop = end if end is not None else (time.time() if now is None else now)
    if not (is_timestamp(start) and is_timestamp(stop)):
        return "?"
    seconds = stop - start
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def span_seconds(text: str) -> float | None:
    """Seconds in ``30m``, ``12h``, ``90d``, ``2w`` (or plain seconds); None if ``text`` is
    not such a span."""
    import re

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if found is None:
        return None
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]
