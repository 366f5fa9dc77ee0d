"""Share links over real HTTP: what a link shows and gives, and everything it must not.

A run with two stored result files (written by ResultStorage, as the engine writes them),
artifacts, and a folder of recordings under a share root; the server runs with a clock the
test moves. Requests on the link carry no token and no cookie unless a test says so.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from legato.models import Artifact, FlowRun, Role, ShareItem, State, TaskRun, new_id, now
from legato.results import ResultStorage
from legato.store import InsertFlowRun, InsertTaskRun, open_store
from legato.store.ops import InsertArtifact
from legato.store.sql import SqlStore
from tests.live_server import LiveServer


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return now() + self.offset


@dataclass
class Lab:
    live: LiveServer
    store: SqlStore
    clock: Clock
    run: FlowRun
    other_run: FlowRun
    results: Path
    data: Path
    outside: Path
    tokens: dict[Role, str]

    def api(self, role: Role = Role.OPERATOR) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.live.url, headers=headers, timeout=60)

    def share(self, items: list[dict[str, str]], **body: object) -> dict[str, object]:
        with self.api() as c:
            r = c.post("/api/v1/shares", json={"flow_run_id": self.run.id, "items": items, **body})
        assert r.status_code == 201, r.text
        answer: dict[str, object] = r.json()
        return answer


def _run_with_results(store: SqlStore, storage: ResultStorage, sizes: list[int]) -> FlowRun:
    run = FlowRun(id=new_id(), flow="extract", state=State.COMPLETED, created_at=now())
    ops: list[object] = [InsertFlowRun(run)]
    for i, size in enumerate(sizes):
        stored = storage.encode(os.urandom(size))
        assert "ref" in stored
        t = TaskRun(
            id=new_id(),
            flow_run_id=run.id,
            task="pose",
            key=f"pose:{i}",
            state=State.COMPLETED,
            result=stored,
        )
        ops.append(InsertTaskRun(t))
    store.apply(ops)  # type: ignore[arg-type]
    return run


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    results = tmp_path / "results"
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    (data / "session1" / "cam").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (data / "session1" / "cam" / "top.mp4").write_bytes(os.urandom(300_000))
    (data / "session1" / "notes.txt").write_text("mouse 12, day 3")
    (data / "session2.txt").write_text("another session, not shared")
    (data / "session1" / "escape.txt").symlink_to(outside / "secret.txt")
    (data / "session1" / "escape-dir").symlink_to(outside)
    (data / "session1" / "peek.txt").symlink_to(data / "session2.txt")  # in the root, not shared
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    storage = ResultStorage(str(results), inline_max_bytes=1024)
    run = _run_with_results(store, storage, [100_000, 5_000])
    other = _run_with_results(store, storage, [2_000])
    store.apply(
        [
            InsertArtifact(
                Artifact(
                    new_id(),
                    run.id,
                    None,
                    "markdown",
                    {"markdown": "# QC report\nall *good*"},
                    "QC",
                )
            ),
            InsertArtifact(
                Artifact(
                    new_id(),
                    run.id,
                    None,
                    "table",
                    {"columns": ["session", "frames"], "rows": [["s1", 9000]]},
                    "Frames",
                )
            ),
        ]
    )
    tokens = {role: store.create_token(f"t-{role.value}", role)[1] for role in Role}
    clock = Clock()
    live = LiveServer(store, result_storage=str(results), share_roots=str(data), clock=clock)
    yield Lab(live, store, clock, run, other, results, data, outside, tokens)
    live.stop()
    store.close()


def _secret(url: object) -> str:
    path = urlsplit(str(url)).path
    assert path.startswith("/s/lgs_"), path
    return path.removeprefix("/s/")


def _anon(lab: Lab) -> httpx.Client:
    return httpx.Client(base_url=lab.live.url, timeout=60)


def _raw_get(lab: Lab, path: str) -> int:
    """GET ``path`` exactly as written (httpx would resolve ``..`` before sending)."""
    host = urlsplit(lab.live.url)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _result_files(lab: Lab, run: FlowRun) -> dict[str, bytes]:
    files = {}
    for t in lab.store.get_task_runs(run.id):
        name = os.path.basename(t.result["ref"])
        files[name] = (lab.results / name).read_bytes()
    return files


def test_the_link_page_shows_what_was_shared_without_a_login(lab: Lab) -> None:
    made = lab.share(
        [
            {"kind": "artifacts"},
            {"kind": "results"},
            {"kind": "path", "path": str(lab.data / "session1")},
        ],
        note="For the Tuesday meeting",
    )
    secret = _secret(made["url"])
    assert len(secret) - len("lgs_") >= 22  # at least 128 random bits, url-safe base64
    with _anon(lab) as c:
        page = c.get(f"/s/{secret}")
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "<h1>QC report</h1>" in html and "<em>good</em>" in html  # markdown rendered
    assert "<th>frames</th>" in html and "<td>9000</td>" in html  # the table
    assert "For the Tuesday meeting" in html
    for name in _result_files(lab, lab.run):
        assert f"/s/{secret}/f/results/{name}" in html
    for name in _result_files(lab, lab.other_run):
        assert name not in html  # another run's results are not listed
    assert "cam/top.mp4" in html and "notes.txt" in html
    assert "escape" not in html and "peek" not in html  # links out of the shared folder
    assert "session2" not in html
    assert lab.tokens[Role.OPERATOR] not in html
    # the secret itself is stored only as a hash
    assert secret not in (lab.live.url + str(lab.store.list_shares()))


def test_files_and_results_download_whole_and_by_range(lab: Lab) -> None:
    made = lab.share([{"kind": "results"}, {"kind": "path", "path": str(lab.data / "session1")}])
    secret = _secret(made["url"])
    with _anon(lab) as c:
        for name, content in _result_files(lab, lab.run).items():
            r = c.get(f"/s/{secret}/f/results/{name}")
            assert r.status_code == 200 and r.content == content
            assert r.headers["accept-ranges"] == "bytes"
            assert "attachment" in r.headers["content-disposition"]
        video = (lab.data / "session1" / "cam" / "top.mp4").read_bytes()
        r = c.get(f"/s/{secret}/f/files/1/cam/top.mp4", headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == video[1000:2000]
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(video)}"
        r = c.get(f"/s/{secret}/f/files/1/cam/top.mp4", headers={"Range": "bytes=-500"})
        assert r.status_code == 206 and r.content == video[-500:]
        r = c.get(f"/s/{secret}/f/files/1/cam/top.mp4", headers={"Range": "bytes=299000-"})
        assert r.status_code == 206 and r.content == video[299000:]
        r = c.get(f"/s/{secret}/f/files/1/cam/top.mp4", headers={"Range": "bytes=400000-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(video)}"
        r = c.get(f"/s/{secret}/f/files/1/cam/top.mp4", headers={"Range": "bytes=0-1,5-9"})
        assert r.status_code == 200 and r.content == video  # several ranges: the whole file


def test_nothing_outside_the_shared_items_is_reachable(lab: Lab) -> None:
    made = lab.share([{"kind": "results"}, {"kind": "path", "path": str(lab.data / "session1")}])
    secret = _secret(made["url"])
    base = f"/s/{secret}/f"
    other = next(iter(_result_files(lab, lab.other_run)))
    refused = [
        f"{base}/files/1/../../session2.txt",
        f"{base}/files/1/%2e%2e/%2e%2e/session2.txt",
        f"{base}/files/1/..%2f..%2fsession2.txt",
        f"{base}/files/1/cam/..%2f..%2f..%2foutside/secret.txt",
        f"{base}/files/1/%252e%252e/session2.txt",
        f"{base}/files/1/escape.txt",  # a symlink to a file out of the root
        f"{base}/files/1/escape-dir/secret.txt",  # through a symlinked folder
        f"{base}/files/1/peek.txt",  # a symlink to an unshared file of the same root
        f"{base}/files/1//etc/passwd",
        f"{base}/files/1/cam\\..\\..\\session2.txt",
        f"{base}/files/1/",
        f"{base}/files/0/x",  # item 0 is not a path item
        f"{base}/files/7/x",
        f"{base}/results/{other}",  # another run's result, in the same storage
        f"{base}/results/../server.db",
        f"{base}/../../api/v1/flow-runs",
    ]
    for path in refused:
        status = _raw_get(lab, path)
        assert status in (404, 400), (path, status)
    with _anon(lab) as c:  # the link is no key to the API or the dashboard
        assert (
            c.get("/api/v1/flow-runs", headers={"Authorization": f"Bearer {secret}"}).status_code
            == 401
        )
        assert c.get(f"/runs/{lab.run.id}", follow_redirects=False).status_code == 303
    accesses = lab.store.list_share_accesses(str(made["share"]["id"]))  # type: ignore[index]
    assert {a.status for a in accesses} <= {404}
    assert len(accesses) >= 10  # the refused tries are in the access log too


def test_shares_of_paths_outside_the_roots_are_refused(lab: Lab) -> None:
    with lab.api() as c:
        for path in [
            str(lab.outside),
            str(lab.data / "session1" / "escape-dir"),  # a symlink out of the root
            str(lab.data / ".." / "outside"),
            "relative/path",
            "file:///etc",
            "s3://someone-elses-bucket/data",
        ]:
            body = {"flow_run_id": lab.run.id, "items": [{"kind": "path", "path": path}]}
            r = c.post("/api/v1/shares", json=body)
            assert r.status_code == 400, (path, r.text)
        r = c.post("/api/v1/shares", json={"flow_run_id": lab.run.id, "items": []})
        assert r.status_code == 422
        r = c.post("/api/v1/shares", json={"flow_run_id": "nope", "items": [{"kind": "results"}]})
        assert r.status_code == 404
    assert lab.store.list_shares() == []


def test_expiry_follows_the_servers_clock_and_revoke_is_at_once(lab: Lab) -> None:
    made = lab.share([{"kind": "artifacts"}], expires_at=now() + 3600)
    secret = _secret(made["url"])
    with _anon(lab) as c:
        assert c.get(f"/s/{secret}").status_code == 200
        lab.clock.offset = 3599
        assert c.get(f"/s/{secret}").status_code == 200
        lab.clock.offset = 3601
        gone = c.get(f"/s/{secret}")
        assert gone.status_code == 410 and "expired" in gone.text
        assert c.get(f"/s/{secret}/zip").status_code == 410
        lab.clock.offset = 0
        default = lab.share([{"kind": "artifacts"}])  # no expiry given: 7 days
        share = default["share"]
        assert isinstance(share, dict)
        assert 7 * 86400 - 60 < share["expires_at"] - share["created_at"] <= 7 * 86400
        with lab.api() as api:
            too_long = {"flow_run_id": lab.run.id, "items": [{"kind": "artifacts"}]}
            r = api.post("/api/v1/shares", json={**too_long, "expires_at": now() + 91 * 86400})
            assert r.status_code == 400 and "90 days" in r.text
            assert api.delete(f"/api/v1/shares/{share['id']}").json() == {"changed": True}
        revoked = c.get(f"/s/{_secret(default['url'])}")
        assert revoked.status_code == 410 and "revoked" in revoked.text
        assert c.get("/s/lgs_" + "A" * 32).status_code == 404
        assert c.get("/s/whatever").status_code == 404


def test_the_password_gate_and_its_rate_limit(lab: Lab) -> None:
    made = lab.share([{"kind": "results"}], password="hunter22")
    secret = _secret(made["url"])
    name = next(iter(_result_files(lab, lab.run)))
    assert "hunter22" not in str(lab.store.list_shares())
    with _anon(lab) as c:
        page = c.get(f"/s/{secret}")
        assert page.status_code == 401 and 'type="password"' in page.text and name not in page.text
        assert c.get(f"/s/{secret}/f/results/{name}").status_code == 401
        assert c.get(f"/s/{secret}/zip").status_code == 401
        for _ in range(5):
            r = c.post(f"/s/{secret}/unlock", data={"password": "guess"})
            assert r.status_code == 401 and "Wrong password" in r.text
        r = c.post(f"/s/{secret}/unlock", data={"password": "hunter22"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right one
        assert c.get(f"/s/{secret}/f/results/{name}", auth=("", "hunter22")).status_code == 401
        lab.clock.offset = 601  # the window has passed
        r = c.post(f"/s/{secret}/unlock", data={"password": "hunter22"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/s/{secret}"
        cookie = r.headers["set-cookie"].lower()
        assert f"path=/s/{secret.lower()}" in cookie and "httponly" in cookie
        assert "hunter22" not in cookie
        page = c.get(f"/s/{secret}")  # the client keeps the cookie
        assert page.status_code == 200 and name in page.text
    with _anon(lab) as curl:  # a download tool: HTTP Basic, any user name
        r = curl.get(f"/s/{secret}/f/results/{name}", auth=("", "hunter22"))
        assert r.status_code == 200 and r.content == (lab.results / name).read_bytes()
        assert curl.get(f"/s/{secret}/f/results/{name}", auth=("", "nope")).status_code == 401
    other = lab.share([{"kind": "results"}], password="hunter22")
    with _anon(lab) as c:  # an unlock cookie is for its own link only
        c.post(f"/s/{secret}/unlock", data={"password": "hunter22"})
        assert c.get(f"/s/{_secret(other['url'])}").status_code == 401


def test_accesses_are_logged_and_shown_to_the_owner(lab: Lab) -> None:
    made = lab.share([{"kind": "results"}, {"kind": "artifacts"}])
    share_id = str(made["share"]["id"])  # type: ignore[index]
    secret = _secret(made["url"])
    name, content = next(iter(_result_files(lab, lab.run).items()))
    with _anon(lab) as c:
        page = c.get(f"/s/{secret}")
        c.get(f"/s/{secret}/f/results/{name}", headers={"Range": "bytes=0-99"})
        c.get(f"/s/{secret}/f/results/{name}")
        c.get(f"/s/{secret}/f/results/missing.json")
    with lab.api() as api:
        log = api.get(f"/api/v1/shares/{share_id}/accesses").json()
        assert (
            api.get(
                f"/api/v1/shares/{share_id}/accesses",
                headers={"Authorization": f"Bearer {lab.tokens[Role.VIEWER]}"},
            ).status_code
            == 403
        )
        assert api.delete(f"/api/v1/shares/{share_id}").status_code == 200
        audit = api.get(
            "/api/v1/audit",
            params={"action": "share."},
            headers={"Authorization": f"Bearer {lab.tokens[Role.ADMIN]}"},
        ).json()
    seen = [(a["item"], a["bytes"], a["status"]) for a in reversed(log)]
    assert seen == [
        ("page", len(page.content), 200),
        (f"results/{name}", 100, 206),
        (f"results/{name}", len(content), 200),
        ("results/missing.json", 0, 404),
    ]
    assert all(a["client"] == "127.0.0.1" and a["at"] > 0 for a in log)
    actions = [(e["action"], e["target"]) for e in reversed(audit)]
    assert actions == [
        ("share.create", share_id),
        ("share.open", share_id),
        ("share.revoke", share_id),
    ]
    assert audit[-1]["actor"] == "t-operator"


def test_the_zip_holds_every_shared_file(lab: Lab) -> None:
    made = lab.share(
        [
            {"kind": "results"},
            {"kind": "artifacts"},
            {"kind": "path", "path": str(lab.data / "session1")},
        ]
    )
    with _anon(lab) as c:
        r = c.get(f"/s/{_secret(made['url'])}/zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "content-length" not in r.headers  # streamed as it is written
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        got = {i.filename: hashlib.sha256(zf.read(i)).hexdigest() for i in zf.infolist()}
    want = {
        f"results/{n}": hashlib.sha256(b).hexdigest()
        for n, b in _result_files(lab, lab.run).items()
    }
    for rel in ("cam/top.mp4", "notes.txt"):
        want[f"files/2/{rel}"] = hashlib.sha256(
            (lab.data / "session1" / rel).read_bytes()
        ).hexdigest()
    artifacts = got.pop("artifacts.json")
    assert artifacts and got == want


def test_roles_who_may_make_and_manage_shares(lab: Lab) -> None:
    body = {"flow_run_id": lab.run.id, "items": [{"kind": "artifacts"}]}
    with lab.api(Role.VIEWER) as viewer:
        assert viewer.post("/api/v1/shares", json=body).status_code == 403
        assert viewer.get("/api/v1/shares").status_code == 403
    limited = lab.store.create_token("gpu-only", Role.RUNNER, pools=["gpu"])[1]
    headers = {"Authorization": f"Bearer {limited}"}
    with httpx.Client(base_url=lab.live.url, headers=headers, timeout=30) as runner:
        r = runner.post("/api/v1/shares", json=body)  # the run is in the default pool
        assert r.status_code == 403 and "pool" in r.text
        assert runner.get("/api/v1/shares").status_code == 403
    gpu_run = FlowRun(id=new_id(), flow="x", state=State.RUNNING, created_at=now(), pool="gpu")
    lab.store.apply([InsertFlowRun(gpu_run)])
    with httpx.Client(base_url=lab.live.url, headers=headers, timeout=30) as runner:
        r = runner.post("/api/v1/shares", json={**body, "flow_run_id": gpu_run.id})
        assert r.status_code == 201 and r.json()["share"]["created_by"] == "gpu-only"
        share_id = r.json()["share"]["id"]
        assert runner.delete(f"/api/v1/shares/{share_id}").status_code == 403
    with lab.api() as operator:
        listed = operator.get("/api/v1/shares").json()
        assert [s["id"] for s in listed] == [share_id]
        assert "secret" not in listed[0] and "hash" not in listed[0]
        assert operator.delete(f"/api/v1/shares/{share_id}").json() == {"changed": True}
        assert operator.delete(f"/api/v1/shares/{share_id}").json() == {"changed": False}


def test_a_link_over_a_root_removed_since_gives_nothing(lab: Lab, tmp_path: Path) -> None:
    made = lab.share([{"kind": "path", "path": str(lab.data / "session1")}])
    secret = _secret(made["url"])
    lab.live.stop()
    moved = LiveServer(lab.store, result_storage=str(lab.results), share_roots="", clock=lab.clock)
    try:
        with httpx.Client(base_url=moved.url, timeout=30) as c:
            assert c.get(f"/s/{secret}").status_code == 200
            assert "No files here now" in c.get(f"/s/{secret}").text
            assert c.get(f"/s/{secret}/f/files/0/notes.txt").status_code == 404
    finally:
        moved.stop()
    lab.live = LiveServer(
        lab.store, result_storage=str(lab.results), share_roots=str(lab.data), clock=lab.clock
    )


def test_the_page_escapes_what_runs_wrote(lab: Lab) -> None:
    evil = Artifact(
        new_id(), lab.run.id, None, "image", {"url": "javascript:alert(1)"}, "<script>x</script>"
    )
    md = Artifact(
        new_id(), lab.run.id, None, "markdown", {"markdown": "<img src=x onerror=alert(1)>"}, None
    )
    lab.store.apply([InsertArtifact(evil), InsertArtifact(md)])
    made = lab.share([{"kind": "artifacts"}], note="<b>bold</b>")
    with _anon(lab) as c:
        html = c.get(f"/s/{_secret(made['url'])}").text
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
    assert "<img src=x" not in html
    assert "<b>bold</b>" not in html
    assert re.search(r"<script(?! src=\"/static/)", html) is None


def _login(lab: Lab, role: Role) -> httpx.Client:
    c = httpx.Client(base_url=lab.live.url, timeout=30)
    page = c.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    r = c.post("/login", data={"nonce": nonce.group(1), "token": lab.tokens[role], "next": "/"})
    assert r.status_code == 303, r.text
    return c


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_dashboards_share_panel(lab: Lab) -> None:
    with closing(_login(lab, Role.OPERATOR)) as op, closing(_login(lab, Role.VIEWER)) as viewer:
        page = op.get(f"/runs/{lab.run.id}")
        assert 'action="/runs/' + lab.run.id + '/share"' in page.text
        items = op.get(f"/runs/{lab.run.id}/items")
        assert 'action="/runs/' + lab.run.id + '/share"' in items.text  # on the items page too
        csrf = _csrf(page.text)
        form = {
            "csrf": csrf,
            "artifacts": "on",
            "paths": str(lab.data / "session1") + "\n",
            "expires": "30d",
            "note": "for Ana",
        }
        made = op.post(f"/runs/{lab.run.id}/share", data=form)
        assert made.status_code == 200
        link = re.search(r'value="(http://[^"]+/s/lgs_[^"]+)"', made.text)
        assert link is not None
        [share] = lab.store.list_shares(lab.run.id)
        assert share.created_by == "t-operator" and share.note == "for Ana"
        assert 29 * 86400 < share.expires_at - share.created_at <= 30 * 86400 + 5
        refused = op.post(f"/runs/{lab.run.id}/share", data={**form, "paths": str(lab.outside)})
        assert refused.status_code == 200 and "outside the folders" in refused.text
        with httpx.Client(timeout=30) as anon:
            assert anon.get(link.group(1)).status_code == 200
        # a viewer sees the list, with no form and no revoke button, and may not post either
        seen = viewer.get(f"/runs/{lab.run.id}")
        assert share.id[:8] in seen.text and '/share"' not in seen.text
        assert "Revoke" not in seen.text
        vcsrf = re.search(r'"X-CSRF-Token": "([^"]+)"', seen.text)
        assert vcsrf is not None
        post = {**form, "csrf": vcsrf.group(1)}
        assert viewer.post(f"/runs/{lab.run.id}/share", data=post).status_code == 403
        revoke = {"csrf": vcsrf.group(1)}
        assert viewer.post(f"/shares/{share.id}/revoke", data=revoke).status_code == 403
        assert op.post(f"/shares/{share.id}/revoke", data={"csrf": "forged"}).status_code == 403
        assert lab.store.get_share(share.id).revoked_at is None  # type: ignore[union-attr]
        gone = op.post(f"/shares/{share.id}/revoke", data={"csrf": csrf}, follow_redirects=True)
        assert gone.status_code == 200 and "Share revoked" in gone.text
        with httpx.Client(timeout=30) as anon:
            assert anon.get(link.group(1)).status_code == 410
        accesses = op.get(f"/runs/{lab.run.id}").text
        assert "127.0.0.1" in accesses and "(410)" in accesses and "(200)" in accesses
    actions = [e.action for e in lab.store.list_audit(action="share.")]
    assert actions.count("share.create") == 1 and actions.count("share.revoke") == 1


def test_the_secret_is_stored_only_as_its_hash(lab: Lab) -> None:
    made = lab.share([{"kind": "results"}], password="open sesame")
    secret = _secret(made["url"])
    from sqlalchemy import select

    from legato.store import schema as s

    with lab.store._read() as conn:
        row = conn.execute(select(s.shares)).one()
    assert row.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.password.startswith("scrypt$") and "open sesame" not in row.password
    assert secret not in " ".join(str(v) for v in row)


def test_range_edge_cases_never_fail_the_server(lab: Lab) -> None:
    (lab.data / "empty.bin").write_bytes(b"")
    (lab.data / "ten.bin").write_bytes(b"0123456789")
    made = lab.share(
        [
            {"kind": "path", "path": str(lab.data / "ten.bin")},
            {"kind": "path", "path": str(lab.data / "empty.bin")},
        ]
    )
    ten = f"/s/{_secret(made['url'])}/f/files/0/ten.bin"
    empty = f"/s/{_secret(made['url'])}/f/files/1/empty.bin"
    cases = [
        (ten, "bytes=0-0", 206, b"0"),
        (ten, "bytes=9-", 206, b"9"),
        (ten, "bytes=-3", 206, b"789"),
        (ten, "bytes=-30", 206, b"0123456789"),
        (ten, "bytes=4-100", 206, b"456789"),
        (ten, "bytes=5-2", 200, b"0123456789"),  # invalid: ignored (RFC 9110)
        (ten, "bytes=-0", 416, b""),
        (ten, "bytes=10-", 416, b""),
        (ten, "bytes=999999999999999999-", 416, b""),
        (ten, "bytes=" + "9" * 5000 + "-", 200, b"0123456789"),  # not a range we read
        (ten, "bytes=0-" + "9" * 5000, 200, b"0123456789"),
        (ten, "items=0-3", 200, b"0123456789"),
        (empty, "", 200, b""),
        (empty, "bytes=0-", 416, b""),
        (empty, "bytes=-5", 416, b""),
    ]
    with _anon(lab) as c:
        for path, header, status, body in cases:
            r = c.get(path, headers={"Range": header} if header else {})
            assert (r.status_code, r.content) == (status, body), header[:40]
            if status == 416:
                size = 10 if path == ten else 0
                assert r.headers["content-range"] == f"bytes */{size}"


def test_password_tries_sent_at_once_are_still_limited(lab: Lab) -> None:
    from concurrent.futures import ThreadPoolExecutor

    made = lab.share([{"kind": "results"}], password="correct horse")
    secret = _secret(made["url"])

    def guess(i: int) -> int:
        with _anon(lab) as c:
            return c.post(f"/s/{secret}/unlock", data={"password": f"guess-{i}"}).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(guess, range(30)))
    assert statuses.count(401) <= 5 and statuses.count(429) >= 25, statuses
    with _anon(lab) as c:
        r = c.get(f"/s/{secret}/f/results/x", auth=("", "guess-99"))
        assert r.status_code == 401  # Basic tries count against the same limit
        assert c.post(f"/s/{secret}/unlock", data={"password": "correct horse"}).status_code == 429


def test_the_result_storage_gives_only_the_runs_own_files(lab: Lab) -> None:
    own = next(iter(_result_files(lab, lab.run)))
    other = next(iter(_result_files(lab, lab.other_run)))
    with lab.api() as c:
        for path in (str(lab.results), str(lab.results / other)):
            body = {"flow_run_id": lab.run.id, "items": [{"kind": "path", "path": path}]}
            r = c.post("/api/v1/shares", json=body)
            assert r.status_code == 400 and "result storage" in r.text, (path, r.text)
    from legato.errors import UsageError
    from legato.sharing.policy import Roots

    wide = Roots.configured(str(lab.results), str(lab.results.parent))  # a root holding it
    with pytest.raises(UsageError, match="result storage"):
        wide.check(str(lab.results.parent))
    made = lab.share([{"kind": "path", "path": str(lab.results / own)}])
    with _anon(lab) as c:
        r = c.get(f"/s/{_secret(made['url'])}/f/files/0/{own}")
        assert r.status_code == 200 and r.content == (lab.results / own).read_bytes()


def test_a_runner_limited_to_pools_shares_no_paths(lab: Lab) -> None:
    run = FlowRun(id=new_id(), flow="x", state=State.COMPLETED, created_at=now(), pool="gpu")
    lab.store.apply([InsertFlowRun(run)])
    limited = lab.store.create_token("gpu-box", Role.RUNNER, pools=["gpu"])[1]
    headers = {"Authorization": f"Bearer {limited}"}
    item = {"kind": "path", "path": str(lab.data / "session1")}
    with httpx.Client(base_url=lab.live.url, headers=headers, timeout=30) as c:
        r = c.post("/api/v1/shares", json={"flow_run_id": run.id, "items": [item]})
        assert r.status_code == 403 and "not paths" in r.text
    assert lab.store.list_shares() == []


def test_files_gone_since_they_were_listed(lab: Lab) -> None:
    folder = lab.data / "session1"
    made = lab.share([{"kind": "path", "path": str(folder)}])
    secret = _secret(made["url"])
    with _anon(lab) as c:
        assert "notes.txt" in c.get(f"/s/{secret}").text
        (folder / "notes.txt").unlink()
        assert c.get(f"/s/{secret}/f/files/0/notes.txt").status_code == 404
        r = c.get(f"/s/{secret}/zip")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == ["files/0/cam/top.mp4"]


def test_a_symlink_swapped_in_after_the_check_is_not_opened(lab: Lab) -> None:
    from legato.sharing.files import SharedFile, open_file
    from legato.sharing.policy import Location

    folder = lab.data / "session1"
    checked = SharedFile(
        "files/0/notes.txt",
        "notes.txt",
        Location("file", str(folder / "notes.txt")),
        None,
        Location("file", str(folder)),
    )
    with open_file(checked) as fh:
        assert fh.read() == b"mouse 12, day 3"
    (folder / "notes.txt").unlink()
    (folder / "notes.txt").symlink_to(lab.outside / "secret.txt")  # swapped after the check
    with pytest.raises(OSError):
        open_file(checked)


def test_secrets_are_masked_in_the_servers_access_log() -> None:
    import logging

    from legato.server.share_links import SecretsOutOfLogs

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/s/lgs_Ab-12_xyZ/f/files/0/a.raw", "1.1", 206),
        None,
    )
    assert SecretsOutOfLogs().filter(record)
    line = record.getMessage()
    assert "lgs_Ab-12_xyZ" not in line and "/s/lgs_…/f/files/0/a.raw" in line


def test_the_zip_is_named_safely_whatever_the_run_id(lab: Lab) -> None:
    odd = FlowRun(id='x"\r\nSet-Cookie: a=b', flow="x", state=State.COMPLETED, created_at=now())
    lab.store.apply([InsertFlowRun(odd)])
    _share, secret = lab.store.create_share(
        odd.id, [ShareItem("artifacts")], expires_at=now() + 60, created_by="t"
    )
    with _anon(lab) as c:
        r = c.get(f"/s/{secret}/zip")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="share-xSet.zip"'
    assert "set-cookie" not in r.headers
