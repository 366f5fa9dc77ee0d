"""The flagship example end to end on 5 recordings (embedded): database rows, QC artifacts,
an answered approval, and a rerun that adds no duplicate rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from legato.ask import answer_question
from legato.errors import Paused
from legato.loader import load_flow, load_module
from legato.models import FlowRun, QuestionState, State
from legato.resume import continue_run
from legato.runtime import Runtime
from tests.live_server import LiveServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab_pipeline"


@pytest.fixture
def lab(configure: object, tmp_path: Path, legato_home: Path) -> tuple[Runtime, Path]:
    remote = legato_home / "lab" / "remote"  # where the example uploads recordings
    rt = configure(resources="gpu=2,cpu=2", share_roots=str(remote))  # type: ignore[operator]
    generate = load_module(str(EXAMPLE / "generate.py")).generate
    incoming = tmp_path / "incoming"
    generate(incoming, 5, noisy=(3,))
    return rt, incoming


def test_five_recordings_through_the_lab_pipeline(
    lab: tuple[Runtime, Path], legato_home: Path
) -> None:
    rt, incoming = lab
    pipeline = load_flow(f"{EXAMPLE / 'pipeline.py'}:lab_pipeline")
    with pytest.raises(Paused):
        pipeline(str(incoming))
    [question] = rt.store.list_questions(states=[QuestionState.PENDING])
    assert "rec-003" in question.prompt  # the noisy one, and only it
    answer_question(rt.store, question, True, by="lab-lead")
    parent, error = continue_run(question.flow_run_id)
    assert error is None and parent.state is State.COMPLETED
    assert rt.results.decode(parent.result) == {"processed": 5, "kept": 5, "rejected": 0}

    db = legato_home / "lab" / "results.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT recording, approved FROM recording_stats ORDER BY 1").fetchall()
    assert rows == [(f"rec-{i:03d}", "True") for i in range(5)]

    children = [r for r in rt.store.list_flow_runs(limit=100) if r.parent_task_run_id]
    assert len(children) == 5 and all(c.state is State.COMPLETED for c in children)
    for child in children:
        kinds = sorted(a.kind for a in rt.store.get_artifacts(child.id))
        assert kinds == ["image", "link", "markdown"]
        [image] = [a for a in rt.store.get_artifacts(child.id) if a.kind == "image"]
        assert image.data["mime"] == "image/png" and len(image.data["base64"]) > 1000
    _the_share_links_give_the_recordings(rt, children, legato_home)
    _the_graph_draws_the_steps_that_use_upstream_values(rt, children[0])
    steps = {t.task for c in children for t in rt.store.get_task_runs(c.id)}
    assert steps == {
        "upload",
        "extract_tracks",
        "qc_report",
        "prelim_stats",
        "transform_tracks",
        "detailed_stats",
        "sync_to_database",
        "publish_share_link",
    }

    # A second run over the same recordings updates the rows, never duplicates them.
    with pytest.raises(Paused):
        pipeline(str(incoming))
    [again] = rt.store.list_questions(states=[QuestionState.PENDING])
    answer_question(rt.store, again, False)
    rerun, _ = continue_run(again.flow_run_id)
    assert rt.results.decode(rerun.result) == {"processed": 5, "kept": 4, "rejected": 1}
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT recording, approved FROM recording_stats ORDER BY 1").fetchall()
    assert len(rows) == 5 and rows[3] == ("rec-003", "False")


def _the_share_links_give_the_recordings(
    rt: Runtime, children: list[FlowRun], legato_home: Path
) -> None:
    """Each recording's run made a share of its recording and tracks, and put the link in an
    artifact; a server on this database serves the tracks file to a client without a token."""
    remote = legato_home / "lab" / "remote"
    child = children[0]
    [made] = rt.store.list_shares(child.id)
    assert [i.kind for i in made.items] == ["artifacts", "path", "path", "path"]
    paths = sorted(str(i.path).removeprefix(str(remote)) for i in made.items[1:])
    assert [p.split("/")[1] for p in paths] == ["recordings", "tracks", "tracks"], paths
    [link] = [
        a.data["url"]
        for a in rt.store.get_artifacts(child.id)
        if a.kind == "link" and (a.title or "").startswith("Share")
    ]
    tracks = next(i for i, p in enumerate(made.items) if "/tracks/" in str(p.path))
    name = Path(str(made.items[tracks].path)).name
    live = LiveServer(rt.store, result_storage=str(legato_home / "results"))
    try:
        secret = link.rsplit("/s/", 1)[1]
        with httpx.Client(base_url=live.url, timeout=30) as c:
            page = c.get(f"/s/{secret}")
            assert page.status_code == 200 and name in page.text
            got = c.get(f"/s/{secret}/f/files/{tracks}/{name}")
        assert got.status_code == 200
        assert got.content == Path(str(made.items[tracks].path)).read_bytes()
    finally:
        live.stop()


def _the_graph_draws_the_steps_that_use_upstream_values(rt: Runtime, child: FlowRun) -> None:
    """The steps given ``.result()`` values depend on the steps that returned them."""
    runs = {t.id: t for t in rt.store.get_task_runs(child.id)}
    deps = {t.task: {runs[d].task for d in t.depends_on} for t in runs.values()}
    assert deps["sync_to_database"] == {"prelim_stats", "detailed_stats"}
    assert deps["publish_share_link"] == {"upload", "extract_tracks", "transform_tracks"}
