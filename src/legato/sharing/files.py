"""The files a share gives: listed for its page and its zip, found again for a download.

A file is named on the link by where it comes from: ``results/NAME`` for a stored result of
the run (NAME is the result file's own name), ``files/N/PATH`` for PATH under the share's
N-th path item. A name is looked up, never trusted: a result must be one of the run's, a
path must have no empty, ``.`` or ``..`` segment, and a local file must still resolve
(symlinks followed) inside its item and inside one of the server's roots.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from legato.models import Share, State
from legato.sharing.policy import Location, Roots, locate

MAX_FILES = 10_000  # listed per path item: a share of a whole bucket stays a page


@dataclass(frozen=True, slots=True)
class SharedFile:
    item: str  # its name on the link: results/NAME or files/N/PATH
    label: str  # what the page shows beside it (a result's task, a path under its item)
    where: Location
    size: int | None

    @property
    def name(self) -> str:
        return posixpath.basename(self.item)


def filesystem(where: Location) -> Any:
    import fsspec

    return fsspec.filesystem("file" if where.local else where.protocol)


def _fs_path(where: Location) -> str:
    return where.path if where.local else where.path.lstrip("/")


def result_files(store: Any, share: Share, roots: Roots) -> list[SharedFile]:
    """The run's stored result files (completed task runs' and the flow run's own)."""
    if not any(i.kind == "results" for i in share.items):
        return []
    run = store.get_flow_run(share.flow_run_id)
    found: dict[str, SharedFile] = {}
    stored = [(t.key, t.result) for t in store.get_task_runs(run.id) if t.state is State.COMPLETED]
    stored.append(("flow result", run.result))
    for label, result in stored:
        if not isinstance(result, dict) or not isinstance(result.get("ref"), str):
            continue
        try:
            where = locate(result["ref"])
        except Exception:  # a stored form no share can name: not listed
            continue
        if roots.root_of(where) is None:
            continue
        name = posixpath.basename(where.path)
        size = result.get("size") if isinstance(result.get("size"), int) else None
        found.setdefault(name, SharedFile(f"results/{name}", label, where, size))
    return sorted(found.values(), key=lambda f: (f.label, f.name))


def _local_files(index: int, item: Location) -> Iterator[SharedFile]:
    if os.path.isfile(item.path):
        yield SharedFile(f"files/{index}/{os.path.basename(item.path)}", "", item, None)
        return
    for folder, dirs, names in os.walk(item.path):  # symlinked folders are not entered
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            where = Location("file", os.path.realpath(full))
            if not where.within(item) or not os.path.isfile(where.path):
                continue  # a link out of the shared folder, a socket, a dangling link
            rel = os.path.relpath(full, item.path).replace(os.sep, "/")
            yield SharedFile(f"files/{index}/{rel}", rel, where, os.path.getsize(where.path))


def _remote_files(index: int, item: Location) -> Iterator[SharedFile]:
    fs = filesystem(item)
    path = _fs_path(item)
    if fs.isfile(path):
        name = posixpath.basename(path)
        yield SharedFile(f"files/{index}/{name}", "", item, fs.size(path))
        return
    for full, info in sorted(fs.find(path, detail=True).items()):
        rel = posixpath.relpath("/" + full.lstrip("/"), item.path)
        where = Location(item.protocol, "/" + full.lstrip("/"))
        yield SharedFile(f"files/{index}/{rel}", rel, where, info.get("size"))


def path_files(share: Share, roots: Roots) -> list[tuple[str, list[SharedFile], bool]]:
    """(item path, its files, whether the list was cut at MAX_FILES) of each path item that
    still lies in a root."""
    listed: list[tuple[str, list[SharedFile], bool]] = []
    for index, item in enumerate(share.items):
        if item.kind != "path" or not item.path:
            continue
        where = _served(item.path, roots)
        if where is None:
            listed.append((item.path, [], False))
            continue
        files: list[SharedFile] = []
        walk = _local_files(index, where) if where.local else _remote_files(index, where)
        try:
            for f in walk:
                if len(files) == MAX_FILES:
                    listed.append((item.path, files, True))
                    break
                files.append(f)
            else:
                listed.append((item.path, files, False))
        except OSError:  # gone since the share was made, or unreadable: nothing to give
            listed.append((item.path, files, False))
    return listed


def _served(url: str, roots: Roots) -> Location | None:
    try:
        where = locate(url)
    except Exception:
        return None
    return where if roots.root_of(where) is not None else None


def _clean_segments(rel: str) -> list[str] | None:
    segments = rel.split("/")
    bad = ("", ".", "..")
    if any(s in bad or "\\" in s or "\x00" in s for s in segments):
        return None
    return segments


def find(store: Any, share: Share, roots: Roots, item: str) -> SharedFile | None:
    """The shared file ``item`` names (``results/NAME`` or ``files/N/PATH``), or None."""
    kind, _, rest = item.partition("/")
    if kind == "results":
        return next((f for f in result_files(store, share, roots) if f.item == item), None)
    if kind != "files":
        return None
    number, _, rel = rest.partition("/")
    segments = _clean_segments(rel)
    if not number.isdigit() or segments is None:
        return None
    index = int(number)
    if index >= len(share.items) or share.items[index].kind != "path":
        return None
    base = _served(share.items[index].path or "", roots)
    if base is None:
        return None
    if base.local:
        return _find_local(index, base, segments, roots)
    return _find_remote(index, base, segments)


def _find_local(index: int, base: Location, segments: list[str], roots: Roots) -> SharedFile | None:
    if os.path.isfile(base.path):
        if segments != [os.path.basename(base.path)]:
            return None
        where = base
    else:
        where = Location("file", os.path.realpath(os.path.join(base.path, *segments)))
        if not where.within(base):
            return None  # a symlink out of the shared folder
    if roots.root_of(where) is None or not os.path.isfile(where.path):
        return None
    rel = "/".join(segments)
    return SharedFile(f"files/{index}/{rel}", rel, where, os.path.getsize(where.path))


def _find_remote(index: int, base: Location, segments: list[str]) -> SharedFile | None:
    fs = filesystem(base)
    rel = "/".join(segments)
    if fs.isfile(_fs_path(base)):
        if segments != [posixpath.basename(base.path)]:
            return None
        where = base
    else:
        where = Location(base.protocol, base.path.rstrip("/") + "/" + rel)
    path = _fs_path(where)
    if not fs.isfile(path):
        return None
    return SharedFile(f"files/{index}/{rel}", rel, where, fs.size(path))


def size_of(f: SharedFile) -> int:
    """The file's length now (a result's stored size may be absent)."""
    if f.where.local:
        return os.path.getsize(f.where.path)
    return int(filesystem(f.where).size(_fs_path(f.where)))


def open_file(f: SharedFile) -> Any:
    """A binary file object reading ``f`` (local or through fsspec)."""
    if f.where.local:
        return open(f.where.path, "rb")  # closed by the streamer
    return filesystem(f.where).open(_fs_path(f.where), "rb")
