"""Bytes out of a share: a file or a byte range of it, and a zip of many, each streamed in
1 MiB chunks so a multi-GB recording never sits in the server's memory.

A single ``Range: bytes=...`` is answered with that part (206); a header this module cannot
satisfy (past the end) is a 416; several ranges at once are answered with the whole file
(200), which RFC 9110 allows, rather than a multipart body no download tool needs. The zip is
written by the standard library onto a sink that cannot seek (``zipfile`` then puts each
member's sizes and checksum after its data), stored without compression (recordings do not
compress, and the server's cores have other work) and in ZIP64 form (members over 4 GiB).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from legato.sharing.files import SharedFile, open_file

CHUNK = 2**20
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")  # 18 digits: past any file's size


class Unsatisfiable(Exception):
    """A Range no byte of the file satisfies (HTTP 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single Range header over a file of ``size`` bytes; None to
    send the whole file (no header, several ranges, one this server does not read, or an
    invalid one such as ``bytes=5-2``, which RFC 9110 says to ignore)."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if first and last and int(last) < int(first):
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size:
        raise Unsatisfiable
    end = size - 1 if not last else min(int(last), size - 1)
    return start, end


@dataclass
class Meter:
    """How many bytes have gone out (read by whoever logs the access when the stream ends)."""

    sent: int = 0


def file_chunks(handle: Any, first: int, last: int, meter: Meter) -> Iterator[bytes]:
    """Bytes ``first``..``last`` (inclusive) of the open file ``handle``, which it closes."""
    with handle:
        handle.seek(first)
        left = last - first + 1
        while left > 0:
            data = handle.read(min(CHUNK, left))
            if not data:
                break  # the file shrank while it was sent
            left -= len(data)
            meter.sent += len(data)
            yield data


class _Sink:
    """A write-only, unseekable file: what zipfile writes is handed on in pieces."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: Any) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.pieces)
        self.pieces.clear()
        return out


def zip_chunks(
    files: Iterable[tuple[str, SharedFile]], extra: dict[str, bytes], meter: Meter
) -> Iterator[bytes]:
    """A zip of ``files`` (member name, file) and of ``extra`` (member name, bytes)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in extra.items():
            zf.writestr(name, data)
        for name, f in files:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED
            try:
                source_file = open_file(f)
            except (OSError, PermissionError):  # gone or moved since it was listed: left out
                continue
            with source_file as source, zf.open(info, "w", force_zip64=True) as member:
                while data := source.read(CHUNK):
                    member.write(data)
                    out = sink.take()
                    meter.sent += len(out)
                    yield out
            out = sink.take()
            meter.sent += len(out)
            yield out
    out = sink.take()  # the central directory, written when the ZipFile closes
    meter.sent += len(out)
    yield out
