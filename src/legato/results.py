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

A stored form is trusted only as far as where it points: its ``ref`` must name a file directly
in this storage's folder (``url/NAME``), and ``ser`` must be ``json`` or ``pickle``. Anything
else is refused before a byte is read (``ResultRefused``: whoever can write run records could
otherwise point a result at any file or URL), and with ``allow_pickle`` off a pickle is
refused too (``PickleRefused``), on reading as on writing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import posixpath
import re
from typing import Any

from legato.errors import (
    PickleRefused,
    ResultMissing,
    ResultRefused,
    ResultStorageError,
    SerializationError,
)
from legato.models import new_id

_SCALARS = (str, int, float, bool, type(None))

# fsspec protocols of object stores: they cannot rename (``mv`` is a copy and a delete), and
# need not, because an object appears whole or not at all when its single PUT (or multipart
# upload) completes. Results there are written directly under their final name.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss"})

# Errors that mean "no room", where the hint is to free space rather than to fix the URL.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


SERIALIZERS = ("json", "pickle")

# A flow parameter JSON cannot hold is stored as {STORED_PARAMETER: stored form}.
STORED_PARAMETER = "__legato_stored__"

# What a result file is called: Legato writes NEWID.json and NEWID.pkl. A conservative charset
# (no separators, no "..", no query strings an fsspec backend might read) keeps a ref in its
# folder whatever the backend.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _location(url: str) -> tuple[str, str]:
    """(protocol, normalised path) of a folder or fsspec URL, so two spellings of one folder
    (``/r``, ``file:///r``, ``/r/``) compare equal."""
    if "::" in url:  # a chained URL (simplecache::s3://...): compared as written
        return "chain", url.rstrip("/")
    protocol, sep, path = url.partition("://")
    if not sep:
        return "file", os.path.normpath(os.path.abspath(url))
    protocol = protocol.lower()
    if protocol in ("file", "local"):
        return "file", os.path.normpath(os.path.abspath(path or "/"))
    return protocol, posixpath.normpath(path or "/")


def ref_problem(ref: Any, root: str) -> str | None:
    """Why ``ref`` is not a result file directly in the storage at ``root``; None if it is."""
    if not isinstance(ref, str) or not ref:
        return "is not a file reference"
    if "\x00" in ref:
        return "holds a NUL byte"
    folder, sep, name = ref.rpartition("/")
    if not sep or not _FILE_NAME.fullmatch(name):
        return f"does not name a result file (a plain file name in {root!r})"
    if _location(folder) != _location(root):
        return f"is outside the result storage {root!r}"
    return None


def stored_problem(stored: Any, root: str) -> tuple[str, str] | None:
    """(field, why) when ``stored`` is not a stored result of the storage at ``root``: the
    check of ``decode``, for whoever accepts stored forms from elsewhere (the server)."""
    if not isinstance(stored, dict):
        return "", "is not a stored result (an object with v, or ref and ser)"
    if "v" in stored:
        return None
    if "ref" not in stored:
        return "", "is not a stored result (an object with v, or ref and ser)"
    why = ref_problem(stored["ref"], root)
    if why is not None:
        return "ref", why
    if stored.get("ser") not in SERIALIZERS:
        return "ser", f"must be one of {', '.join(SERIALIZERS)}"
    sha = stored.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        return "sha256", "must be 64 lower-case hex digits"
    size = stored.get("size")
    if size is not None and not (type(size) is int and size >= 0):
        return "size", "must be a non-negative integer"
    return None


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
        problem = stored_problem(stored, self.url)
        if problem is not None:
            field, why = problem
            if field == "ref":
                raise ResultRefused(
                    f"the {what} was refused: its reference {stored['ref']!r} {why}; results "
                    "are read only from the result storage (LEGATO_RESULT_STORAGE)"
                )
            shown = repr(stored)[:200]
            raise SerializationError(f"not a stored result ({field or 'value'} {why}): {shown}")
        if "v" in stored:
            return stored["v"]
        ref = stored["ref"]
        if stored["ser"] == "pickle" and not self.allow_pickle:
            # Refused before reading: loading a pickle runs whatever code it names.
            raise PickleRefused(
                f"the {what} is a pickle ({ref!r}) and LEGATO_ALLOW_PICKLE=false: pickles are "
                "not loaded, since loading one runs code. Set LEGATO_ALLOW_PICKLE=true only "
                "where you trust whoever can write the result storage and the run records."
            )
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

    def remove(self, refs: list[str]) -> int:
        """Delete the result files ``refs`` name (retention); refs outside this storage are
        left alone (a row could name any path). Returns how many files were removed."""
        fs = self._filesystem()
        removed = 0
        for ref in dict.fromkeys(refs):
            if ref_problem(ref, self.url) is not None:
                continue
            try:
                fs.rm(ref)
                removed += 1
            except FileNotFoundError:
                continue  # already gone: nothing to do
        return removed

    def usage(self, limit: int = 1_000_000) -> tuple[int, int] | None:
        """(files, bytes) in the storage, counted up to ``limit`` files; None when it cannot
        be listed from here."""
        try:
            fs = self._filesystem()
            if not fs.exists(self._root):
                return 0, 0
            files = total = 0
            for info in fs.ls(self._root, detail=True):
                if info.get("type") == "file":
                    files += 1
                    total += int(info.get("size") or 0)
                    if files >= limit:
                        break
            return files, total
        except Exception:
            return None

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
