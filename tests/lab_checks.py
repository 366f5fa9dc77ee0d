"""What the lab pipeline's end-to-end tests check, embedded and in server mode alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from legato.models import FlowRun

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
TABLES = ("sessions", "recordings", "qc_verdicts", "statistics")


def finished_children(store: Any, results: Any, count: int) -> tuple[list[FlowRun], list[Any]]:
    """The recordings' child runs, by recording, all COMPLETED, and their results."""
    from legato.models import State

    children = sorted(
        (r for r in store.list_flow_runs(limit=100) if r.parent_task_run_id),
        key=lambda r: str(r.parameters["path"]),
    )
    assert len(children) == count and all(c.state is State.COMPLETED for c in children)
    return children, [results.decode(c.result) for c in children]


def slp_files_open_with_sleap_io(results: list[dict[str, Any]]) -> None:
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


def poses_are_within_the_error_threshold(results: list[dict[str, Any]]) -> None:
    for result in results:
        qc = result["qc"]
        assert qc["identity_swaps"] == 0, result["recording"]
        if not qc["flagged"]:
            assert qc["mean_pixel_error"] < MAX_PIXEL_ERROR, result["recording"]
            assert qc["missing_fraction"] < 0.05 and qc["mean_confidence"] > 0.8


def each_recording_has_its_qc_figures(store: Any, children: list[FlowRun]) -> None:
    """Three figures at least 800 px wide, and the QC table; the figures are real images."""
    import base64
    import io

    from PIL import Image

    for child in children:
        arts = store.get_artifacts(child.id)
        assert sorted(a.kind for a in arts) == ["image", "image", "image", "link", "markdown"]
        for art in (a for a in arts if a.kind == "image"):
            with Image.open(io.BytesIO(base64.b64decode(art.data["base64"]))) as img:
                assert img.width >= 800 and img.height >= 300, art.title
        [report] = [a for a in arts if a.kind == "markdown"]
        assert "mean confidence" in report.data["markdown"]


def the_week_has_its_summary(store: Any, parent: FlowRun, count: int) -> None:
    found = store.get_artifacts(parent.id)
    assert sorted(a.kind for a in found) == ["image", "table"]  # one plot, one table
    arts = {a.kind: a for a in found}
    rows = arts["table"].data["rows"]
    columns = arts["table"].data["columns"]
    assert len(rows) == count and rows[0][columns.index("recording")] == "rec-003"  # flagged first


def the_share_link_serves_the_files(store: Any, child: FlowRun, server_url: str) -> None:
    """The recording's run made a share of its video and .slp files and put the link in an
    artifact; the server serves the predictions file to a client without a token."""
    [made] = store.list_shares(child.id)
    assert [i.kind for i in made.items] == ["artifacts", "path", "path", "path", "path"]
    stem = Path(str(child.parameters["path"])).stem
    names = sorted(Path(str(i.path)).name for i in made.items[1:])
    assert names == sorted(
        f"{stem}{end}"
        for end in (".mp4", ".predictions.slp", ".transformed.slp", ".egocentric.slp")
    )
    [link] = [
        a.data["url"]
        for a in store.get_artifacts(child.id)
        if a.kind == "link" and (a.title or "").startswith("Share")
    ]
    index = next(i for i, p in enumerate(made.items) if str(p.path).endswith(".predictions.slp"))
    name = Path(str(made.items[index].path)).name
    secret = link.rsplit("/s/", 1)[1]
    with httpx.Client(base_url=server_url, timeout=30) as c:
        page = c.get(f"/s/{secret}")
        assert page.status_code == 200 and name in page.text
        got = c.get(f"/s/{secret}/f/files/{index}/{name}")
    assert got.status_code == 200
    assert got.content == Path(str(made.items[index].path)).read_bytes()


def the_graph_draws_the_steps_that_use_upstream_values(store: Any, child: FlowRun) -> None:
    """The steps given upstream values depend on the steps that returned them."""
    runs = {t.id: t for t in store.get_task_runs(child.id)}
    deps = {t.task: {runs[d].task for d in t.depends_on} for t in runs.values()}
    assert deps["extract_poses"] == {"upload"}
    assert deps["qc_report"] == {"upload", "extract_poses"}
    assert deps["detailed_stats"] == {"upload", "transform_poses"}
    assert deps["publish_share_link"] == {"upload", "extract_poses", "transform_poses"}
