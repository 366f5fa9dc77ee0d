"""The flagship example end to end on 5 recordings (embedded, SQLite): SLEAP files that open
with sleap-io, pose error against ground truth under the documented threshold, QC figures, a
flagged recording waiting for a person, the lab's database rows exactly once after a rerun,
share links that serve the files, and the week's summary."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

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
MAX_PIXEL_ERROR = 1.0  # docs/tutorial.md: clean recordings are tracked within a pixel
STEPS = {
    "upload",
    "extract_poses",
    "qc_report",
    "prelim_stats",
    "transform_poses",
    "detailed_stats",
    "sync_to_database",
    "publish_share_link",
}
TABLE_ROWS = {"sessions": 3, "recordings": 5, "qc_verdicts": 5}  # 4 a day, 2 cages


@pytest.fixture
def lab(configure: Any, tmp_path: Path, legato_home: Path) -> tuple[Runtime, Path]:
    pytest.importorskip("sleap_io")  # the `demo` extra; `make test` installs it
    remote = legato_home / "lab" / "remote"  # where the example uploads recordings
    rt = configure(resources="gpu=2,cpu=2", share_roots=str(remote))
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
    assert "rec-003" in question.prompt and "confidence" in question.prompt  # the noisy one
    answer_question(rt.store, question, True, by="lab-lead")
    parent, error = continue_run(question.flow_run_id)
    assert error is None and parent.state is State.COMPLETED
    assert rt.results.decode(parent.result) == {
        "processed": 5,
        "kept": 5,
        "rejected": 0,
        "flagged": ["rec-003"],
    }

    children = sorted(
        (r for r in rt.store.list_flow_runs(limit=100) if r.parent_task_run_id),
        key=lambda r: str(r.parameters["path"]),
    )
    assert len(children) == 5 and all(c.state is State.COMPLETED for c in children)
    results = [rt.results.decode(c.result) for c in children]
    _the_slp_files_open_with_sleap_io(results)
    _poses_are_within_the_error_threshold(results)
    _each_recording_has_its_qc_figures(rt, children)
    _the_share_links_give_the_recordings(rt, children, legato_home)
    _the_graph_draws_the_steps_that_use_upstream_values(rt, children[0])
    assert {t.task for c in children for t in rt.store.get_task_runs(c.id)} == STEPS
    _the_week_has_its_summary(rt, parent)

    db = legato_home / "lab" / "lab.db"
    before = _rows(db)
    assert {k: before[k] for k in TABLE_ROWS} == TABLE_ROWS
    assert before["statistics"] > 5 * 10  # prelim and detailed measures, per animal and pair
    assert _verdicts(db)["rec-003"] == "approved"

    # A second run over the same recordings updates the rows, never duplicates them.
    with pytest.raises(Paused):
        pipeline(str(incoming))
    [again] = rt.store.list_questions(states=[QuestionState.PENDING])
    answer_question(rt.store, again, False)
    rerun, _ = continue_run(again.flow_run_id)
    assert rt.results.decode(rerun.result)["rejected"] == 1
    assert _rows(db) == before
    assert _verdicts(db) == {f"rec-{i:03d}": "pass" for i in (0, 1, 2, 4)} | {"rec-003": "rejected"}


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("sessions", "recordings", "qc_verdicts", "statistics")
        }


def _verdicts(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT recording, verdict FROM qc_verdicts").fetchall())


def _the_slp_files_open_with_sleap_io(results: list[dict[str, Any]]) -> None:
    """Predictions, transformed and egocentric files: 90 frames, 2 tracked instances each
    (clean recordings), 5 nodes, per-point scores."""
    import sleap_io as sio

    for result in results:
        qc = result["qc"]
        for suffix in ("predictions", "transformed", "egocentric"):
            path = str(result["files"][suffix])
            labels = sio.load_slp(path, open_videos=False)
            assert [n.name for n in labels.skeleton.nodes] == [
                "nose", "left_ear", "right_ear", "body", "tail_base",
            ]  # fmt: skip
            assert len(labels.tracks) == 2 and len(labels.videos) == 1
            assert labels.videos[0].filename.endswith(f"{result['recording']}.mp4")
            assert len(labels.labeled_frames) == qc["frames"] == 90
            instances = [len(lf.predicted_instances) for lf in labels.labeled_frames]
            if not qc["flagged"]:
                assert instances == [2] * 90
            points = labels.numpy(return_confidence=True, user_instances=False)
            assert points.shape == (90, 2, 5, 3)


def _poses_are_within_the_error_threshold(results: list[dict[str, Any]]) -> None:
    for result in results:
        qc = result["qc"]
        assert qc["identity_swaps"] == 0, result["recording"]
        if not qc["flagged"]:
            assert qc["mean_pixel_error"] < MAX_PIXEL_ERROR, result["recording"]
            assert qc["missing_fraction"] < 0.05 and qc["mean_confidence"] > 0.8


def _each_recording_has_its_qc_figures(rt: Runtime, children: list[FlowRun]) -> None:
    """Three figures at least 800 px wide, and the QC table; the figures are real images."""
    import base64
    import io

    from PIL import Image

    for child in children:
        arts = rt.store.get_artifacts(child.id)
        assert sorted(a.kind for a in arts) == ["image", "image", "image", "link", "markdown"]
        for art in (a for a in arts if a.kind == "image"):
            with Image.open(io.BytesIO(base64.b64decode(art.data["base64"]))) as img:
                assert img.width >= 800 and img.height >= 300, art.title
        [report] = [a for a in arts if a.kind == "markdown"]
        assert "mean confidence" in report.data["markdown"]


def _the_week_has_its_summary(rt: Runtime, parent: FlowRun) -> None:
    arts = {a.kind: a for a in rt.store.get_artifacts(parent.id)}
    assert set(arts) == {"image", "table"}
    rows = arts["table"].data["rows"]
    columns = arts["table"].data["columns"]
    assert len(rows) == 5 and rows[0][columns.index("recording")] == "rec-003"  # flagged first


def _the_share_links_give_the_recordings(
    rt: Runtime, children: list[FlowRun], legato_home: Path
) -> None:
    """Each recording's run made a share of its video and .slp files, and put the link in an
    artifact; a server on this database serves the predictions file without a token."""
    child = children[0]
    [made] = rt.store.list_shares(child.id)
    assert [i.kind for i in made.items] == ["artifacts", "path", "path", "path", "path"]
    names = sorted(Path(str(i.path)).name for i in made.items[1:])
    assert names == [
        "rec-000.egocentric.slp", "rec-000.mp4", "rec-000.predictions.slp",
        "rec-000.transformed.slp",
    ]  # fmt: skip
    [link] = [
        a.data["url"]
        for a in rt.store.get_artifacts(child.id)
        if a.kind == "link" and (a.title or "").startswith("Share")
    ]
    index = next(i for i, p in enumerate(made.items) if str(p.path).endswith(".predictions.slp"))
    name = Path(str(made.items[index].path)).name
    live = LiveServer(rt.store, result_storage=str(legato_home / "results"))
    try:
        secret = link.rsplit("/s/", 1)[1]
        with httpx.Client(base_url=live.url, timeout=30) as c:
            page = c.get(f"/s/{secret}")
            assert page.status_code == 200 and name in page.text
            got = c.get(f"/s/{secret}/f/files/{index}/{name}")
        assert got.status_code == 200
        assert got.content == Path(str(made.items[index].path)).read_bytes()
    finally:
        live.stop()


def _the_graph_draws_the_steps_that_use_upstream_values(rt: Runtime, child: FlowRun) -> None:
    """The steps given upstream values depend on the steps that returned them."""
    runs = {t.id: t for t in rt.store.get_task_runs(child.id)}
    deps = {t.task: {runs[d].task for d in t.depends_on} for t in runs.values()}
    assert deps["extract_poses"] == {"upload"}
    assert deps["qc_report"] == {"upload", "extract_poses"}
    assert deps["detailed_stats"] == {"upload", "transform_poses"}
    assert deps["publish_share_link"] == {"upload", "extract_poses", "transform_poses"}
