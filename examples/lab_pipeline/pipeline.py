"""The lab pipeline: pose-tracking recordings in; SLEAP predictions, QC reports, statistics in
the lab's database and share links out. Each step is its own task on its own pool:

    recording --io--> remote storage --gpu--> predictions (.slp) --cpu--> preliminary stats
    predictions --any--> QC report (figures, verdict; a person when it looks wrong)
    QC verdict --cpu--> lab database (sessions, recordings, verdicts)
    predictions --gpu--> transformed poses (.slp) --cpu--> detailed stats --> lab database
    recording and .slp files --io--> share link for collaborators

One child flow run per recording (``process_recording``), mapped by ``lab_pipeline`` (the
weekly run) over the recordings in a folder; it ends with a summary across all of them.

    legato run examples/lab_pipeline/pipeline.py:lab_pipeline -p incoming=/data/incoming
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from legato import artifact, ask, flow, get_logger, task

try:  # the same package, run as a script or imported by path
    from labkit import figures, labdb, measures, poses, qc, tracking, transfer, video
except ImportError:  # pragma: no cover
    from .labkit import (  # type: ignore[no-redef]
        figures,
        labdb,
        measures,
        poses,
        qc,
        tracking,
        transfer,
        video,
    )


def _home() -> Path:
    return Path(os.environ.get("LEGATO_HOME", Path.home() / ".legato")) / "lab"


def remote_root() -> str:
    """Where recordings are uploaded: any fsspec URL (LAB_REMOTE_STORAGE), a folder here."""
    return os.environ.get("LAB_REMOTE_STORAGE", str(_home() / "remote")).rstrip("/")


def database_url() -> str:
    """The lab's database: LAB_DATABASE_URL (PostgreSQL in server mode), else SQLite here."""
    return os.environ.get("LAB_DATABASE_URL", f"sqlite:///{_home() / 'lab.db'}")


def _scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="lab-")


def _frames(rec: dict[str, Any]) -> np.ndarray:
    with _scratch() as tmp:
        return video.read_mp4(transfer.local_copy(rec["video"], tmp))


def _load(url: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    with _scratch() as tmp:
        return poses.load_slp(transfer.local_copy(url, tmp), frames)


def _save(url: str, points: np.ndarray, scores: np.ndarray, rec: dict[str, Any], step: str) -> str:
    with _scratch() as tmp:
        local = Path(tmp) / Path(url).name
        poses.save_slp(
            local, points, scores, rec["video"], {"step": step, "recording": rec["recording"]}
        )
        return transfer.put_file(local, url)


# -- the steps -----------------------------------------------------------------------------


@task(pool="io", retries=3, retry_delay=[1, 5, 30])
def upload(path: str) -> dict[str, Any]:
    """Copy a recording (video, metadata, ground truth when there is one) to remote storage:
    chunked, resumable, checksum-verified (``labkit.transfer``)."""
    source = Path(path)
    meta = json.loads(source.with_suffix(".json").read_text())
    base = f"{remote_root()}/recordings/{source.stem}"
    sent = transfer.upload(source, f"{base}/{source.name}")
    truth = source.with_suffix(".truth.npz")
    if truth.exists():
        transfer.upload(truth, f"{base}/{truth.name}")
    get_logger().info(
        "%s: %d bytes, sha256 %s (%d chunks sent, %d already there)",
        source.stem, sent["bytes"], sent["sha256"][:12], sent["sent"], sent["skipped"],
    )  # fmt: skip
    return {
        "recording": source.stem,
        "video": f"{base}/{source.name}",
        "truth": f"{base}/{truth.name}" if truth.exists() else None,
        "sha256": sent["sha256"],
        "session": meta["session"],
        "recorded_on": meta["recorded_on"],
        "subjects": meta["subjects"],
        "fps": float(meta["fps"]),
        "frames": int(meta["frames"]),
    }


@task(pool="gpu", resources={"gpu": 1}, timeout=3600)
def extract_poses(rec: dict[str, Any]) -> dict[str, Any]:
    """Keypoints and identities of both animals in every frame, as a SLEAP predictions file;
    the error against ground truth when the recording has it."""
    found = tracking.track(_frames(rec))
    error = None
    if rec["truth"]:
        with transfer.open_url(rec["truth"], "rb") as fh:
            truth = np.load(fh)["poses"]
        error = tracking.error_against_truth(found.points, truth)
    url = rec["video"].removesuffix(".mp4") + ".predictions.slp"
    _save(url, found.points, found.scores, rec, f"extract_poses ({found.backend})")
    return {"predictions": url, "backend": found.backend, "error": error}


@task
def qc_report(rec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    """Figures and a table of the tracking's quality; flagged when a threshold is crossed."""
    name = rec["recording"]
    points, scores = _load(predicted["predictions"], rec["frames"])
    with _scratch() as tmp:
        first = video.first_frame(transfer.local_copy(rec["video"], tmp))
    artifact.image(figures.trajectories(first, points, name), title=f"{name}: trajectories")
    artifact.image(figures.confidence_histograms(scores, points, name), title=f"{name}: confidence")
    artifact.image(
        figures.missing_over_time(points, rec["fps"], name), title=f"{name}: missing points"
    )
    found = qc.measure(points, scores, predicted["error"])
    why = qc.reasons(found)
    lines = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in found.items())
    verdict = "**needs a look**: " + "; ".join(why) if why else "pass"
    artifact.markdown(
        f"# QC for {name}\n\n| measure | value |\n|---|---|\n{lines}\n\nVerdict: {verdict}",
        title=f"QC {name}",
    )
    return {**found, "reasons": why, "flagged": bool(why)}


@task(pool="cpu")
def prelim_stats(rec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    """Speed, distance travelled and missing points per body part, into the lab database."""
    points, _ = _load(predicted["predictions"], rec["frames"])
    found = measures.preliminary(points, rec["fps"])
    labdb.upsert(database_url(), "statistics", labdb.statistic_rows(rec["recording"], found))
    return found


@task(pool="gpu", resources={"gpu": 1})
def transform_poses(rec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, str]:
    """Gaps filled and smoothed (pixel coordinates), and the same in each animal's own frame
    (egocentric), as two more .slp files."""
    points, scores = _load(predicted["predictions"], rec["frames"])
    clean = poses.smooth(poses.fill_gaps(points))
    base = rec["video"].removesuffix(".mp4")
    return {
        "transformed": _save(f"{base}.transformed.slp", clean, scores, rec, "transform_poses"),
        "egocentric": _save(
            f"{base}.egocentric.slp", poses.egocentric(clean), scores, rec, "egocentric"
        ),
    }


@task(pool="cpu")
def detailed_stats(rec: dict[str, Any], transformed: dict[str, str]) -> dict[str, Any]:
    """Distance between the animals, time in the centre, approach and contact bouts."""
    points, _ = _load(transformed["transformed"], rec["frames"])
    found = measures.detailed(points, rec["fps"])
    labdb.upsert(database_url(), "statistics", labdb.statistic_rows(rec["recording"], found))
    return found


@task(pool="cpu", retries=2, retry_delay=1)
def sync_to_database(
    rec: dict[str, Any], predicted: dict[str, Any], quality: dict[str, Any], verdict: str
) -> int:
    """The session, the recording and its QC verdict, upserted: a rerun updates the rows and
    never duplicates them."""
    url = database_url()
    labdb.upsert(url, "sessions", [{
        "session_id": rec["session"], "recorded_on": rec["recorded_on"],
        "subjects": ",".join(rec["subjects"]),
    }])  # fmt: skip
    labdb.upsert(url, "recordings", [{
        "recording": rec["recording"], "session_id": rec["session"], "video": rec["video"],
        "sha256": rec["sha256"], "frames": rec["frames"], "fps": rec["fps"],
        "predictions": predicted["predictions"],
    }])  # fmt: skip
    labdb.upsert(url, "qc_verdicts", [{
        "recording": rec["recording"], "verdict": verdict, "reasons": "; ".join(quality["reasons"]),
        "missing_fraction": quality["missing_fraction"],
        "mean_confidence": quality["mean_confidence"],
        "identity_swaps": quality.get("identity_swaps"),
        "mean_pixel_error": quality.get("mean_pixel_error"),
    }])  # fmt: skip
    return 3


@task(pool="io")
def publish_share_link(recording: str, uris: list[str]) -> str:
    """A link collaborators open without an account: the QC report, the video and its .slp
    files (``legato.share``), for 30 days. Its files must lie under the server's share roots
    (LEGATO_SHARE_ROOTS holds the remote storage); where they do not, the link gives the
    report alone. The link is an artifact too, so the run's Slack message carries it."""
    from legato import share
    from legato.errors import Unauthorized, UsageError

    note = f"Recording {recording}: QC report, video and pose files"
    try:
        link = share(paths=uris, note=note, expires="30d")
    except (UsageError, Unauthorized) as exc:  # outside the share roots; a pool-limited token
        get_logger().warning("%s: sharing the report only (%s)", recording, exc)
        link = share(note=f"Recording {recording}: QC report", expires="30d")
    artifact.link(link, title=f"Share {recording} with collaborators")
    return link


@task
def weekly_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One plot and one table across the week's recordings, flagged ones first."""
    rows = sorted(
        (
            {
                "recording": r["recording"],
                "flagged": r["flagged"],
                "verdict": r["verdict"],
                "missing_fraction": r["qc"]["missing_fraction"],
                "mean_confidence": r["qc"]["mean_confidence"],
                "identity_swaps": r["qc"].get("identity_swaps"),
                "contact_bouts": r["detailed"]["contact_bouts"],
                "reasons": "; ".join(r["qc"]["reasons"]),
            }
            for r in results
        ),
        key=lambda row: (not row["flagged"], row["recording"]),
    )
    if rows:
        artifact.image(figures.week_summary(rows), title="The week's recordings")
    artifact.table(rows, title=f"The week: {len(rows)} recordings, flagged first")
    return {"recordings": len(rows), "flagged": [r["recording"] for r in rows if r["flagged"]]}


# -- the flows -------------------------------------------------------------------------------


@flow(pool="flows")
def process_recording(path: str) -> dict[str, Any]:
    """Everything for one recording."""
    rec = upload(path)
    name = rec["recording"]
    predicted = extract_poses.submit(rec)
    quality_f = qc_report.submit(rec, predicted)
    prelim = prelim_stats.submit(rec, predicted)
    transformed = transform_poses.submit(rec, predicted)
    detailed = detailed_stats.submit(rec, transformed)
    quality = quality_f.result()
    verdict = "pass"
    if quality["flagged"]:
        why = "; ".join(quality["reasons"])
        get_logger().warning("%s: QC needs a look (%s); asking for approval", name, why)
        keep = ask(f"QC of {name} looks wrong: {why}. Keep it?", schema=bool)
        verdict = "approved" if keep else "rejected"
    sync_to_database(rec, predicted, quality, verdict)
    files = {"video": rec["video"], "predictions": predicted.result()["predictions"]}
    files |= transformed.result()
    link = publish_share_link(name, list(files.values()))
    return {
        "recording": name,
        "verdict": verdict,
        "flagged": quality["flagged"],
        "qc": quality,
        "prelim": prelim.result(),
        "detailed": detailed.result(),
        "share": link,
        "files": files,
    }


@flow(pool="flows")
def lab_pipeline(incoming: str) -> dict[str, Any]:
    """The week's run: every recording in the folder, one child flow run each, then a
    summary report across all of them."""
    paths = sorted(str(p) for p in Path(incoming).glob("*.mp4"))
    get_logger().info("%d recordings in %s", len(paths), incoming)
    results = [f.result() for f in process_recording.map(paths, key=lambda p: Path(p).stem)]
    summary = weekly_summary(results)
    rejected = sum(r["verdict"] == "rejected" for r in results)
    return {
        "processed": len(results),
        "kept": len(results) - rejected,
        "rejected": rejected,
        "flagged": summary["flagged"],
    }
