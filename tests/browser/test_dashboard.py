"""The dashboard in Chromium: runs, a live run, answering, retrying, items, pools, a viewer.

Each test saves screenshots under tests/artifacts/browser/ (laptop, and phone for some).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from legato.models import Role
from tests.browser.conftest import LAPTOP, PHONE, Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

Shot = Callable[[Any, str], None]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _state(page: Any, run_id: str, state: str, timeout: float = 45_000) -> None:
    page.wait_for_selector(f"#live[data-state={state}]", timeout=timeout)


def test_a_run_updates_live_from_the_runs_page_to_its_end(
    dash: Dashboard, page: Any, shot: Shot, tmp_path: Any
) -> None:
    gate = tmp_path / "gate"
    proc = dash.start("pipeline", "n=4", f"gate={gate}")
    dash.login(page, Role.OPERATOR)
    # The runs page lists it (polling: no reload needed).
    row = page.locator("#runs tr", has_text="pipeline").first
    row.wait_for()
    assert page.locator("#runs").get_attribute("hx-trigger") == "every 3s"
    shot(page, "runs")
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]

    # The graph shows the dependencies and the state of each node while it runs.
    page.wait_for_selector(".dag .node[data-key='hold:0'][data-state=RUNNING]")
    assert page.locator(".dag .node[data-key^='fetch:']").count() == 4
    assert page.locator(".dag .edges path").count() >= 4
    page.locator("#logs", has_text="waiting for the gate").wait_for()
    assert page.locator(".dag .node[data-key='report:0'][data-state=PENDING]").count() == 1
    shot(page, "run-running")

    gate.touch()
    # Without a reload by the test: htmx polls the graph and the logs; at the end the page
    # refreshes itself to show the result and the artifacts.
    _state(page, run_id, "COMPLETED")
    page.locator("#logs", has_text="reported").wait_for()
    assert page.locator(".dag .node[data-key='report:0'][data-state=COMPLETED]").count() == 1
    assert page.locator(".gantt .bar").count() == 6
    assert page.locator("#artifacts h1", has_text="Report").count() == 1
    assert page.locator("#artifacts table td", has_text="b").count() == 1
    assert page.locator("#artifacts a[href='https://example.org/report']").count() == 1
    # Logs filter by level (htmx swaps the log panel; the form also works without JS).
    page.select_option("select[name=level]", "WARNING")
    page.click("#logs-card button:has-text('Show')")
    page.wait_for_function("!document.querySelector('#logs').textContent.includes('fetched')")
    assert "gate opened" in page.locator("#logs").inner_text()
    shot(page, "run-completed")
    page.set_viewport_size(PHONE)
    shot(page, "run-phone")
    assert proc.wait(30) == 0


def test_answering_a_question_in_the_form_finishes_the_run(
    dash: Dashboard, page: Any, shot: Shot
) -> None:
    code, run_id = dash.run("review", "path=rec-7.h5")
    assert code == 3  # paused: waiting for an answer
    dash.login(page, Role.OPERATOR)
    page.goto(f"{dash.url}/questions")
    form = page.locator("form.answer", has_text="Does rec-7.h5 look right?")
    form.wait_for()
    shot(page, "questions")
    page.set_viewport_size(PHONE)
    shot(page, "questions-phone")
    page.set_viewport_size(LAPTOP)
    form.locator("button", has_text="Yes").click()
    page.locator(".notice", has_text="Answered").wait_for()
    dash.wait_state(run_id, "COMPLETED")  # the worker carried it on by replay
    page.goto(f"{dash.url}/runs/{run_id}")
    _state(page, run_id, "COMPLETED")
    answers = page.locator("ul.answers").inner_text()
    assert "by t-operator" in answers and "true" in answers
    assert '"accepted"' in page.locator("pre.json").last.inner_text()
    shot(page, "run-answered")


def test_a_failed_run_is_retried_from_its_page(
    dash: Dashboard, page: Any, shot: Shot, tmp_path: Any
) -> None:
    marker = tmp_path / "marker"
    code, run_id = dash.run("fragile", f"marker={marker}")
    assert code == 1
    dash.login(page, Role.OPERATOR)
    page.goto(f"{dash.url}/runs/{run_id}")
    _state(page, run_id, "FAILED")
    assert "marker is missing" in page.locator("table.tasks").text_content()
    shot(page, "run-failed")
    marker.touch()
    page.click("button:has-text('Retry')")
    page.locator(".notice", has_text="Queued for pool default").wait_for()
    _state(page, run_id, "COMPLETED")
    flaky = page.locator("table.tasks tr[data-key='flaky:0']")
    assert flaky.get_attribute("data-state") == "COMPLETED"
    assert flaky.locator("td").nth(2).inner_text().startswith("2")  # the second attempt
    shot(page, "run-retried")


def test_items_matrix_and_pools(dash: Dashboard, page: Any, shot: Shot, tmp_path: Any) -> None:
    paths = [tmp_path / f"rec-{i}.h5" for i in range(12)]
    for p in paths[:-3]:
        p.touch()
    listed = ",".join(f'"{p}"' for p in paths)
    code, run_id = dash.run("weekly", f"paths=[{listed}]")
    assert code == 1
    dash.login(page, Role.OPERATOR)
    page.goto(f"{dash.url}/runs/{run_id}/items")
    counts = page.locator(".counts").inner_text()
    assert "9 completed" in counts and "3 failed" in counts
    assert page.locator("svg.matrix rect").count() == 12 * 2
    assert page.locator("svg.matrix rect.s-FAILED").count() == 3
    shot(page, "items")
    page.click("a.c.s-FAILED >> nth=0")
    assert page.locator("table.matrix-table tbody tr").count() == 3
    page.goto(f"{dash.url}/pools")
    page.locator("section.worker", has_text="browser-worker").wait_for()
    assert page.locator("tr[data-pool=default]").count() == 1
    shot(page, "pools")


def test_a_step_is_rerun_for_chosen_items_from_the_matrix(
    dash: Dashboard, page: Any, shot: Shot, tmp_path: Any
) -> None:
    ledger = tmp_path / "ledger.txt"
    code, run_id = dash.run("ledgered_week", "n=5", f"ledger={ledger}")
    assert code == 0
    ledger.write_text("")
    dash.login(page, Role.OPERATOR)
    page.goto(f"{dash.url}/runs/{run_id}/items")
    page.select_option("#rerun-form select[name=step]", "extract")
    for i in (1, 3):
        page.check(f"input[name=item][value='ledgered:0[{i}]']")
    shot(page, "items-rerun")
    page.click("#rerun-form button:has-text('Rerun')")
    page.locator(".notice", has_text="Rerunning extract for 2 items").wait_for()
    dash.wait_state(run_id, "COMPLETED")  # reopened by the rerun, replayed by the worker
    lines = sorted(ledger.read_text().splitlines())
    # The chosen step and what depends on it, for the chosen items; nothing upstream.
    assert lines == ["check 10", "check 30", "extract 1", "extract 3", "tally"]
    history = [h.message or "" for h in dash.store.get_history(run_id)]
    assert any(m.startswith("rerun from 'extract:0'") and "by t-operator" in m for m in history)
    events = dash.store.list_audit(limit=20)
    assert any(e.action == "run.rerun" and e.target == run_id for e in events)
    page.goto(f"{dash.url}/runs/{run_id}")
    assert page.locator(".superseded", has_text="rerun by t-operator").count() == 3


def test_a_deployment_form_refuses_a_bad_parameter_and_starts_a_good_one(
    dash: Dashboard, page: Any, shot: Shot
) -> None:
    from legato.deployments import deploy
    from legato.loader import load_flow
    from legato.triggers.setup import configure
    from tests.browser.conftest import FLOWS

    dep = deploy(
        dash.store,
        load_flow(f"{FLOWS}:calibrate"),
        name="calibration",
        pool="default",
        parameters={"frames": 5},
        tags=[],
    )
    configure(dash.store, dep, every=3600.0)  # a schedule to switch off and on
    dash.login(page, Role.OPERATOR)
    page.goto(f"{dash.url}/deployments")
    page.click("a:has-text('calibration')")
    assert page.input_value("input[name='v.frames']") == "5"  # the deployment's default
    page.fill("input[name='v.sample']", "S-12")
    page.fill("input[name='v.frames']", "0")  # the browser allows it; the schema does not
    page.click("#start-form button:has-text('Start')")
    refusal = page.locator("p.error").inner_text()
    assert "Not started" in refusal and "frames" in refusal and "minimum of 1" in refusal
    assert page.input_value("input[name='v.sample']") == "S-12"  # what was typed stays
    assert dash.store.list_flow_runs(flow="calibrate") == []  # nothing was queued
    shot(page, "deployment-refused")
    page.fill("input[name='v.frames']", "3")
    page.click("#start-form button:has-text('Start')")
    page.locator(".notice", has_text="Started from the dashboard").wait_for()
    [run] = dash.store.list_flow_runs(flow="calibrate")
    assert run.parameters == {"sample": "S-12", "frames": 3} and run.deployment == "calibration"
    dash.wait_state(run.id, "COMPLETED")
    page.goto(f"{dash.url}/deployments/calibration")
    assert "needs a runner" in page.locator("section", has_text="Schedules").inner_text()
    dash.login(page, Role.ADMIN)
    page.goto(f"{dash.url}/deployments/calibration")
    assert page.locator("td.sched-state").inner_text() == "on"
    page.click("button.schedule-switch")
    page.locator(".notice", has_text="1 schedule switched off").wait_for()
    assert page.locator("td.sched-state").inner_text() == "off"
    assert all(s.paused for s in dash.store.list_schedules("calibration"))
    shot(page, "deployment")
    page.click("button.schedule-switch")
    page.locator(".notice", has_text="1 schedule switched on").wait_for()
    assert not any(s.paused for s in dash.store.list_schedules("calibration"))
    events = [e.action for e in dash.store.list_audit(target="calibration", limit=20)]
    assert {"deployment.start", "schedule.pause", "schedule.resume"} <= set(events)


def test_a_viewer_sees_no_actions_and_is_refused_anyway(
    dash: Dashboard, page: Any, shot: Shot, tmp_path: Any
) -> None:
    code, failed = dash.run("fragile", f"marker={tmp_path / 'never'}")
    assert code == 1
    code, paused = dash.run("review", "path=viewer.h5")
    assert code == 3
    dash.login(page, Role.VIEWER)
    assert "t-viewer · viewer" in page.locator(".who").inner_text()
    page.goto(f"{dash.url}/runs/{failed}")
    _state(page, failed, "FAILED")
    assert page.locator(".actions button").count() == 0
    shot(page, "viewer-run")
    page.goto(f"{dash.url}/questions")
    assert page.locator("form.answer").count() == 0
    assert "Only an operator can answer" in page.content()
    # Forging the POST with the viewer's own session and CSRF token: refused all the same.
    token = json.loads(page.get_attribute("body", "hx-headers") or "{}")["X-CSRF-Token"]
    refused = page.request.post(
        f"{dash.url}/runs/{failed}/retry", form={"csrf": token}, max_redirects=0
    )
    assert refused.status == 403 and "needs an operator" in refused.text()
    question = dash.store.list_questions(flow_run_id=paused)[0]
    refused = page.request.post(
        f"{dash.url}/questions/{question.id}/answer",
        form={"csrf": token, "v": "true"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert dash.store.get_flow_run(failed).state.value == "FAILED"
    assert dash.store.get_question(question.id).state.value == "pending"


def test_times_show_in_the_readers_time_zone_with_utc_on_hover(
    dash: Dashboard, browser: Any, tmp_path: Any
) -> None:
    import datetime as dt

    gate = tmp_path / "open"
    gate.touch()  # open from the start: the run goes through
    code, run_id = dash.run("pipeline", "n=1", f"gate={gate}")
    assert code == 0
    run = dash.store.get_flow_run(run_id)
    at = run.started_at or run.created_at
    context = browser.new_context(viewport=LAPTOP, timezone_id="America/New_York")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        dash.login(page, Role.VIEWER)
        page.goto(f"{dash.url}/runs/{run_id}")
        started = page.locator("dt:has-text('Started') + dd time")
        started.wait_for()
        page.wait_for_function("document.querySelector('dd time').dataset.local === '1'")
        utc = dt.datetime.fromtimestamp(at, dt.UTC)
        new_york = utc.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # EST in December
        assert started.inner_text() == new_york.strftime("%Y-%m-%d %H:%M:%S")
        assert started.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
        # Parts htmx swaps in are turned too (the log panel, reloaded by its filter form).
        page.click("#logs-card button:has-text('Show')")
        page.wait_for_function(
            "[...document.querySelectorAll('#logs time')].every(t => t.dataset.local === '1')"
        )
    finally:
        context.close()
