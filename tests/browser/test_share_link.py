"""A share link in Chromium: an operator makes it from the run's page; a collaborator opens it
in a fresh browser context (no cookies, no login), on a phone, sees the artifacts and
downloads a file; a password-protected link asks for its password first.

Screenshots land under tests/artifacts/browser/ (share-*.png).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from legato.models import Artifact, FlowRun, Role, State, TaskRun, new_id, now
from legato.results import ResultStorage
from legato.store import InsertFlowRun, InsertTaskRun, open_store
from legato.store.ops import InsertArtifact
from legato.store.sql import SqlStore
from tests.browser.conftest import LAPTOP, PHONE
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

Shot = Callable[[Any, str], None]
WIDER_THAN_A_PHONE = """[...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > 391 || e.scrollWidth > e.clientWidth + 1)
    .filter(e => !e.closest('.scroll'))
    .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 40))"""
# A 2x2 red PNG: an image artifact as artifact.image stores one.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


@dataclass
class Shared:
    live: LiveServer
    store: SqlStore
    run: FlowRun
    tokens: dict[Role, str]
    data: Path


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Shared]:
    data = tmp_path / "recordings"
    (data / "mouse-12").mkdir(parents=True)
    (data / "mouse-12" / "day3.tracks.csv").write_text("frame,x,y\n0,1.5,2.5\n1,1.6,2.4\n")
    (data / "mouse-12" / "day3.raw").write_bytes(os.urandom(3 * 2**20))
    store = open_store(f"sqlite:///{tmp_path / 'server.db'}")
    assert isinstance(store, SqlStore)
    storage = ResultStorage(str(tmp_path / "results"), inline_max_bytes=16)
    run = FlowRun(id=new_id(), flow="process_recording", state=State.COMPLETED, created_at=now())
    task = TaskRun(
        id=new_id(),
        flow_run_id=run.id,
        task="detailed_stats",
        key="detailed_stats:0",
        state=State.COMPLETED,
        result=storage.encode({"speed": [1.0] * 50}),
    )
    image = {"mime": "image/png", "base64": base64.b64encode(PNG).decode()}
    store.apply(
        [
            InsertFlowRun(run),
            InsertTaskRun(task),
            InsertArtifact(
                Artifact(
                    new_id(),
                    run.id,
                    None,
                    "markdown",
                    {"markdown": "## QC passed\nSNR 12.1"},
                    "QC report",
                )
            ),
            InsertArtifact(
                Artifact(
                    new_id(),
                    run.id,
                    None,
                    "table",
                    {"columns": ["metric", "value"], "rows": [["frames", 9000], ["speed", 1.2]]},
                    "Statistics",
                )
            ),
            InsertArtifact(Artifact(new_id(), run.id, None, "image", image, "Track overlay")),
        ]
    )
    tokens = {role: store.create_token(f"t-{role.value}", role)[1] for role in Role}
    live = LiveServer(store, result_storage=str(tmp_path / "results"), share_roots=str(data))
    yield Shared(live, store, run, tokens, data)
    live.stop()
    store.close()


def _make_link(browser: Any, s: Shared, shot: Shot, *, password: str = "") -> str:
    """An operator shares the run's artifacts, results and recordings from its page."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{s.live.url}/login")
        page.fill("input[name=token]", s.tokens[Role.OPERATOR])
        page.click("button:has-text('Log in')")
        page.wait_for_url(f"{s.live.url}/")
        page.goto(f"{s.live.url}/runs/{s.run.id}")
        form = page.locator("form.share-form")
        form.locator("input[name=results]").check()
        form.locator("textarea[name=paths]").fill(str(s.data / "mouse-12"))
        form.locator("select[name=expires]").select_option("30d")
        form.locator("input[name=note]").fill("Day 3 of mouse 12, for the Tuesday meeting")
        if password:
            form.locator("input[name=password]").fill(password)
        form.locator("button:has-text('Share')").click()
        link = page.locator("input.share-link")
        link.wait_for()
        shot(page, "share-made" + ("-password" if password else ""))
        value = link.input_value()
        assert value.startswith(f"{s.live.url}/s/lgs_")
        return str(value)
    finally:
        context.close()


def test_a_collaborator_opens_a_link_on_a_phone_and_downloads(
    browser: Any, shared: Shared, shot: Shot, tmp_path: Path
) -> None:
    link = _make_link(browser, shared, shot)
    context = browser.new_context(viewport=PHONE, accept_downloads=True)  # no cookies
    assert context.cookies() == []
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(link)
        page.get_by_role("heading", name="QC passed").wait_for()
        assert page.get_by_role("cell", name="9000").is_visible()
        image = page.locator("article.artifact-image img")
        assert image.evaluate("img => img.complete && img.naturalWidth") == 2
        assert page.get_by_text("Day 3 of mouse 12").is_visible()
        assert page.locator("a:has-text('Log out')").count() == 0  # no session, no dashboard
        wide = page.evaluate(WIDER_THAN_A_PHONE)
        # the page fits the phone: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], wide
        shot(page, "share-link-phone")
        with page.expect_download() as info:
            page.get_by_role("link", name="day3.tracks.csv").click()
        saved = tmp_path / "download.csv"
        info.value.save_as(saved)
        assert saved.read_bytes() == (shared.data / "mouse-12" / "day3.tracks.csv").read_bytes()
        with page.expect_download() as info:
            page.get_by_role("link", name="day3.raw").click()
        info.value.save_as(tmp_path / "raw")
        assert (tmp_path / "raw").read_bytes() == (
            shared.data / "mouse-12" / "day3.raw"
        ).read_bytes()
        # the link opens nothing else: the dashboard still wants a login
        page.goto(f"{shared.live.url}/runs/{shared.run.id}")
        assert "/login" in page.url
    finally:
        context.close()
    [made] = shared.store.list_shares(shared.run.id)
    log = {(a.item, a.status, a.bytes) for a in shared.store.list_share_accesses(made.id)}
    raw = (shared.data / "mouse-12" / "day3.raw").stat().st_size
    csv = (shared.data / "mouse-12" / "day3.tracks.csv").stat().st_size
    assert {("files/2/day3.tracks.csv", 200, csv), ("files/2/day3.raw", 200, raw)} <= log


def test_a_password_protected_link_asks_first(browser: Any, shared: Shared, shot: Shot) -> None:
    link = _make_link(browser, shared, shot, password="tuesday-42")
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(link)
        page.get_by_role("heading", name="This link needs a password").wait_for()
        assert page.get_by_text("QC passed").count() == 0
        page.fill("input[name=password]", "wrong")
        page.click("button:has-text('Open')")
        page.get_by_text("Wrong password.").wait_for()
        page.fill("input[name=password]", "tuesday-42")
        page.click("button:has-text('Open')")
        page.get_by_role("heading", name="QC passed").wait_for()
        shot(page, "share-link-unlocked")
    finally:
        context.close()
