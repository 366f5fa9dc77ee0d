"""`legato runs delete`, `legato db prune` and `legato db storage`: retiring old runs.

On the database itself this process deletes the rows and the result files; through a server
(LEGATO_API_URL, an admin token) the server does both and records the audit events."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from legato.audit import record_local
from legato.cli import output
from legato.errors import UsageError
from legato.models import DeletedRuns, human_bytes

Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask; needed when not on a terminal.")
]


def _store() -> Any:
    from legato.runtime import get_runtime

    return get_runtime().store


def _remote(store: Any) -> bool:
    return bool(store.url.startswith(("http://", "https://")))


def _delete(store: Any, run_ids: list[str], *, skip_active: bool = False) -> DeletedRuns:
    """Delete one batch; embedded, remove its result files and record it here too."""
    done: DeletedRuns = store.delete_runs(run_ids, skip_active=skip_active)
    if not _remote(store) and done.runs:
        from legato.runtime import get_runtime

        done.files_removed = get_runtime().results.remove(done.refs)
        what = run_ids[0] if len(run_ids) == 1 else f"{len(run_ids)} runs"
        detail = {"runs": done.runs, "child_runs": done.child_runs, "task_runs": done.task_runs}
        record_local(store, "run.delete", what, detail)
    return done


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass --yes to confirm when not on a terminal")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)


def _said(done: DeletedRuns) -> str:
    kept = f", kept {done.kept_cached} results of cached calls" if done.kept_cached else ""
    return (
        f"deleted {done.runs} runs ({done.child_runs} child runs, {done.task_runs} task runs, "
        f"{done.logs} log lines, {done.artifacts} artifacts, {done.files_removed} result "
        f"files{kept})"
    )


def runs_delete(
    run_ids: Annotated[list[str], typer.Argument(help="Top-level flow run ids (or prefixes).")],
    yes: Yes = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete stopped runs for good: their child runs, task runs, history, logs, artifacts,
    questions, share links and result files. The audit log keeps that it happened."""
    store = _store()
    ids = [store.get_flow_run(i).id for i in run_ids]
    _confirm(f"delete {len(ids)} run{'s' if len(ids) != 1 else ''} and all they hold?", yes)
    done = _delete(store, ids)
    if json_out:
        output.print_json({k: v for k, v in done.__dict__.items() if k != "refs"})
    output.err.print(_said(done), markup=False)


def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Runs that stopped longer ago: 90d, 12h, 2w.")
    ],
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Keep failed and crashed runs.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say how many runs would go; delete nothing.")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=1000, help="Top-level runs per transaction.")
    ] = 100,
    yes: Yes = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete runs that stopped (completed, failed, cancelled, crashed) before a time, with
    everything they hold, in batches: each batch is its own short transaction, so the
    server keeps answering meanwhile."""
    from legato.timefmt import local_text, span_seconds

    span = span_seconds(older_than)
    if span is None or span <= 0:
        raise UsageError(f"--older-than takes a span like 90d, 12h or 2w, got {older_than!r}")
    before = time.time() - span
    store = _store()
    total = store.count_prunable(before, keep_failed=keep_failed)
    what = f"{total} top-level runs that stopped before {local_text(before)}"
    if dry_run or total == 0:
        if json_out:
            output.print_json({"runs": total, "before": before, "dry_run": dry_run})
        output.err.print(f"{'would delete' if dry_run else 'nothing to delete:'} {what}")
        return
    _confirm(f"delete {what}?", yes)
    done = DeletedRuns()
    started = time.monotonic()
    while done.runs < total:
        ids = store.prunable_runs(before, keep_failed=keep_failed, limit=batch)
        if not ids:
            break  # another prune (or a delete) got there first
        got = _delete(store, ids, skip_active=True)  # one resumed meanwhile is left alone
        done.add(got)
        if got.runs == 0:
            break  # what is left changed under us: stop rather than spin
        if output.err.is_terminal:
            output.err.print(f"  {done.runs}/{total} runs deleted", end="\r")
    elapsed = time.monotonic() - started
    if json_out:
        summary = {k: v for k, v in done.__dict__.items() if k != "refs"}
        output.print_json({**summary, "seconds": round(elapsed, 2)})
    output.err.print(f"{_said(done)} in {elapsed:.1f} s", markup=False)


def db_storage(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What the store holds: rows per table, runs and the oldest, and bytes on disk."""
    from legato.timefmt import local_text

    store = _store()
    summary = store.storage_summary()
    if not _remote(store):
        from legato.runtime import get_runtime

        usage = get_runtime().results.usage()
        if usage is not None:
            summary.result_files, summary.result_bytes = usage
    if json_out:
        output.print_json(summary.__dict__)
        return
    output.out.print(f"top-level runs: {summary.top_level_runs}", markup=False)
    if summary.oldest_run_at is not None:
        output.out.print(f"oldest run: {local_text(summary.oldest_run_at)}", markup=False)
    for table, n in summary.rows.items():
        output.out.print(f"{table}: {n} rows", markup=False)
    if summary.database_bytes is not None:
        output.out.print(f"database: {human_bytes(summary.database_bytes)}", markup=False)
    if summary.result_files is not None:
        size = human_bytes(summary.result_bytes or 0)
        output.out.print(f"result storage: {summary.result_files} files, {size}", markup=False)
