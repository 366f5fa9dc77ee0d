"""Big files through a share link: a 200 MB file fetched in Range pieces, and (slow) a 1 GB
file and a zip of it streamed by a real `legato server start` whose memory stays flat."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from legato.models import FlowRun, ShareItem, State, new_id, now
from legato.store import InsertFlowRun, open_store
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

MB = 2**20


def _share_of(store: SqlStore, path: Path) -> str:
    run = FlowRun(id=new_id(), flow="record", state=State.COMPLETED, created_at=now())
    store.apply([InsertFlowRun(run)])
    _share, secret = store.create_share(
        run.id, [ShareItem("path", str(path))], expires_at=now() + 3600, created_by="test"
    )
    return secret


def test_a_200_mb_file_downloads_in_range_pieces(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    recording = data / "session.bin"
    block = os.urandom(MB)
    with recording.open("wb") as fh:
        for i in range(200):  # 200 distinct MiB: a piece in the wrong place changes the sum
            fh.write(hashlib.sha256(i.to_bytes(4, "big")).digest() + block[32:])
    want = hashlib.sha256(recording.read_bytes()).hexdigest()
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    secret = _share_of(store, recording)
    live = LiveServer(store, result_storage=str(tmp_path / "results"), share_roots=str(data))
    try:
        size = 200 * MB
        piece = 24 * MB + 12345  # pieces that do not line up with the server's chunks
        got = hashlib.sha256()
        url = f"{live.url}/s/{secret}/f/files/0/session.bin"
        with httpx.Client(timeout=120) as c:
            for first in range(0, size, piece):
                last = min(first + piece, size) - 1
                r = c.get(url, headers={"Range": f"bytes={first}-{last}"})
                assert r.status_code == 206
                assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
                assert len(r.content) == last - first + 1
                got.update(r.content)
        assert got.hexdigest() == want
        accesses = store.list_share_accesses(store.list_shares()[0].id, limit=1000)
        assert sum(a.bytes for a in accesses) == size and {a.status for a in accesses} == {206}
    finally:
        live.stop()
        store.close()


# -- a real server process: its memory while 1 GB goes out -----------------------------------


def _rss(pid: int) -> int:
    """Resident memory of the process (bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, str, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    big = data / "recording.raw"
    with big.open("wb") as fh:  # 1 GiB, sparse: no disk is spent, every byte is read
        fh.truncate(1024 * MB)
    db = tmp_path / "server.db"
    store = open_store(f"sqlite:///{db}")
    assert isinstance(store, SqlStore)
    secret = _share_of(store, big)
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env |= {
        "LEGATO_HOME": str(tmp_path / "home"),
        "LEGATO_DATABASE_URL": f"sqlite:///{db}",
        "LEGATO_SHARE_ROOTS": str(data),
    }
    log = (tmp_path / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "server", "start", "--port", str(port), "--no-auth"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    try:
        yield url, proc.pid, secret, big
    finally:
        proc.terminate()
        proc.wait(30)


def _stream(url: str, pid: int) -> tuple[int, str, int]:
    """(bytes read, their SHA-256, the server's largest RSS seen) of one streamed GET."""
    digest = hashlib.sha256()
    read = 0
    peak = _rss(pid)
    with httpx.stream("GET", url, timeout=300) as r:
        assert r.status_code == 200
        for chunk in r.iter_bytes(MB):
            digest.update(chunk)
            read += len(chunk)
            if read % (32 * MB) < len(chunk):
                peak = max(peak, _rss(pid))
    return read, digest.hexdigest(), max(peak, _rss(pid))


def _zeros_sha(n: int) -> str:
    digest = hashlib.sha256()
    zero = bytes(MB)
    for _ in range(n // MB):
        digest.update(zero)
    return digest.hexdigest()


@pytest.mark.slow
def test_server_memory_stays_flat_while_1_gb_streams(server: tuple[str, int, str, Path]) -> None:
    url, pid, secret, big = server
    with httpx.Client(timeout=60) as c:  # warm: the page, a first small range, the zip code
        assert c.get(f"{url}/s/{secret}").status_code == 200
        r = c.get(f"{url}/s/{secret}/f/files/0/{big.name}", headers={"Range": "bytes=0-1023"})
        assert r.status_code == 206
    before = _rss(pid)
    read, sha, peak = _stream(f"{url}/s/{secret}/f/files/0/{big.name}", pid)
    assert read == 1024 * MB and sha == _zeros_sha(1024 * MB)
    assert peak - before < 64 * MB, f"the server grew by {(peak - before) / MB:.0f} MiB"
    read, _sha, peak = _stream(f"{url}/s/{secret}/zip", pid)  # the zip: written as it goes
    assert read > 1024 * MB
    assert peak - before < 64 * MB, f"the server grew by {(peak - before) / MB:.0f} MiB (zip)"
