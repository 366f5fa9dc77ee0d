"""get_logger() records and artifacts are stored with the run (and task run) they came from."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path

from legato import artifact, flow, get_logger, task
from legato.runtime import Runtime, get_runtime
from legato.store import Store
from legato.testing import last_flow_run, task_runs_by_key

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def store() -> Store:
    return get_runtime().store


def test_log_records_are_stored_per_run_and_task_run() -> None:
    @task
    def noisy(x: int) -> int:
        log = get_logger()
        log.debug("not stored at INFO")
        log.info("working on %s", x)
        log.warning("careful with %s", x)
        return x

    @flow
    def logged(n: int) -> None:
        get_logger().info("flow starts with %d items", n)
        for f in noisy.map(range(n)):
            f.result()

    logged(2)
    logged(1)
    runs = store().list_flow_runs(flow="logged")
    assert len(runs) == 2
    second, first = runs
    entries = store().get_logs(first.id)
    assert [e.record.flow_run_id for e in entries] == [first.id] * len(entries)
    flow_level = [e.record for e in entries if e.record.task_run_id is None]
    assert [(r.message, r.level, r.logger) for r in flow_level] == [
        ("flow starts with 2 items", logging.INFO, "legato.run.logged")
    ]
    by_key = task_runs_by_key(store(), first.id)
    for i in range(2):
        tr = by_key[f"noisy:0[{i}]"]
        records = [e.record for e in store().get_logs(first.id, task_run_id=tr.id)]
        assert [(r.message, r.level) for r in records] == [
            (f"working on {i}", logging.INFO),
            (f"careful with {i}", logging.WARNING),
        ]
        assert {r.logger for r in records} == {"legato.run.noisy"}
    assert all("not stored" not in e.record.message for e in entries)
    warnings = store().get_logs(first.id, min_level=logging.WARNING)
    assert sorted(e.record.message for e in warnings) == ["careful with 0", "careful with 1"]
    assert len(store().get_logs(second.id)) == 3  # its own records only


def test_log_level_setting_controls_what_is_stored(configure: Callable[..., Runtime]) -> None:
    configure(log_level="debug")

    @flow
    def verbose() -> None:
        get_logger().debug("now stored")

    verbose()
    [entry] = store().get_logs(last_flow_run(store()).id)
    assert (entry.record.message, entry.record.level) == ("now stored", logging.DEBUG)


def test_an_exception_logged_with_its_traceback() -> None:
    @task
    def handles_error() -> None:
        try:
            raise ValueError("inner problem")
        except ValueError:
            get_logger("custom").exception("it broke")

    @flow
    def tracebacks() -> None:
        handles_error()

    tracebacks()
    [entry] = store().get_logs(last_flow_run(store()).id)
    assert entry.record.logger == "legato.run.custom"
    assert entry.record.message.startswith("it broke\nTraceback")
    assert "ValueError: inner problem" in entry.record.message


def test_artifacts_are_stored_with_their_run(tmp_path: Path) -> None:
    image_file = tmp_path / "plot.png"
    image_file.write_bytes(PNG)

    @task
    def report(path: str) -> None:
        artifact.markdown("# QC\nall good", title="QC report")
        artifact.table([{"item": "a", "score": 0.5}, {"item": "b", "score": 1}], title="scores")
        artifact.table([[1, "x"], [2, "y"]], columns=["n", "letter"])
        artifact.image(path, title="plot")
        artifact.image(PNG)
        artifact.link("https://example.org/data", "the data")

    ids: dict[str, str] = {}

    @flow
    def reporting(path: str) -> None:
        fut = report.submit(path)
        ids["task"] = fut.task_run_id
        fut.result()
        artifact.markdown("from the flow")

    reporting(str(image_file))
    run = last_flow_run(store())
    arts = store().get_artifacts(run.id)
    assert [a.kind for a in arts] == [
        "markdown",
        "table",
        "table",
        "image",
        "image",
        "link",
        "markdown",
    ]
    assert [a.task_run_id for a in arts] == [ids["task"]] * 6 + [None]
    assert all(a.flow_run_id == run.id for a in arts)
    md, t1, t2, img, img2, link, flow_md = arts
    assert (md.title, md.data) == ("QC report", {"markdown": "# QC\nall good"})
    assert t1.title == "scores"
    assert t1.data == {"columns": ["item", "score"], "rows": [["a", 0.5], ["b", 1]]}
    assert t2.data == {"columns": ["n", "letter"], "rows": [[1, "x"], [2, "y"]]}
    assert img.title == "plot"
    assert img.data["mime"] == "image/png"
    assert base64.b64decode(img.data["base64"]) == PNG
    assert img2.data["mime"] == "image/png"
    assert (link.title, link.data) == ("the data", {"url": "https://example.org/data"})
    assert flow_md.data == {"markdown": "from the flow"}
    assert len({a.id for a in arts}) == len(arts)


def test_logs_and_artifacts_from_a_task_in_a_child_process_are_stored() -> None:
    @task(timeout=60)
    def isolated() -> None:
        get_logger().info("hello from the child")
        artifact.link("https://example.org/child")

    ids: dict[str, str] = {}

    @flow
    def child_process() -> None:
        fut = isolated.submit()
        ids["task"] = fut.task_run_id
        fut.result()

    child_process()
    run = last_flow_run(store())
    [entry] = store().get_logs(run.id)
    assert (entry.record.message, entry.record.task_run_id) == ("hello from the child", ids["task"])
    [art] = store().get_artifacts(run.id)
    assert (art.kind, art.task_run_id) == ("link", ids["task"])
