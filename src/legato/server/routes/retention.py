"""Retention: delete runs, find what a prune removes, and what the store holds (admins).

The server deletes the result files of the runs it deletes: it holds the result storage."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from legato.models import DeletedRuns, StorageSummary
from legato.results import ResultStorage
from legato.server.routes._common import Audit, ResultRoot, Routes, StoreDep
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()

Before = Annotated[float, Query(ge=0, allow_inf_nan=False)]


def result_storage(request: Request, root: str) -> ResultStorage:
    """The server's result storage, for removing files (made once per app)."""
    made: ResultStorage | None = getattr(request.app.state, "retention_results", None)
    if made is None or made.url != root.rstrip("/"):
        made = ResultStorage(root)
        request.app.state.retention_results = made
    return made


@routes.op(OPERATIONS["delete_runs"])
def delete_runs(
    store: StoreDep, body: w.DeleteRunsIn, audit: Audit, root: ResultRoot, request: Request
) -> DeletedRuns:
    """Delete stopped top-level runs with their child runs, task runs, history, logs,
    artifacts, questions and share links, and their result files (not those of cached calls).
    The audit log keeps a ``run.delete`` event per call."""
    done = store.delete_runs(body.run_ids, skip_active=body.skip_active)
    storage = result_storage(request, root)
    done.files_removed = storage.remove(done.refs)
    first = body.run_ids[0] if len(body.run_ids) == 1 else f"{len(body.run_ids)} runs"
    if done.runs:
        audit(
            "run.delete",
            first,
            {"runs": done.runs, "child_runs": done.child_runs, "task_runs": done.task_runs},
        )
    done.refs = []  # paths of the server's storage stay on the server
    return done


@routes.op(OPERATIONS["prunable_runs"])
def prunable_runs(
    store: StoreDep,
    before: Before,
    keep_failed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[str]:
    """Top-level runs that stopped before ``before`` (epoch seconds), oldest first."""
    return store.prunable_runs(before, keep_failed=keep_failed, limit=limit)


@routes.op(OPERATIONS["count_prunable"])
def count_prunable(store: StoreDep, before: Before, keep_failed: bool = False) -> int:
    """How many top-level runs stopped before ``before``."""
    return store.count_prunable(before, keep_failed=keep_failed)


@routes.op(OPERATIONS["storage_summary"])
def storage_summary(store: StoreDep, root: ResultRoot, request: Request) -> StorageSummary:
    """Rows per table, top-level runs and the oldest, the database's and result storage's
    size."""
    out = store.storage_summary()
    usage = result_storage(request, root).usage()
    if usage is not None:
        out.result_files, out.result_bytes = usage
    return out
