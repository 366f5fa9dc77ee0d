"""Reports attached to the current run: ``artifact.markdown/table/image/link``.

Outside a run these do nothing and return None, so tasks stay testable as plain functions.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from legato.context import current_run
from legato.errors import UsageError
from legato.models import Artifact, new_id, now

MAX_IMAGE_BYTES = 5 * 2**20


def _attach(kind: str, data: Any, title: str | None) -> str | None:
    ctx = current_run.get()
    if ctx is None:
        return None
    art = Artifact(new_id(), ctx.flow_run_id, ctx.task_run_id, kind, data, title, now())
    ctx.emit_artifact(art)
    return art.id


def markdown(text: str, title: str | None = None) -> str | None:
    """Attach a Markdown report; returns the artifact id (None outside a run)."""
    if not isinstance(text, str):
        raise UsageError(f"artifact.markdown expects a str, got {type(text).__name__}")
    return _attach("markdown", {"markdown": text}, title)


def table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> str | None:
    """Attach a table: a list of dicts (columns from their keys) or of lists (give columns)."""
    items: list[Any] = list(rows)
    if items and isinstance(items[0], Mapping):
        cols = list(columns or dict.fromkeys(k for r in items for k in r))
        body = [[_cell(r.get(c)) for c in cols] for r in items]
    else:
        width = max((len(r) for r in items), default=0)
        cols = list(columns or [f"col{i + 1}" for i in range(width)])
        body = [[_cell(v) for v in r] for r in items]
    return _attach("table", {"columns": cols, "rows": body}, title)


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def image(
    source: str | Path | bytes, title: str | None = None, mime: str | None = None
) -> str | None:
    """Attach an image (a file path or the bytes of a PNG/JPEG/SVG/GIF)."""
    if isinstance(source, bytes):
        data = source
        mime = mime or _sniff(data)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"artifact.image cannot read {str(path)!r}: {exc.strerror}") from None
        mime = mime or mimetypes.guess_type(path.name)[0] or _sniff(data)
    if len(data) > MAX_IMAGE_BYTES:
        raise UsageError(
            f"artifact.image: {len(data)} bytes is over the {MAX_IMAGE_BYTES} byte limit; "
            "attach a smaller image, or a link to the full one"
        )
    return _attach("image", {"mime": mime, "base64": base64.b64encode(data).decode()}, title)


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data.lstrip().startswith(b"<svg") or b"<svg" in data[:200]:
        return "image/svg+xml"
    return "application/octet-stream"


def link(url: str, title: str | None = None) -> str | None:
    """Attach a link (to a report, a dataset, a share)."""
    return _attach("link", {"url": str(url)}, title)


__all__ = ["image", "link", "markdown", "table"]
