"""The files a share gives: listed for its page and its zip, found again for a download.

A file is named on the link by where it comes from: ``results/NAME`` for a stored result of
the run (NAME is the result file's own name), ``files/N/PATH`` for PATH under the share's
N-th path item. A name is looked up, never trusted: a result must be one of the run's, a
path must have no empty, ``.`` or ``..`` segment, and a local file must still resolve
(symlinks followed) inside its item and inside one of the server's roots.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from legato.models import Share, State
from legato.sharing.policy import Location, Roots, locate

log = logging.getLogger("legato.server")
MAX_FILES = 10_000  # listed per path item: a share of a whole bucket stays a page


@dataclass(frozen=True, slots=True)
class SharedFile:
    item: str  # its name on the link: results/NAME or files/N/PATH
    label: str  # what the page shows beside it (a result's task, a path under its item)
    where: Location
    size: int | None
    inside: Location | None = None  # what it must still resolve within when it is opened

    @property
    def name(self) -> str:
        return posixpath.basename(self.item)


def filesystem(where: Location) -> Any:
    import fsspec

    return fsspec.filesystem("file" if where.local else where.protocol)


def _fs_path(where: Location) -> str:
    return where.path if where.local else where.path.lstrip("/")


def result_locations(store: Any, flow_run_id: str, roots: Roots) -> frozenset[Location]:
    """Where the run's own stored result files are: the only files of the result storage a
    path item of its shares may name."""
    return frozenset(f.where for f in _results(store, flow_run_id, roots))


def result_files(store: Any, share: Share, roots: Roots) -> list[SharedFile]:
    """The run's stored result files (completed task runs' and the flow run's own)."""
    if not any(i.kind == "results" for i in share.items):
        return []
    return _results(store, share.flow_run_id, roots)


def _results(store: Any, flow_run_id: str, roots: Roots) -> list[SharedFile]:
    run = store.get_flow_run(flow_run_id)
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
        found.setdefault(name, SharedFile(f"results/{name}", label, where, size, where))
    return sorted(found.values(), key=lambda f: (f.label, f.name))


def _local_files(index: int, item: Location, roots: Roots) -> Iterator[SharedFile]:
    if os.path.isfile(item.path):
        name = os.path.basename(item.path)
        yield SharedFile(f"files/{index}/{name}", "", item, os.path.getsize(item.path), item)
        return
    for folder, dirs, names in os.walk(item.path):  # symlinked folders are not entered
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            where = Location("file", os.path.realpath(full))
            if not where.within(item) or roots.other_runs(where) or not os.path.isfile(where.path):
                continue  # a link out of the shared folder, a socket, a dangling link
            rel = os.path.relpath(full, item.path).replace(os.sep, "/")
            size = os.path.getsize(where.path)
            yield SharedFile(f"files/{index}/{rel}", rel, where, size, item)


def _remote_files(index: int, item: Location) -> Iterator[SharedFile]:
    fs = filesystem(item)
    path = _fs_path(item)
    if fs.isfile(path):
        name = posixpath.basename(path)
        yield SharedFile(f"files/{index}/{name}", "", item, fs.size(path), item)
        return
    for folder, _dirs, infos in fs.walk(path, detail=True):  # a folder at a time: stops early
        for name in sorted(infos):
            info = infos[name]
            if info.get("type") != "file":
                continue
            full = "/" + posixpath.join(folder, name).lstrip("/")
            rel = posixpath.relpath(full, item.path)
            where = Location(item.protocol, full)
            yield SharedFile(f"files/{index}/{rel}", rel, where, info.get("size"), item)


def path_files(store: Any, share: Share, roots: Roots) -> list[tuple[str, list[SharedFile], bool]]:
    """(item path, its files, whether the list was cut at MAX_FILES) of each path item that
    still lies in a root."""
    listed: list[tuple[str, list[SharedFile], bool]] = []
    own = _own(store, share, roots)
    for index, item in enumerate(share.items):
        if item.kind != "path" or not item.path:
            continue
        where = _served(item.path, roots, own)
        if where is None:
            listed.append((item.path, [], False))
            continue
        files: list[SharedFile] = []
        walk = _local_files(index, where, roots) if where.local else _remote_files(index, where)
        try:
            for f in walk:
                if len(files) == MAX_FILES:
                    listed.append((item.path, files, True))
                    break
                files.append(f)
            else:
                listed.append((item.path, files, False))
        except Exception:  # gone, unreadable, a storage error: what was listed, no more
            log.warning("listing %s failed", item.path, exc_info=True)
            listed.append((item.path, files, False))
    return listed


def _own(store: Any, share: Share, roots: Roots) -> frozenset[Location]:
    """The run's result files when a path item may be one of them (it lies in the result
    storage); else none, without reading the run's task runs."""
    for item in share.items:
        if item.kind == "path" and item.path:
            try:
                if roots.other_runs(locate(item.path)):
                    return result_locations(store, share.flow_run_id, roots)
            except Exception:
                continue
    return frozenset()


def _served(url: str, roots: Roots, own: frozenset[Location]) -> Location | None:
    """Where a path item is, while it may still be served: in a root, and in the result
    storage only as one of the run's own result files."""
    try:
        where = locate(url)
    except Exception:
        return None
    if roots.root_of(where) is None or (roots.other_runs(where) and where not in own):
        return None
    return where


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
    base = _served(share.items[index].path or "", roots, _own(store, share, roots))
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
    if roots.other_runs(where) and where != base:  # base: one of the run's own results
        return None
    rel = "/".join(segments)
    return SharedFile(f"files/{index}/{rel}", rel, where, os.path.getsize(where.path), base)


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
    return SharedFile(f"files/{index}/{rel}", rel, where, fs.size(path), base)


def size_of(f: SharedFile) -> int:
    """The file's length now (a result's stored size may be absent)."""
    if f.where.local:
        return os.path.getsize(f.where.path)
    return int(filesystem(f.where).size(_fs_path(f.where)))


def open_file(f: SharedFile) -> Any:
    """A binary file object reading ``f`` (local or through fsspec). A local file is opened
    without following a final symlink, and where the kernel says it opened is checked against
    ``f.inside`` again: a symlink swapped in since the check gives PermissionError."""
    if not f.where.local:
        return filesystem(f.where).open(_fs_path(f.where), "rb")
    fd = os.open(f.where.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc (not Linux): the O_NOFOLLOW open is the check
        opened = f.where.path
    if f.inside is not None and not Location("file", opened).within(f.inside):
        os.close(fd)
        raise PermissionError(f"{f.item} no longer lies in what was shared")
    return os.fdopen(fd, "rb")
