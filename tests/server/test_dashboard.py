"""The dashboard over HTTP (no browser): login and sessions, CSRF, roles, pages, the answer
form from a JSON schema, and the layouts drawn in SVG. The browser suite is tests/browser."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from legato.models import Artifact, FlowRun, Question, Role, State, TaskRun, new_id, now
from legato.server import forms, graphs
from legato.store import (
    InsertArtifact,
    InsertFlowRun,
    InsertQuestion,
    InsertTaskRun,
    UpdateFlowRun,
)
from legato.store.sql import SqlStore
from legato.store.views import RunFilter
from tests.live_server import LiveServer


def _login(live: LiveServer, secret: str) -> httpx.Client:
    c = httpx.Client(base_url=live.url, timeout=30)
    page = c.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    r = c.post("/login", data={"nonce": nonce.group(1), "token": secret, "next": "/questions"})
    assert r.status_code == 303 and r.headers["location"] == "/questions", r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and secret.lower() not in cookie
    return c


def _csrf(c: httpx.Client) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', c.get("/").text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def failed_run(server_store: SqlStore) -> FlowRun:
    run = FlowRun(id=new_id(), flow="etl", state=State.FAILED, created_at=now(), tags=["x"])
    a = TaskRun(id=new_id(), flow_run_id=run.id, task="a", key="a:0", state=State.COMPLETED)
    b = TaskRun(
        id=new_id(),
        flow_run_id=run.id,
        task="b",
        key="b:0",
        state=State.FAILED,
        depends_on=[a.id],
        error="boom",
    )
    server_store.apply([InsertFlowRun(run), InsertTaskRun(a), InsertTaskRun(b)])
    return run


@pytest.fixture
def viewer(live: LiveServer, tokens: dict[Role, str]) -> Iterator[httpx.Client]:
    c = _login(live, tokens[Role.VIEWER])
    yield c
    c.close()


@pytest.fixture
def operator(live: LiveServer, tokens: dict[Role, str]) -> Iterator[httpx.Client]:
    c = _login(live, tokens[Role.OPERATOR])
    yield c
    c.close()


def test_pages_need_a_login_and_a_wrong_token_is_refused(
    live: LiveServer, anonymous: httpx.Client
) -> None:
    r = anonymous.get("/runs/abc")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs/abc"
    assert anonymous.get("/", headers={"HX-Request": "true"}).headers["HX-Redirect"]
    nonce = re.search(r'name="nonce" value="([^"]+)"', anonymous.get("/login").text)
    assert nonce is not None
    r = anonymous.post("/login", data={"nonce": nonce.group(1), "token": "lgt_nope"})
    assert r.status_code == 401 and "wrong or revoked" in r.text
    r = anonymous.post("/login", data={"nonce": "forged", "token": "lgt_nope"})
    assert r.status_code == 400
    anonymous.cookies.set("legato_session", "eyJpIjoiYSJ9.bad")
    assert anonymous.get("/").status_code == 303


def test_login_never_redirects_off_site(live: LiveServer, tokens: dict[Role, str]) -> None:
    c = httpx.Client(base_url=live.url)
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/login").text)
    assert nonce is not None
    data = {"nonce": nonce.group(1), "token": tokens[Role.VIEWER], "next": "//evil.example/"}
    assert c.post("/login", data=data).headers["location"] == "/"
    c.close()


def test_a_viewer_reads_everything_and_acts_on_nothing(
    viewer: httpx.Client, failed_run: FlowRun, server_store: SqlStore
) -> None:
    for path in ("/", "/questions", "/pools", f"/runs/{failed_run.id}", "/?state=FAILED"):
        assert viewer.get(path).status_code == 200, path
    page = viewer.get(f"/runs/{failed_run.id}").text
    assert "Retry</button>" not in page and "Cancel</button>" not in page
    r = viewer.post(f"/runs/{failed_run.id}/retry", data={"csrf": _csrf(viewer)})
    assert r.status_code == 403 and "needs an operator" in r.text
    assert server_store.get_flow_run(failed_run.id).state is State.FAILED


def test_actions_need_the_csrf_token(
    operator: httpx.Client, failed_run: FlowRun, server_store: SqlStore
) -> None:
    assert operator.post(f"/runs/{failed_run.id}/retry").status_code == 403
    assert operator.post(f"/runs/{failed_run.id}/retry", data={"csrf": "x"}).status_code == 403
    assert server_store.get_flow_run(failed_run.id).state is State.FAILED
    r = operator.post(f"/runs/{failed_run.id}/retry", data={"csrf": _csrf(operator)})
    assert r.status_code == 303 and "notice=Queued" in r.headers["location"]
    run = server_store.get_flow_run(failed_run.id)
    assert run.state is State.PENDING and run.queued_at is not None
    # Retrying again: it is not FAILED any more, and the page says so.
    r = operator.post(f"/runs/{failed_run.id}/retry", data={"csrf": _csrf(operator)})
    assert "error=" in r.headers["location"]
    r = operator.post(f"/runs/{failed_run.id}/cancel", data={"csrf": _csrf(operator)})
    assert server_store.get_flow_run(failed_run.id).state is State.CANCELLED


def test_answering_through_the_form_records_who_and_queues_the_run(
    operator: httpx.Client, server_store: SqlStore
) -> None:
    run = FlowRun(id=new_id(), flow="qc", state=State.RUNNING, created_at=now())
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "score": {"type": "integer"}},
        "required": ["ok", "score"],
    }
    q = Question(new_id(), run.id, "ask:0", "QC?", schema, created_at=now())
    paused = UpdateFlowRun(run.id, State.PAUSED, now())
    server_store.apply([InsertFlowRun(run), paused, InsertQuestion(q)])
    page = operator.get("/questions").text
    assert 'name="v.ok"' in page and 'name="v.score"' in page
    bad = operator.post(
        f"/questions/{q.id}/answer", data={"csrf": _csrf(operator), "v.ok": "true", "v.score": "x"}
    )
    assert "error=" in bad.headers["location"]
    assert server_store.get_question(q.id).state.value == "pending"
    good = operator.post(
        f"/questions/{q.id}/answer",
        data={"csrf": _csrf(operator), "v.ok": "true", "v.score": "4", "back": "questions"},
    )
    assert good.headers["location"].startswith("/questions?notice=Answered")
    answered = server_store.get_question(q.id)
    assert answered.answer == {"ok": True, "score": 4} and answered.answered_by == "t-operator"
    assert server_store.get_flow_run(run.id).state is State.PENDING  # queued for a worker
    assert "by t-operator" in operator.get(f"/runs/{run.id}").text


def test_a_question_is_shown_with_the_figures_its_run_attached(
    viewer: httpx.Client, server_store: SqlStore
) -> None:
    """A QC plot attached before ask() sits beside the question, so whoever answers sees
    what the run saw; a viewer sees it too, without the form."""
    import base64

    run = FlowRun(id=new_id(), flow="qc", state=State.RUNNING, created_at=now())
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 40
    plot = Artifact(
        new_id(), run.id, None, "image",
        {"mime": "image/png", "base64": base64.b64encode(png).decode()}, "rec-7: trajectories",
        now(),
    )  # fmt: skip
    note = Artifact(new_id(), run.id, None, "markdown", {"markdown": "# QC"}, "QC", now())
    q = Question(new_id(), run.id, "ask:0", "Keep rec-7?", {"type": "boolean"}, created_at=now())
    server_store.apply(
        [InsertFlowRun(run), InsertArtifact(plot), InsertArtifact(note), InsertQuestion(q)]
    )
    page = viewer.get("/questions").text
    assert "Keep rec-7?" in page and "Only an operator can answer." in page
    assert page.count("<figure>") == 1 and "rec-7: trajectories</figcaption>" in page
    assert f"base64,{base64.b64encode(png).decode()}" in page


def test_without_auth_everyone_is_an_operator(server_store: SqlStore, failed_run: FlowRun) -> None:
    live = LiveServer(server_store, auth=False)
    try:
        with httpx.Client(base_url=live.url) as c:
            page = c.get(f"/runs/{failed_run.id}")
            assert page.status_code == 200 and "Retry</button>" in page.text
            assert c.get("/login").headers["location"] == "/"
    finally:
        live.stop()


def test_runs_are_filtered_and_paged_in_the_database(server_store: SqlStore) -> None:
    ops = [
        InsertFlowRun(
            FlowRun(
                id=new_id(),
                flow="a" if i % 2 else "b",
                state=State.FAILED if i % 3 == 0 else State.COMPLETED,
                parameters={"path": f"rec-{i}.h5"},
                tags=["night"] if i % 5 == 0 else [],
                created_at=1000.0 + i,
            )
        )
        for i in range(30)
    ]
    server_store.apply(ops)
    runs, total = server_store.search_flow_runs(RunFilter(flow="a"), limit=5)
    assert total == 15 and len(runs) == 5 and runs[0].created_at == 1029.0
    _, total = server_store.search_flow_runs(RunFilter(states=[State.FAILED], tag="night"))
    assert total == 2  # i = 0, 15
    runs, total = server_store.search_flow_runs(RunFilter(text="rec-17.h5"))
    assert total == 1 and runs[0].parameters["path"] == "rec-17.h5"
    _, total = server_store.search_flow_runs(RunFilter(text="100%_"))
    assert total == 0
    _, total = server_store.search_flow_runs(RunFilter(since=1010.0, until=1020.0))
    assert total == 10


def test_the_form_follows_the_schema() -> None:
    assert forms.build({"type": "boolean"}).buttons
    enum = forms.build({"enum": ["red", "green"], "type": "string"})
    assert enum.kind == "enum" and enum.options == [('"red"', "red"), ('"green"', "green")]
    assert forms.read(enum, {"v": '"green"'}) == "green"
    model = {
        "$defs": {"Color": {"enum": ["r", "g"], "type": "string"}},
        "type": "object",
        "properties": {
            "color": {"$ref": "#/$defs/Color"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "n": {"type": "number"},
        },
        "required": ["color", "n"],
    }
    f = forms.build(model)
    assert [c.kind for c in f.children] == ["enum", "string", "number"]
    assert not f.children[1].required
    assert forms.read(f, {"v.color": '"r"', "v.note": "", "v.n": "2.5"}) == {
        "color": "r",
        "note": None,
        "n": 2.5,
    }
    with pytest.raises(Exception, match="a number"):
        forms.read(f, {"v.color": '"r"', "v.n": "many"})


def test_the_dag_is_layered_by_dependencies() -> None:
    def tr(key: str, deps: list[TaskRun]) -> TaskRun:
        return TaskRun(
            id=key, flow_run_id="f", task=key, key=key, state=State.COMPLETED,
            depends_on=[d.id for d in deps],
        )  # fmt: skip

    a = tr("a", [])
    b = tr("b", [a])
    c = tr("c", [a])
    d = tr("d", [b, c])
    assert [[t.key for t in col] for col in graphs.layers([a, b, c, d])] == [
        ["a"],
        ["b", "c"],
        ["d"],
    ]
    svg = graphs.dag_svg([a, b, c, d])
    assert svg.count("<path") == 4 and 'data-key="d"' in svg
    big = [tr(f"t{i}", []) for i in range(500)]
    assert 'class="dag compact"' in graphs.dag_svg(big)


def test_the_matrix_names_its_rows_and_the_timeline_keeps_its_last_label() -> None:
    import re as _re

    steps = ["upload", "extract_tracks", "a_step_name_far_too_long_to_show_whole"]
    items = [("r1", "rec-1", {"upload": "COMPLETED"}), ("r2", "rec-2", {})]
    svg = graphs.matrix_svg(steps, items)
    labels = _re.findall(r'<text class="row-label"[^>]*>([^<]*)</text>', svg)
    assert labels == ["upload", "extract_tracks", "a_step_name_far_too_lon…"]
    assert svg.count('class="s-NONE"') == 5  # the cells not started, drawn as such
    wide = graphs.matrix_svg(steps, [(f"r{i}", f"rec-{i}", {}) for i in range(400)])
    assert wide.count('class="row-label"') == 3 * 2  # one set of labels per line of items
    t0 = now()
    runs = [
        TaskRun(
            id=new_id(),
            flow_run_id="f",
            task="a",
            key=f"a:{i}",
            state=State.COMPLETED,
            started_at=t0 + i,
            ended_at=t0 + i + 1,
        )
        for i in range(3)
    ]
    gantt = graphs.gantt_svg(runs, now=t0 + 10)
    width = float(_re.search(r'width="([\d.]+)"', gantt).group(1))  # type: ignore[union-attr]
    axis = _re.findall(r'<text class="axis" x="([\d.]+)"( text-anchor="end")?', gantt)
    assert len(axis) == 5 and axis[-1][1]  # the last label ends at its tick
    assert all(float(x) <= width for x, _ in axis)


def test_a_run_not_taken_by_a_worker_shows_no_attempt_count(
    live: LiveServer, server_store: SqlStore, operator: httpx.Client
) -> None:
    run = FlowRun(id=new_id(), flow="local", state=State.COMPLETED, created_at=now(), attempts=0)
    queued = FlowRun(
        id=new_id(), flow="queued", state=State.COMPLETED, created_at=now(), attempts=2
    )
    server_store.apply([InsertFlowRun(run), InsertFlowRun(queued)])
    assert "<dt>Attempts</dt>" not in operator.get(f"/runs/{run.id}").text
    page = operator.get(f"/runs/{queued.id}").text
    assert "<dt>Attempts</dt>" in page and ">2</dd>" in page


def test_a_parent_of_many_children_is_drawn_as_items_with_progress(
    live: LiveServer, server_store: SqlStore, operator: httpx.Client
) -> None:
    parent = FlowRun(id=new_id(), flow="weekly", state=State.RUNNING, created_at=now())
    ops: list[object] = [InsertFlowRun(parent)]
    children = []
    for i in range(6):
        child = FlowRun(
            id=new_id(),
            flow="process_recording",
            state=State.COMPLETED if i < 4 else State.RUNNING,
            created_at=now(),
            parameters={"path": f"rec-{i}.h5"},
        )
        call = TaskRun(
            id=new_id(),
            flow_run_id=parent.id,
            task="process_recording",
            key=f"process_recording:0[{i}]",
            state=child.state,
            child_flow_run_id=child.id,
        )
        steps = [
            TaskRun(id=new_id(), flow_run_id=child.id, task=name, key=f"{name}:0", state=st)
            for name, st in (
                ("upload", State.COMPLETED),
                ("extract", State.COMPLETED if i < 4 else State.RUNNING),
            )
        ]
        child.parent_task_run_id = call.id
        ops += [InsertFlowRun(child), InsertTaskRun(call), *(InsertTaskRun(s) for s in steps)]
        children.append(child)
    summary = TaskRun(
        id=new_id(), flow_run_id=parent.id, task="summary", key="summary:0", state=State.PENDING
    )
    ops.append(InsertTaskRun(summary))
    server_store.apply(ops)  # type: ignore[arg-type]
    page = operator.get(f"/runs/{parent.id}").text
    assert 'id="items-graph"' in page and "6 child runs" in page
    assert page.count('class="row-label"') == 2  # upload, extract
    assert page.count(">2/2</progress>") == 4 and page.count(">1/2</progress>") == 2
    graph = page[page.index("(its other calls)") :]
    assert 'data-key="summary:0"' in graph and "process_recording:0[0]" not in graph[:2000]


def test_failed_notifications_are_flagged_and_listed_masked(
    live: LiveServer,
    server_store: SqlStore,
    tokens: dict[Role, str],
    operator: httpx.Client,
    viewer: httpx.Client,
) -> None:
    from legato.models import Notification

    hook = "https://hooks.lab.org/T000/B000/s3cr3t-path?token=abc123"
    for i, state in enumerate(("failed", "sent")):
        n = Notification(
            id=new_id(),
            channel=f"webhook:{hook}",
            event="failed",
            dedup_key=f"k{i}",
            flow_run_id=new_id(),
            created_at=now(),
            next_attempt_at=now(),
        )
        assert server_store.enqueue_notification(n)
        error = f"ConnectError: {hook} refused" if state == "failed" else None
        server_store.update_notification(n.id, {"state": state, "attempts": 5, "last_error": error})
    runs = operator.get("/").text
    assert "1 notification could not be sent in the last 24 hours" in runs
    assert 'href="/notifications"' in runs
    page = operator.get("/notifications?failed=1").text
    assert page.count('data-state="failed"') == 1 and 'data-state="sent"' not in page
    assert "s3cr3t-path" not in page and "abc123" not in page  # masked for an operator
    assert "hooks.lab.org" in page and "ConnectError" in page
    assert operator.get("/notifications").text.count("<tr data-state=") == 2
    # a viewer neither sees the banner nor may open the page
    assert "could not be sent" not in viewer.get("/").text
    assert 'href="/notifications"' not in viewer.get("/").text
    assert viewer.get("/notifications").status_code == 403
    admin = _login(live, tokens[Role.ADMIN])
    try:
        assert "s3cr3t-path" in admin.get("/notifications").text  # an admin sees it whole
    finally:
        admin.close()


def test_the_storage_page_is_for_admins_and_counts_what_is_held(
    live: LiveServer, tokens: dict[Role, str], failed_run: FlowRun, operator: httpx.Client
) -> None:
    assert operator.get("/storage").status_code == 403
    assert 'href="/storage"' not in operator.get("/").text
    admin = _login(live, tokens[Role.ADMIN])
    try:
        assert 'href="/storage"' in admin.get("/").text
        page = admin.get("/storage")
        assert page.status_code == 200
        assert re.search(r'data-k="top_level_runs">1<', page.text)
        assert re.search(r'data-table="task_runs"><td class="mono">task_runs</td><td>2<', page.text)
        assert "KiB" in page.text or "MiB" in page.text  # the database's size
    finally:
        admin.close()
