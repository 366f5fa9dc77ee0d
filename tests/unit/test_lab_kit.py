"""The lab pipeline's own code (examples/lab_pipeline/labkit), piece by piece: uploads that
resume and verify, the assignment of points to animals, errors and identity swaps against
ground truth, gap filling, egocentric poses, bouts, and upserts that never duplicate."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sleap_io")  # the `demo` extra; `make test` installs it

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab_pipeline"


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import labkit  # type: ignore[import-not-found]

    return labkit


def test_an_upload_cut_short_resumes_at_the_first_missing_chunk(kit: Any, tmp_path: Path) -> None:
    from labkit import transfer

    source = tmp_path / "rec.mp4"
    source.write_bytes(np.random.default_rng(0).bytes(5_500))
    target = str(tmp_path / "remote" / "rec.mp4")

    def cut(done: int, total: int) -> None:
        if done >= 2_000:
            raise ConnectionError("the network went away")

    with pytest.raises(ConnectionError):
        transfer.upload(source, target, chunk=1_000, progress=cut)
    assert not Path(target).exists()
    assert len(list(Path(target + ".parts").iterdir())) == 2
    done = transfer.upload(source, target, chunk=1_000)
    assert (done["sent"], done["skipped"], done["already"]) == (4, 2, False)
    assert Path(target).read_bytes() == source.read_bytes()
    assert Path(target + ".sha256").read_text() == transfer.sha256_of(source)
    assert not Path(target + ".parts").exists()
    assert transfer.upload(source, target, chunk=1_000)["already"] is True


def test_a_corrupted_chunk_fails_the_checksum_and_the_next_try_starts_over(
    kit: Any, tmp_path: Path
) -> None:
    from labkit import transfer

    source = tmp_path / "rec.mp4"
    source.write_bytes(np.random.default_rng(1).bytes(3_000))
    target = str(tmp_path / "remote" / "rec.mp4")

    def cut(done: int, total: int) -> None:
        if done >= 2_000:
            raise ConnectionError("cut")

    with pytest.raises(ConnectionError):
        transfer.upload(source, target, chunk=1_000, progress=cut)
    first = sorted(Path(target + ".parts").iterdir())[0]
    first.write_bytes(b"x" * 1_000)  # the storage garbled it; its name still claims the hash
    with pytest.raises(transfer.ChecksumMismatch):
        transfer.upload(source, target, chunk=1_000)
    again = transfer.upload(source, target, chunk=1_000)
    assert again["sent"] == 3 and Path(target).read_bytes() == source.read_bytes()


def test_assign_finds_the_least_cost_matching(kit: Any) -> None:
    from labkit.tracking import assign

    rng = np.random.default_rng(2)
    for shape in [(2, 2), (2, 1), (1, 2), (3, 2), (2, 3)]:
        cost = rng.uniform(0, 10, shape)
        pairs = assign(cost)
        assert len(pairs) == min(shape) and len({c for _, c in pairs}) == len(pairs)
        best = min(
            sum(cost[r, c] for r, c in zip(rows, cols, strict=True))
            for rows in itertools.permutations(range(shape[0]), min(shape))
            for cols in itertools.permutations(range(shape[1]), min(shape))
        )
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


def test_error_against_truth_counts_an_identity_swap(kit: Any) -> None:
    from labkit import scene, tracking

    truth = scene.simulate(4, frames=60).poses
    found = truth + 0.5
    found[30:] = found[30:, ::-1]  # the tracker swapped the animals halfway through
    error = tracking.error_against_truth(found, truth)
    assert error["identity_swaps"] == 1
    assert error["mean_pixel_error"] == pytest.approx(np.sqrt(0.5), abs=1e-3)
    assert tracking.error_against_truth(truth, truth)["identity_swaps"] == 0


def test_tracking_a_clean_video_is_within_a_pixel(kit: Any, tmp_path: Path) -> None:
    from labkit import scene, tracking, video

    made = scene.simulate(6)
    frames = video.read_mp4(video.write_mp4(tmp_path / "r.mp4", made.frames, scene.FPS))
    assert frames.shape == made.frames.shape
    found = tracking.track(frames, "numpy")
    error = tracking.error_against_truth(found.points, made.poses)
    assert error["identity_swaps"] == 0 and error["mean_pixel_error"] < 1.0
    assert np.isnan(found.points).mean() < 0.05


def test_the_torch_path_finds_the_same_points_as_numpy(kit: Any) -> None:
    pytest.importorskip("torch")  # not installed in CI; the GPU check runs it on CUDA
    from labkit import scene, tracking

    frames = scene.simulate(7, frames=20).frames
    a, b = tracking.track(frames, "numpy"), tracking.track(frames, "torch-cpu")
    assert np.allclose(a.points, b.points, equal_nan=True, atol=1e-3)


def test_gaps_are_filled_only_when_short_and_inside(kit: Any) -> None:
    from labkit.poses import fill_gaps

    track = np.arange(40, dtype=float).reshape(40, 1, 1, 1).repeat(2, axis=-1)
    holed = track.copy()
    holed[5:8] = np.nan  # short: filled
    holed[12:30] = np.nan  # 18 frames: left missing
    holed[:2] = np.nan  # at the start: never extrapolated
    filled = fill_gaps(holed, max_gap=15)
    assert np.allclose(filled[5:8], track[5:8])
    assert np.isnan(filled[12:30]).all() and np.isnan(filled[:2]).all()


def test_egocentric_poses_put_the_body_at_the_origin_facing_x(kit: Any) -> None:
    from labkit import scene
    from labkit.poses import egocentric

    ego = egocentric(scene.simulate(8, frames=10).poses)
    body, nose, tail = (scene.NODES.index(n) for n in ("body", "nose", "tail_base"))
    assert np.allclose(ego[:, :, body], 0, atol=1e-9)
    assert np.allclose(ego[:, :, nose, 1], 0, atol=1e-9) and (ego[:, :, nose, 0] > 0).all()
    assert np.allclose(ego[:, :, tail, 1], 0, atol=1e-9) and (ego[:, :, tail, 0] < 0).all()


def test_contact_and_approach_bouts(kit: Any) -> None:
    from labkit import measures, scene

    frames = 60
    points = np.zeros((frames, 2, len(scene.NODES), 2))
    gap = np.r_[np.linspace(150, 20, 30), np.full(10, 20.0), np.linspace(20, 150, 20)]
    points[:, 1, :, 0] = gap[:, None]  # animal 1 walks up to animal 0, stays, walks away
    found = measures.detailed(points, fps=30)
    assert found["approach_bouts"] == 1
    assert found["contact_bouts"] == 1 and found["contact_s"] > 10 / 30
    assert found["min_distance_px"] == pytest.approx(20.0)


def test_upserts_never_duplicate_rows(kit: Any, tmp_path: Path) -> None:
    from labkit import labdb

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    rows = labdb.statistic_rows(
        "rec-1", {"animals": {"animal 0": {"speed": 1.0}}, "mean_distance_px": 5}
    )
    assert {(r["subject"], r["measure"]) for r in rows} == {
        ("animal 0", "animals.speed"), ("pair", "mean_distance_px"),
    }  # fmt: skip
    labdb.upsert(url, "statistics", rows)
    labdb.upsert(url, "statistics", [dict(r, value=9.0) for r in rows])
    assert labdb.count(url, "statistics") == 2
    with labdb.engine(url).connect() as conn:
        values = {v for (v,) in conn.exec_driver_sql("SELECT value FROM statistics")}
    assert values == {9.0}  # updated in place
    unseen = labdb.statistic_rows("rec-2", {"mean_distance_px": float("nan"), "bouts": 0})
    assert [r["measure"] for r in unseen] == ["bouts"]  # NaN: not measured, no row


def test_smoothing_follows_a_line_up_to_a_gap_and_keeps_the_gap(kit: Any) -> None:
    from labkit.poses import smooth

    line = np.arange(100, dtype=float) * 3
    points = line.reshape(100, 1, 1, 1).repeat(2, axis=-1)
    points[40:70] = np.nan
    smoothed = smooth(points)
    assert np.isnan(smoothed[40:70]).all()
    assert np.nanmax(np.abs(smoothed - line.reshape(100, 1, 1, 1))) < 1e-9  # no pull by the gap
    noisy = line.reshape(100, 1, 1, 1) + np.random.default_rng(3).normal(0, 1, (100, 1, 1, 2))
    assert np.abs(smooth(noisy) - line.reshape(100, 1, 1, 1))[3:-3].std() < 0.8


def test_an_upload_to_an_object_store(kit: Any, tmp_path: Path) -> None:
    """fsspec's memory filesystem stands in for an object store: no folders, nothing to
    append to, an empty prefix that does not exist until written."""
    import fsspec
    from labkit import transfer

    source = tmp_path / "rec.mp4"
    source.write_bytes(np.random.default_rng(4).bytes(2_500))
    target = "memory://lab-bucket/recordings/rec.mp4"
    done = transfer.upload(source, target, chunk=1_000)
    assert (done["sent"], done["already"]) == (3, False)
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/lab-bucket/recordings/rec.mp4") == source.read_bytes()
    assert transfer.upload(source, target, chunk=1_000)["already"] is True
    fs.rm("/lab-bucket", recursive=True)
