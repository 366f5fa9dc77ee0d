"""The flagship example end to end on 5 recordings (embedded, SQLite): SLEAP files that open
with sleap-io, pose error against ground truth under the documented threshold, QC figures, a
flagged recording waiting for a person, the lab's database rows exactly once after a rerun,
share links that serve the files, and the week's summary."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from legato.ask import answer_question
from legato.errors import Paused
from legato.loader import load_flow, load_module
from legato.models import QuestionState, State
from legato.resume import continue_run
from legato.runtime import Runtime
from tests import lab_checks as check
from tests.live_server import LiveServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab_pipeline"
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

    children, results = check.finished_children(rt.store, rt.results, 5)
    check.slp_files_open_with_sleap_io(results)
    check.poses_are_within_the_error_threshold(results)
    check.each_recording_has_its_qc_figures(rt.store, children)
    check.the_graph_draws_the_steps_that_use_upstream_values(rt.store, children[0])
    assert {t.task for c in children for t in rt.store.get_task_runs(c.id)} == check.STEPS
    check.the_week_has_its_summary(rt.store, parent, 5)
    live = LiveServer(rt.store, result_storage=str(legato_home / "results"))
    try:
        check.the_share_link_serves_the_files(rt.store, children[0], live.url)
    finally:
        live.stop()

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
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in check.TABLES}


def _verdicts(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT recording, verdict FROM qc_verdicts").fetchall())
