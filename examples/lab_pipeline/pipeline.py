"""The lab pipeline: recordings in, tracks, statistics, QC reports, a database and share
links out. Real (small) computations on data the example generates itself.

    recording --io--> remote storage --gpu--> tracks --cpu--> preliminary stats --> database
    remote storage --light--> QC report (plot) ---------------------------------> dashboard
    tracks --gpu--> smoothed tracks --cpu--> detailed stats ----------------------> database
    remote storage, tracks --> share link for collaborators

One child flow run per recording (``process_recording``), mapped by ``lab_pipeline`` over the
recordings in the incoming folder. A recording whose QC is doubtful waits for a person.

    legato run examples/lab_pipeline/pipeline.py:lab_pipeline -p incoming=/data/incoming
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from legato import artifact, ask, flow, get_logger, task

try:  # the same package, run as a script or imported by path
    from imaging import png_bytes, track_overlay
except ImportError:  # pragma: no cover
    from .imaging import png_bytes, track_overlay  # type: ignore[no-redef]

SNR_DOUBTFUL = 8.0  # QC below this asks a person (clean recordings: about 12)


def _home() -> Path:
    return Path(os.environ.get("LEGATO_HOME", Path.home() / ".legato")) / "lab"


def remote_root() -> str:
    """Where recordings are uploaded: any fsspec URL (LAB_REMOTE_STORAGE), a folder here."""
    return os.environ.get("LAB_REMOTE_STORAGE", str(_home() / "remote"))


def database_url() -> str:
    """Results database: LAB_DATABASE_URL (the server's PostgreSQL), else SQLite here."""
    return os.environ.get("LAB_DATABASE_URL", f"sqlite:///{_home() / 'results.db'}")


def _open(url: str, mode: str) -> Any:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if "w" in mode:
        fs.makedirs(fs._parent(path), exist_ok=True)
    return fs.open(path, mode)


# -- the steps -----------------------------------------------------------------------------


@task(pool="io", retries=3, retry_delay=[1, 5, 30])
def upload(path: str) -> str:
    """Copy a recording from the acquisition machine to remote storage."""
    name = Path(path).name
    target = f"{remote_root().rstrip('/')}/recordings/{name}"
    with open(path, "rb") as src, _open(target, "wb") as dst:
        dst.write(src.read())
    return target


def _frames(uri: str) -> np.ndarray:
    with _open(uri, "rb") as fh:
        return np.load(fh)["frames"]


def _brightest_path(frames: np.ndarray) -> np.ndarray:
    """(T, 2) positions of the brightest blob, frame by frame (torch on CUDA when there)."""
    try:
        import torch

        if torch.cuda.is_available():
            t = torch.as_tensor(frames, device="cuda", dtype=torch.float32)
            blurred = torch.nn.functional.avg_pool2d(t[:, None], 5, stride=1, padding=2)[:, 0]
            flat = blurred.reshape(t.shape[0], -1).argmax(dim=1).cpu().numpy()
            return np.stack(np.unravel_index(flat, frames.shape[1:]), axis=1).astype(float)
    except ImportError:
        pass
    kernel = np.ones(5) / 5
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 2, frames.astype(float))
    blurred = np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 1, blurred)
    flat = blurred.reshape(frames.shape[0], -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, frames.shape[1:]), axis=1).astype(float)


@task(pool="gpu", resources={"gpu": 1}, timeout=3600)
def extract_tracks(uri: str) -> str:
    """Find the moving blob in every frame; store its track next to the recording."""
    track = _brightest_path(_frames(uri))
    out = uri.replace("/recordings/", "/tracks/").replace(".npz", ".tracks.npz")
    with _open(out, "wb") as fh:
        np.savez(fh, track=track)
    return out


def _track(uri: str) -> np.ndarray:
    with _open(uri, "rb") as fh:
        return np.load(fh)["track"]


@task
def qc_report(uri: str) -> dict[str, Any]:
    """Signal-to-noise per recording, with a plot of the mean frame and the track."""
    frames = _frames(uri).astype(float)
    peak = frames.max(axis=(1, 2)).mean()
    noise = frames.std(axis=(1, 2)).mean()
    snr = float(peak / max(noise, 1e-9))
    track = _brightest_path(frames.astype(np.uint8))
    name = Path(uri).name
    artifact.image(png_bytes(track_overlay(frames.mean(axis=0), track)), title=f"QC {name}")
    verdict = "**doubtful**" if snr < SNR_DOUBTFUL else "fine"
    artifact.markdown(
        f"# QC for {name}\n\n| measure | value |\n|---|---|\n| frames | {len(frames)} |\n"
        f"| SNR | {snr:.2f} |\n\nVerdict: {verdict}",
        title=f"QC {name}",
    )
    return {"snr": round(snr, 3), "doubtful": snr < SNR_DOUBTFUL}


def _speed(track: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(track, axis=0), axis=1)


@task(pool="cpu")
def prelim_stats(tracks_uri: str) -> dict[str, float]:
    speed = _speed(_track(tracks_uri))
    return {"mean_speed": round(float(speed.mean()), 4), "max_speed": round(float(speed.max()), 4)}


@task(pool="gpu", resources={"gpu": 1})
def transform_tracks(tracks_uri: str) -> str:
    """Smooth the track (a moving average over 5 frames)."""
    track = _track(tracks_uri)
    kernel = np.ones(5) / 5
    smooth = np.stack([np.convolve(track[:, i], kernel, "valid") for i in range(2)], axis=1)
    out = tracks_uri.replace(".tracks.npz", ".smooth.npz")
    with _open(out, "wb") as fh:
        np.savez(fh, track=smooth)
    return out


@task(pool="cpu")
def detailed_stats(smooth_uri: str) -> dict[str, float]:
    track = _track(smooth_uri)
    steps = _speed(track)
    path = float(steps.sum())
    straight = float(np.linalg.norm(track[-1] - track[0]))
    return {
        "path_length": round(path, 3),
        "tortuosity": round(path / straight, 4) if straight > 0 else 0.0,
    }


@task(pool="cpu", retries=2, retry_delay=1)
def sync_to_database(
    recording: str, measures: list[dict[str, Any]], verdict: dict[str, Any]
) -> int:
    """Upsert one row per recording (its statistics and QC verdict): a rerun updates it,
    never duplicates it. The statistics come in as the tasks returned them, so the run's
    graph draws this step after theirs."""
    row = {k: v for m in measures for k, v in m.items()} | verdict
    from sqlalchemy import Column, Float, MetaData, String, Table, Text, create_engine

    meta = MetaData()
    table = Table(
        "recording_stats",
        meta,
        Column("recording", String(300), primary_key=True),
        Column("mean_speed", Float),
        Column("max_speed", Float),
        Column("path_length", Float),
        Column("tortuosity", Float),
        Column("snr", Float),
        Column("approved", String(10)),
        Column("extra", Text),
    )
    url = database_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    meta.create_all(engine)
    names = [c.name for c in table.columns]
    values = {"recording": recording, **{k: row[k] for k in names if k in row}}
    values["approved"] = str(row.get("approved"))
    values["extra"] = json.dumps({k: v for k, v in row.items() if k not in names})
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(table).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["recording"], set_={k: stmt.excluded[k] for k in values if k != "recording"}
    )
    with engine.begin() as conn:
        conn.execute(stmt)
    engine.dispose()
    return 1


@task(pool="io")
def publish_share_link(recording: str, uris: list[str]) -> str:
    """A link collaborators open without an account: the QC report and the recording with
    its tracks (``legato.share``), for 30 days. Its files must lie under the server's share
    roots (LEGATO_SHARE_ROOTS holds the remote storage); where they do not, the link gives
    the report alone. The link is an artifact too, so the run's Slack message carries it."""
    from legato import share
    from legato.errors import Unauthorized, UsageError

    note = f"Recording {recording}: QC report, recording and tracks"
    try:
        link = share(paths=uris, note=note, expires="30d")
    except (UsageError, Unauthorized) as exc:  # outside the share roots; a pool-limited token
        get_logger().warning("%s: sharing the report only (%s)", recording, exc)
        link = share(note=f"Recording {recording}: QC report", expires="30d")
    artifact.link(link, title=f"Share {recording} with collaborators")
    return link


# -- the flows -------------------------------------------------------------------------------


@flow(pool="flows")
def process_recording(path: str) -> dict[str, Any]:
    """Everything for one recording."""
    log = get_logger()
    name = Path(path).stem
    remote = upload(path)
    tracks = extract_tracks.submit(remote)
    qc = qc_report.submit(remote)
    prelim = prelim_stats.submit(tracks)
    smooth = transform_tracks.submit(tracks)
    detailed = detailed_stats.submit(smooth)
    quality = qc.result()
    approved = True
    if quality["doubtful"]:
        log.warning("%s: QC is doubtful (SNR %.2f); asking for approval", name, quality["snr"])
        approved = ask(f"QC of {name} is doubtful (SNR {quality['snr']}). Keep it?", schema=bool)
    measures = [prelim.result(), detailed.result()]
    verdict = {"snr": quality["snr"], "approved": approved}
    sync_to_database(name, measures, verdict)
    row = {k: v for m in measures for k, v in m.items()} | verdict
    link = publish_share_link(name, [remote, tracks.result(), smooth.result()])
    return {"recording": name, "approved": approved, "share": link, **row}


@flow(pool="flows")
def lab_pipeline(incoming: str) -> dict[str, Any]:
    """Process every recording in the incoming folder, one child flow run each."""
    paths = sorted(str(p) for p in Path(incoming).glob("*.npz"))
    get_logger().info("%d recordings in %s", len(paths), incoming)
    results = [f.result() for f in process_recording.map(paths, key=lambda p: Path(p).stem)]
    kept = [r["recording"] for r in results if r["approved"]]
    return {"processed": len(results), "kept": len(kept), "rejected": len(results) - len(kept)}
