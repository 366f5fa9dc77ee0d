"""File-arrival triggers: a run per new file (or per batch of files) matching a glob.

``legato deploy ... --on-new-files "/data/incoming/*.h5"`` watches a folder (or any fsspec URL:
``s3://bucket/incoming/*.h5``). A file is started once it has stopped growing: its mtime is at
least ``settle`` seconds old (for stores without mtimes: its size did not change for ``settle``
seconds). It is recorded by trigger + path + size + mtime in the transaction that inserts its
run, so it never starts twice, across restarts and across servers; a file rewritten later
(another size or mtime) is a new file.

Large folders are scanned incrementally: a pass walks the folder lazily (``os.scandir`` for
local folders, one directory listing at a time for other filesystems), at most ``scan_batch``
entries per tick, checking them against the database in chunks; the next tick resumes where
the last one stopped. A local folder whose mtime has not changed since the last full pass is
not walked again for 5 minutes (nothing was added; a recursive glob is walked every pass).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legato.errors import UsageError
from legato.models import Trigger
from legato.store import Store

log = logging.getLogger("legato.triggers.files")
FileKey = tuple[str, int, float]
_GLOB = set("*?[")
RESCAN_SECONDS = 300.0  # walk an unchanged folder again this often (files rewritten in place)


def split_glob(url: str) -> tuple[str, str]:
    """``/data/in/*.h5`` -> (``/data/in``, ``*.h5``); the folder is the part before the first
    path component with a wildcard. A URL without a wildcard watches every file in it."""
    protocol, sep, rest = url.rpartition("://")
    parts = rest.split("/")
    for i, part in enumerate(parts):
        if _GLOB & set(part):
            root = "/".join(parts[:i]) or "/"
            return (protocol + sep + root, "/".join(parts[i:]))
    return (url.rstrip("/") or "/", "*")


def files_config(
    url: str, *, parameter: str | None = None, batch: int = 1, settle: float = 5.0
) -> dict[str, Any]:
    """A checked ``config`` for a files trigger."""
    if batch < 1:
        raise UsageError(f"--batch must be 1 or more, got {batch}")
    if settle < 0:
        raise UsageError(f"--settle must be 0 or more seconds, got {settle}")
    _root, pattern = split_glob(url)
    if not pattern:
        raise UsageError(f"--on-new-files {url!r} names no file pattern (e.g. {url}/*.h5)")
    return {
        "url": url,
        "parameter": parameter or ("path" if batch == 1 else "paths"),
        "batch": batch,
        "settle": settle,
    }


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


@dataclass
class _Scan:
    """A trigger's watch: the pass in progress, files seen but still growing, a batch."""

    signature: str
    fs: Any
    root: str
    pattern: str
    local: bool
    walk: Iterator[tuple[str, int, float | None]] | None = None
    pass_root_mtime: float | None = None
    done_root_mtime: float | None = None
    done_at: float = 0.0  # time.monotonic() of the last full pass
    growing: dict[str, tuple[int, float | None, float]] = field(default_factory=dict)
    batch: list[FileKey] = field(default_factory=list)


class FileWatcher:
    """Starts runs for new files of every ``files`` trigger; call ``tick()`` repeatedly."""

    def __init__(
        self, store: Store, *, now: Callable[[], float] = time.time, scan_batch: int = 5000
    ) -> None:
        self.store = store
        self.now = now
        self.scan_batch = scan_batch
        self._scans: dict[str, _Scan] = {}

    def tick(self) -> int:
        """One step of every trigger's scan; returns how many runs it started."""
        started = 0
        live = set()
        for trig in self.store.list_triggers("files"):
            live.add(trig.name)
            if trig.paused:
                continue
            try:
                started += self._tick_one(trig)
            except Exception as exc:  # one unreachable folder must not stop the others
                log.error("file trigger %s: %s", trig.name, exc)
        for name in set(self._scans) - live:
            del self._scans[name]
        return started

    def _scan_for(self, trig: Trigger) -> _Scan:
        signature = repr(sorted(trig.config.items())) + trig.deployment
        scan = self._scans.get(trig.name)
        if scan is None or scan.signature != signature:
            from fsspec.core import url_to_fs

            root_url, pattern = split_glob(str(trig.config["url"]))
            fs, root = url_to_fs(root_url)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            scan = _Scan(
                signature, fs, root.rstrip("/") or "/", pattern, protocol in ("file", "local")
            )
            self._scans[trig.name] = scan
        return scan

    # -- walking --------------------------------------------------------------------------

    def _walk(self, scan: _Scan) -> Iterator[tuple[str, int, float | None]]:
        recursive = "/" in scan.pattern
        if scan.local:
            yield from self._walk_local(scan.root, scan.root, scan.pattern, recursive)
            return
        for dirpath, _dirs, files in scan.fs.walk(
            scan.root, detail=True, maxdepth=None if recursive else 1
        ):
            for name, info in files.items():
                full = f"{dirpath.rstrip('/')}/{name}"
                rel = full[len(scan.root) :].lstrip("/")
                if fnmatch.fnmatchcase(rel, scan.pattern):
                    yield (scan.fs.unstrip_protocol(full), int(info.get("size") or 0), _mtime(info))

    def _walk_local(
        self, root: str, folder: str, pattern: str, recursive: bool
    ) -> Iterator[tuple[str, int, float | None]]:
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            yield from self._walk_local(root, entry.path, pattern, recursive)
                        continue
                    rel = os.path.relpath(entry.path, root)
                    if not fnmatch.fnmatchcase(rel, pattern):
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # removed while we looked
                yield (entry.path, st.st_size, st.st_mtime)

    def _stat(self, scan: _Scan, path: str) -> tuple[int, float | None] | None:
        try:
            if scan.local:
                st = os.stat(path)
                return st.st_size, st.st_mtime
            info = scan.fs.info(path)
            return int(info.get("size") or 0), _mtime(info)
        except FileNotFoundError:
            return None

    # -- one step -------------------------------------------------------------------------

    def _tick_one(self, trig: Trigger) -> int:
        scan = self._scan_for(trig)
        now = self.now()
        settle = float(trig.config.get("settle", 5.0))
        candidates: list[tuple[str, int, float | None]] = []
        # Files seen growing before: look at them again first.
        for path in list(scan.growing):
            current = self._stat(scan, path)
            if current is None:
                del scan.growing[path]
            else:
                candidates.append((path, current[0], current[1]))
        pass_ended = False
        if scan.walk is None:
            root_mtime = self._root_mtime(scan)
            unchanged = (
                "/" not in scan.pattern
                and root_mtime is not None
                and root_mtime == scan.done_root_mtime
                and time.monotonic() - scan.done_at < RESCAN_SECONDS
            )
            if not unchanged:
                scan.pass_root_mtime = root_mtime
                scan.walk = self._walk(scan)
        if scan.walk is not None:
            for taken, item in enumerate(scan.walk, 1):
                if item[0] not in scan.growing:
                    candidates.append(item)
                if taken >= self.scan_batch:
                    break
            else:
                scan.walk = None
                scan.done_root_mtime = scan.pass_root_mtime
                scan.done_at = time.monotonic()
                pass_ended = True
        ready = self._settled(scan, trig, candidates, now, settle)
        started = self._start(scan, trig, ready, flush=pass_ended and not scan.growing)
        return started

    def _root_mtime(self, scan: _Scan) -> float | None:
        if not scan.local:
            return None
        try:
            return os.stat(scan.root).st_mtime_ns / 1e9
        except FileNotFoundError:
            return None

    def _settled(
        self,
        scan: _Scan,
        trig: Trigger,
        candidates: list[tuple[str, int, float | None]],
        now: float,
        settle: float,
    ) -> list[FileKey]:
        if not candidates:
            return []
        known = self.store.known_files(trig.name, [c[0] for c in candidates])
        ready: list[FileKey] = []
        for path, size, mtime in candidates:
            stamp = mtime if mtime is not None else 0.0
            if (path, size, stamp) in known:
                scan.growing.pop(path, None)
                continue
            before = scan.growing.get(path)
            if mtime is not None:
                stable = now - mtime >= settle
            else:  # no mtime: the same size for `settle` seconds
                stable = before is not None and before[0] == size and now - before[2] >= settle
            if stable:
                scan.growing.pop(path, None)
                ready.append((path, size, stamp))
            elif before is None or before[0] != size or before[1] != mtime:
                scan.growing[path] = (size, mtime, now)
        return ready

    def _start(self, scan: _Scan, trig: Trigger, ready: list[FileKey], *, flush: bool) -> int:
        batch = int(trig.config.get("batch", 1))
        scan.batch.extend(ready)
        groups: list[list[FileKey]] = []
        while len(scan.batch) >= batch:
            groups.append(scan.batch[:batch])
            del scan.batch[:batch]
        if flush and scan.batch:
            groups.append(scan.batch[:])
            scan.batch.clear()
        if not groups:
            return 0
        dep = self.store.get_deployment(trig.deployment)
        if dep is None:
            log.warning("file trigger %s: deployment %r is gone", trig.name, trig.deployment)
            return 0
        started = 0
        for files in groups:
            started += self._start_group(trig, dep, files)
        return started

    def _start_group(self, trig: Trigger, dep: Any, files: list[FileKey]) -> int:
        from legato.store.starts import build_run

        name = str(trig.config.get("parameter") or "path")
        extra = dict(trig.config.get("parameters") or {})
        for _ in range(3):
            if not files:
                return 0
            paths = [f[0] for f in files]
            value: Any = paths[0] if int(trig.config.get("batch", 1)) == 1 else paths
            run = build_run(dep, {**extra, name: value})
            what = paths[0] if len(paths) == 1 else f"{len(paths)} new files"
            if self.store.start_file_run(run, trig.name, files, message=f"new file: {what}"):
                log.info("started run %s of %s for %s", run.id, dep.name, what)
                return 1
            # Another scheduler took some of these files meanwhile: start the rest.
            known = self.store.known_files(trig.name, paths)
            files = [f for f in files if f not in known]
        return 0
