"""Results: small JSON values inline in the store; others serialized into result storage.

The stored form of a result is a small JSON dict:
- ``{"v": value}``: the value itself, inline (JSON that round-trips exactly);
- ``{"ref": URL, "ser": "json" | "pickle"}``: serialized into the result storage (a local
  folder by default, any fsspec URL when configured).
"""

from __future__ import annotations

import json
from typing import Any

from legato.errors import ResultStorageError, SerializationError
from legato.models import new_id

_SCALARS = (str, int, float, bool, type(None))


def _exact_json(value: Any) -> str | None:
    """JSON text for ``value`` if decoding it gives back an equal value of the same shape."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == value else None


class ResultStorage:
    """Writes and reads serialized results under one fsspec URL or folder."""

    def __init__(self, url: str, *, inline_max_bytes: int = 65536, allow_pickle: bool = True):
        self.url = url.rstrip("/")
        self.inline_max_bytes = inline_max_bytes
        self.allow_pickle = allow_pickle
        self._fs: Any = None

    def _filesystem(self) -> Any:
        if self._fs is None:
            import fsspec  # imported on first use: most results never leave the database

            self._fs, _ = fsspec.core.url_to_fs(self.url)
        return self._fs

    def encode(self, value: Any, *, what: str = "result") -> dict[str, Any]:
        """The stored form of ``value``; writes to the result storage when needed."""
        is_nan = isinstance(value, float) and value != value
        short = not isinstance(value, str) or len(value) <= self.inline_max_bytes
        if type(value) in _SCALARS and not is_nan and short:
            return {"v": value}
        text = _exact_json(value)
        if text is not None:
            if len(text) <= self.inline_max_bytes:
                return {"v": value}
            return {"ref": self._write(text.encode(), ".json"), "ser": "json"}
        if not self.allow_pickle:
            raise SerializationError(
                f"the {what} ({type(value).__name__}) is not JSON and pickling is off "
                "(LEGATO_ALLOW_PICKLE=false): return JSON-able data or a reference to a file"
            )
        import cloudpickle

        try:
            data = cloudpickle.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"the {what} of type {type(value).__name__} cannot be serialized: {exc}. "
                "Return data that can be pickled, or write it to a file and return the path."
            ) from exc
        return {"ref": self._write(data, ".pkl"), "ser": "pickle"}

    def decode(self, stored: Any) -> Any:
        """The value back from its stored form."""
        if not isinstance(stored, dict):
            raise SerializationError(f"not a stored result: {stored!r}")
        if "v" in stored:
            return stored["v"]
        data = self._read(stored["ref"])
        if stored.get("ser") == "json":
            return json.loads(data)
        import cloudpickle

        return cloudpickle.loads(data)

    def _write(self, data: bytes, suffix: str) -> str:
        path = f"{self.url}/{new_id()}{suffix}"
        try:
            fs = self._filesystem()
            fs.makedirs(self.url, exist_ok=True)
            with fs.open(path, "wb") as fh:
                fh.write(data)
        except Exception as exc:
            raise ResultStorageError(
                f"cannot write a result to the result storage {self.url!r}: {exc}. "
                "Check LEGATO_RESULT_STORAGE points at a writable folder or fsspec URL."
            ) from exc
        return path

    def _read(self, path: str) -> bytes:
        try:
            with self._filesystem().open(path, "rb") as fh:
                data: bytes = fh.read()
                return data
        except Exception as exc:
            raise ResultStorageError(f"cannot read the stored result {path!r}: {exc}") from exc
