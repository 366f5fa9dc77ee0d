"""Results: small JSON values inline in the store; others serialized into result storage.

The stored form of a result is a small JSON dict:
- ``{"v": value}``: the value itself, inline (JSON that round-trips exactly);
- ``{"ref": URL, "ser": "json" | "pickle", "sha256": HEX, "size": N}``: serialized into the
  result storage (a local folder by default, any fsspec URL when configured), with the
  checksum and length of the file's bytes. Stored forms written before checksums were
  recorded (``ref`` and ``ser`` only) are still read.

A result file is written under a temporary name in the same folder and renamed into place,
so a reader never sees half of one, and a failed write (full disk, file-size limit,
permissions) leaves no file behind. Reading checks the file against its size and checksum:
a missing or altered file is a ``ResultMissing`` naming the file, which the engine answers by
running the call again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
from typing import Any

from legato.errors import ResultMissing, ResultStorageError, SerializationError
from legato.models import new_id

_SCALARS = (str, int, float, bool, type(None))

# fsspec protocols of object stores: they cannot rename (``mv`` is a copy and a delete), and
# need not, because an object appears whole or not at all when its single PUT (or multipart
# upload) completes. Results there are written directly under their final name.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss"})

# Errors that mean "no room", where the hint is to free space rather than to fix the URL.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


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
        self._root = ""  # self.url as the filesystem's own path (no protocol)

    def _filesystem(self) -> Any:
        if self._fs is None:
            import fsspec  # imported on first use: most results never leave the database

            self._fs, self._root = fsspec.core.url_to_fs(self.url)
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
            return self._write(text.encode(), ".json", "json", what)
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
        return self._write(data, ".pkl", "pickle", what)

    def decode(self, stored: Any, *, what: str = "stored result") -> Any:
        """The value back from its stored form.

        ``what`` names the value in errors (e.g. ``"result of task run 'upper:3' (id ...)"``).
        A result file that is missing, or whose bytes do not match the size and checksum
        recorded with it, raises ``ResultMissing`` naming the file.
        """
        if not isinstance(stored, dict):
            raise SerializationError(f"not a stored result: {stored!r}")
        if "v" in stored:
            return stored["v"]
        ref = stored["ref"]
        data = self._read(ref, what)
        checked = "sha256" in stored
        if checked:
            _verify(data, stored, ref, what)
        if stored.get("ser") == "json":
            try:
                return json.loads(data)
            except ValueError as exc:
                if checked:
                    raise
                raise _corrupt(what, ref, f"it is not valid JSON ({exc})") from exc
        import cloudpickle

        try:
            return cloudpickle.loads(data)
        except (EOFError, pickle.UnpicklingError) as exc:
            if checked:
                raise
            raise _corrupt(what, ref, f"it cannot be unpickled ({exc})") from exc

    # -- files --------------------------------------------------------------------------

    def _write(self, data: bytes, suffix: str, ser: str, what: str) -> dict[str, Any]:
        """Write ``data`` as a new result file, whole or not at all; its stored form."""
        name = new_id() + suffix
        try:
            fs = self._filesystem()
            target = f"{self._root}/{name}"
            if _is_local(fs):
                _write_local(self._root, target, data)
            else:
                _write_fsspec(fs, self._root, target, data)
        except Exception as exc:
            hint = (
                "The disk is full or a file-size limit was reached: free space, or point "
                "LEGATO_RESULT_STORAGE at another folder or fsspec URL."
                if isinstance(exc, OSError) and exc.errno in _NO_SPACE
                else "Check LEGATO_RESULT_STORAGE points at a writable folder or fsspec URL."
            )
            about = "" if what == "result" else f" ({what})"
            raise ResultStorageError(
                f"cannot write a result to the result storage {self.url!r}{about}: {exc}. {hint}"
            ) from exc
        return {
            "ref": f"{self.url}/{name}",
            "ser": ser,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }

    def _read(self, ref: str, what: str) -> bytes:
        try:
            with self._filesystem().open(ref, "rb") as fh:
                data: bytes = fh.read()
                return data
        except FileNotFoundError as exc:
            raise ResultMissing(
                f"the {what} is missing: its file {ref!r} does not exist "
                "(deleted, or never fully written)"
            ) from exc
        except Exception as exc:
            raise ResultStorageError(f"cannot read the {what} from {ref!r}: {exc}") from exc


def _verify(data: bytes, stored: dict[str, Any], ref: str, what: str) -> None:
    size = stored.get("size")
    if size is not None and len(data) != size:
        raise _corrupt(what, ref, f"it holds {len(data)} bytes, not the {size} recorded")
    digest = hashlib.sha256(data).hexdigest()
    if digest != stored["sha256"]:
        raise _corrupt(what, ref, f"its sha256 is {digest}, not the {stored['sha256']} recorded")


def _corrupt(what: str, ref: str, why: str) -> ResultMissing:
    return ResultMissing(
        f"the {what} is corrupt: its file {ref!r} does not match what was written ({why})"
    )


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _write_local(folder: str, target: str, data: bytes) -> None:
    """Write to a hidden temporary file in the same folder, fsync it, rename it into place
    (atomic on POSIX and Windows); on any failure remove the temporary file."""
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(target)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX; elsewhere a folder cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_fsspec(fs: Any, folder: str, target: str, data: bytes) -> None:
    """Another fsspec filesystem: a temporary path in the same folder, then ``fs.mv``.

    Object stores are written directly: they cannot rename, and a single PUT is atomic
    already (the object exists whole, or not at all). The same holds for a filesystem whose
    ``mv`` is not implemented.
    """
    fs.makedirs(folder, exist_ok=True)
    if _protocols(fs) & _ATOMIC_PUT:
        _put(fs, target, data)
        return
    tmp = f"{folder}/.{target.rsplit('/', 1)[-1]}.tmp"
    _put(fs, tmp, data)
    try:
        fs.mv(tmp, target)
    except NotImplementedError:
        _remove(fs, tmp)
        _put(fs, target, data)
    except BaseException:
        _remove(fs, tmp)
        _remove(fs, target)
        raise


def _put(fs: Any, path: str, data: bytes) -> None:
    """Write one file; on failure remove what was written of it."""
    try:
        with fs.open(path, "wb") as fh:
            fh.write(data)
    except BaseException:
        _remove(fs, path)
        raise


def _remove(fs: Any, path: str) -> None:
    with contextlib.suppress(Exception):
        if fs.exists(path):
            fs.rm(path)
