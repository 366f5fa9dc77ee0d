"""Uploads to remote storage (any fsspec URL): chunked, resumable and checksum-verified.

Each chunk is its own object under ``TARGET.parts/`` named by its index and hash, so an
upload cut short resumes at the first chunk not yet stored, on any filesystem fsspec knows
(object stores cannot append). Once every chunk is there, they are joined into the target,
the target is read back and its SHA-256 compared with the source's, and ``TARGET.sha256``
records it. An upload whose target already carries the source's checksum does nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024


class ChecksumMismatch(RuntimeError):
    """The stored file does not read back as the source (the upload is retried whole)."""


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url)  # type: ignore[no-any-return]


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def upload(
    source: str | Path,
    target: str,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Copy ``source`` to ``target``; what was done: sha256, bytes, chunks sent and skipped."""
    fs, path = _fs(target)
    source = Path(source)
    size = source.stat().st_size
    expected = sha256_of(source)
    if fs.exists(path + ".sha256") and fs.cat_file(path + ".sha256").decode() == expected:
        return {"sha256": expected, "bytes": size, "sent": 0, "skipped": 0, "already": True}
    parts = path + ".parts"
    fs.makedirs(parts, exist_ok=True)  # nothing to make on an object store
    try:
        stored = {Path(p).name for p in fs.ls(parts, detail=False)}
    except FileNotFoundError:  # an object store's prefix with nothing under it yet
        stored = set()
    sent = skipped = 0
    names = []
    with open(source, "rb") as fh:
        index = 0
        while block := fh.read(chunk):
            name = f"{index:06d}-{hashlib.sha256(block).hexdigest()[:16]}"
            names.append(name)
            if name in stored:
                skipped += 1
            else:
                with fs.open(f"{parts}/{name}.tmp", "wb") as out:
                    out.write(block)
                fs.mv(f"{parts}/{name}.tmp", f"{parts}/{name}")  # whole chunks only
                sent += 1
            index += 1
            if progress is not None:
                progress(min(index * chunk, size), size)
    with fs.open(path, "wb") as out:
        for name in names:
            out.write(fs.cat_file(f"{parts}/{name}"))
    got = hashlib.sha256()
    with fs.open(path, "rb") as back:
        while block := back.read(CHUNK):
            got.update(block)
    if got.hexdigest() != expected:
        fs.rm(parts, recursive=True)
        raise ChecksumMismatch(f"{target}: stored {got.hexdigest()[:12]}, source {expected[:12]}")
    with fs.open(path + ".sha256", "wb") as out:
        out.write(expected.encode())
    fs.rm(parts, recursive=True)
    return {"sha256": expected, "bytes": size, "sent": sent, "skipped": skipped, "already": False}


def open_url(url: str, mode: str) -> Any:
    """A file object for any fsspec URL (its folder made when writing)."""
    fs, path = _fs(url)
    if "w" in mode:
        fs.makedirs(fs._parent(path), exist_ok=True)
    return fs.open(path, mode)


def local_copy(url: str, folder: str | Path) -> Path:
    """A local file holding ``url``'s bytes (the file itself when it is already local)."""
    fs, path = _fs(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return Path(path)
    dest = Path(folder) / Path(path).name
    fs.get(path, str(dest))
    return dest


def put_file(local: str | Path, url: str) -> str:
    """Store a local file at ``url``; returns the URL."""
    fs, path = _fs(url)
    fs.makedirs(fs._parent(path), exist_ok=True)
    fs.put(str(local), path)
    return url
