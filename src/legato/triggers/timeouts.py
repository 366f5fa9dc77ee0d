"""Question timeouts on time: the server (or `legato serve`) expires a question whose
``timeout=`` has passed and queues its paused run for a worker, which carries it on: ask()
then returns the question's default, or raises AskTimeout, as it would on any resume.

Without a server nothing watches the clock: in purely embedded use a timeout takes effect at
the run's next resume (`legato runs resume`, `legato answer`)."""

from __future__ import annotations

import logging
from typing import Any

from legato.models import QuestionState

log = logging.getLogger("legato.triggers")


def expire_questions(store: Any, now: float, limit: int = 500) -> int:
    """Expire the pending questions whose time is up; returns how many."""
    from legato.resume import queue_answered_run

    expired = 0
    for q in store.due_question_timeouts(now, limit=limit):
        if not store.update_question(
            q.id,
            allowed_from=[QuestionState.PENDING],
            state=QuestionState.EXPIRED,
            values={"answered_at": now, "answered_by": "timeout"},
        ):
            continue  # answered meanwhile
        expired += 1
        pool = queue_answered_run(store, q.flow_run_id)
        log.info("question %s timed out; run %s queued for pool %s", q.id, q.flow_run_id, pool)
    return expired
