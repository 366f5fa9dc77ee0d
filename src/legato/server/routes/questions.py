"""Questions asked by ``ask()``: reads, compare-and-set, and answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from legato.errors import InvalidAnswer, UsageError
from legato.models import Question, QuestionState
from legato.server.routes._common import (
    Audit,
    Id,
    Limit,
    Operator,
    Routes,
    StoreDep,
    error,
    invalid,
)
from legato.store import wire as w
from legato.store.operations import OPERATIONS

routes = Routes()


@routes.op(OPERATIONS["list_questions"])
def list_questions(
    store: StoreDep,
    state: Annotated[list[QuestionState] | None, Query()] = None,
    flow_run_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
) -> list[Question]:
    """Questions, oldest first."""
    return store.list_questions(states=state, flow_run_id=flow_run_id, limit=limit)


@routes.op(OPERATIONS["get_question"])
def get_question(store: StoreDep, question_id: Id) -> Question:
    """One question (404 if none)."""
    return store.get_question(question_id)


@routes.op(OPERATIONS["find_question"])
def find_question(
    store: StoreDep, run_id: Id, key: Annotated[str, Query(min_length=1, max_length=1000)]
) -> w.FoundQuestion:
    """The question a flow run asked at a call key, if any."""
    return w.FoundQuestion(question=store.find_question(run_id, key))


@routes.op(OPERATIONS["update_question"])
def update_question(
    store: StoreDep, question_id: Id, body: w.QuestionUpdateIn, audit: Audit
) -> w.Changed:
    """Compare-and-set a question's state and fields (an answer goes in the audit log:
    `legato answer` over HTTP answers this way)."""
    changed = store.update_question(
        question_id, allowed_from=body.allowed_from, state=body.state, values=body.values
    )
    if changed and body.state is QuestionState.ANSWERED:
        _audit_answer(audit, store.get_question(question_id))
    return w.Changed(changed=changed)


def _audit_answer(audit: Audit, question: Question) -> None:
    detail = {"run": question.flow_run_id, "key": question.key, "by": question.answered_by}
    audit("question.answer", question.id, detail)


@routes.op(OPERATIONS["answer"], response_model=Question)
def answer(
    store: StoreDep, question_id: Id, body: w.AnswerIn, token: Operator, audit: Audit
) -> Any:
    """Answer a pending question: the value is checked against the question's schema
    (422 naming what is wrong) and recorded, by ``by`` or the token's name. The paused
    run then goes back to its pool's queue (``default`` for runs started outside a
    deployment): a worker there carries it on by replay, past the question.
    """
    from legato.ask import answer_question
    from legato.resume import queue_answered_run

    question = store.get_question(question_id)
    if question.state is not QuestionState.PENDING:
        return error(409, f"question {question.id} is already {question.state.value}")
    try:
        answer_question(store, question, body.value, body.by or token.name)
    except InvalidAnswer as exc:
        raise invalid((("body", "value"), str(exc))) from None
    except UsageError as exc:  # answered by someone else meanwhile
        return error(409, str(exc))
    answered = store.get_question(question.id)
    _audit_answer(audit, answered)
    queue_answered_run(store, question.flow_run_id)
    return store.get_question(question.id)
