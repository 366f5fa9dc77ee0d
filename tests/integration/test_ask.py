"""ask(): a durable pause for a person, answered, validated, timed out, inside mapped children."""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from legato import ask, flow, task
from legato.ask import answer_question, parse_answer
from legato.errors import AskTimeout, InvalidAnswer, Paused, UsageError
from legato.models import QuestionState, State
from legato.resume import continue_run
from legato.runtime import Runtime

EXECUTIONS: list[str] = []


class Verdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"


class Review(BaseModel):
    ok: bool
    score: int
    note: str = ""


@task
def prepare(x: int) -> int:
    EXECUTIONS.append(f"prepare:{x}")
    return x * 10


SCHEMAS: dict[str, Any] = {
    "bool": bool,
    "str": str,
    "int": int,
    "float": float,
    "enum": Verdict,
    "literal": Literal["red", "green"],
    "model": Review,
}
CURRENT: dict[str, Any] = {}


@flow
def asks_one(kind: str) -> Any:
    base = prepare(1)
    answer = ask(f"what for {kind}?", schema=SCHEMAS[kind])
    return {
        "base": base,
        "answer": answer.model_dump() if isinstance(answer, BaseModel) else answer,
    }


def _pending(rt: Runtime) -> Any:
    [question] = rt.store.list_questions(states=[QuestionState.PENDING])
    return question


@pytest.mark.parametrize(
    ("kind", "typed", "expected", "bad"),
    [
        ("bool", "yes", True, "perhaps"),
        ("str", "looks fine", "looks fine", None),
        ("int", "42", 42, "4.5"),
        ("float", "0.75", 0.75, "high"),
        ("enum", "fail", Verdict.FAIL, "maybe"),  # ask returns the Enum member itself
        ("literal", "green", "green", "blue"),
    ],
)
def test_each_schema_type_pauses_then_returns_the_validated_answer(
    rt: Runtime, kind: str, typed: str, expected: Any, bad: str | None
) -> None:
    EXECUTIONS.clear()
    with pytest.raises(Paused):
        asks_one(kind)
    [run] = rt.store.list_flow_runs()
    assert run.state is State.PAUSED
    question = _pending(rt)
    assert question.prompt == f"what for {kind}?"
    if bad is not None:
        with pytest.raises(InvalidAnswer):
            answer_question(rt.store, question, parse_answer(question.schema, bad))
        assert _pending(rt).id == question.id  # still waiting, nothing recorded
        assert rt.store.get_flow_run(run.id).state is State.PAUSED
    answer_question(rt.store, question, parse_answer(question.schema, typed), by="alice")
    finished, error = continue_run(run.id)
    assert error is None
    assert finished.state is State.COMPLETED
    assert rt.results.decode(finished.result) == {"base": 10, "answer": expected}
    assert EXECUTIONS == ["prepare:1"]  # the task before the pause ran once in total
    answered = rt.store.get_question(question.id)
    assert answered.state is QuestionState.ANSWERED
    assert answered.answered_by == "alice"
    assert answered.answered_at is not None and answered.answered_at >= question.created_at


def test_a_pydantic_model_answer_is_validated_field_by_field(rt: Runtime) -> None:
    with pytest.raises(Paused):
        asks_one("model")
    question = _pending(rt)
    with pytest.raises(InvalidAnswer, match="score"):
        answer_question(rt.store, question, {"ok": True, "score": "high"})
    with pytest.raises(InvalidAnswer, match="ok"):
        answer_question(rt.store, question, {"score": 3})
    answer_question(rt.store, question, {"ok": True, "score": 3})
    finished, _ = continue_run(question.flow_run_id)
    assert rt.results.decode(finished.result)["answer"] == {"ok": True, "score": 3, "note": ""}


@flow
def asks_with_timeout(has_default: bool) -> str:
    if has_default:
        return ask("go on?", schema=str, timeout=0.2, default="fallback")
    return ask("go on?", schema=str, timeout=0.2)


def test_timeout_uses_the_default(rt: Runtime) -> None:
    with pytest.raises(Paused):
        asks_with_timeout(True)
    question = _pending(rt)
    time.sleep(0.3)
    finished, error = continue_run(question.flow_run_id)
    assert error is None
    assert rt.results.decode(finished.result) == "fallback"
    assert rt.store.get_question(question.id).state is QuestionState.EXPIRED


def test_timeout_without_default_fails_the_run(rt: Runtime) -> None:
    with pytest.raises(Paused):
        asks_with_timeout(False)
    question = _pending(rt)
    time.sleep(0.3)
    finished, error = continue_run(question.flow_run_id)
    assert isinstance(error, AskTimeout)
    assert finished.state is State.FAILED
    assert "AskTimeout" in (finished.error or "")


@flow
def review_item(x: int) -> dict[str, Any]:
    base = prepare(x)
    ok = ask(f"approve item {x}?")
    return {"x": x, "base": base, "ok": ok}


@flow
def review_all(n: int) -> list[dict[str, Any]]:
    return [f.result() for f in review_item.map(range(n))]


def test_each_mapped_child_flow_asks_its_own_question(rt: Runtime) -> None:
    EXECUTIONS.clear()
    with pytest.raises(Paused):
        review_all(3)
    [parent] = rt.store.list_flow_runs(top_level=True)
    assert parent.state is State.PAUSED
    questions = rt.store.list_questions(states=[QuestionState.PENDING])
    assert sorted(q.prompt for q in questions) == [f"approve item {i}?" for i in range(3)]
    assert len({q.flow_run_id for q in questions}) == 3  # one per child run
    for i, question in enumerate(sorted(questions, key=lambda q: q.prompt)):
        answer_question(rt.store, question, i != 1)
        finished, _ = continue_run(question.flow_run_id)  # a child resumes through its parent
        expected = State.COMPLETED if i == 2 else State.PAUSED
        assert finished.id == parent.id and finished.state is expected
    result = rt.results.decode(rt.store.get_flow_run(parent.id).result)
    assert [r["ok"] for r in result] == [True, False, True]
    assert sorted(EXECUTIONS) == ["prepare:0", "prepare:1", "prepare:2"]


@task
def asks_inside_a_task() -> bool:
    return ask("not here")


@flow
def flow_with_ask_in_task() -> bool:
    return asks_inside_a_task()


def test_ask_outside_a_flow_function_is_a_usage_error(rt: Runtime) -> None:
    with pytest.raises(UsageError, match="outside any flow"):
        ask("anyone?")
    with pytest.raises(UsageError, match="inside a task"):
        flow_with_ask_in_task()


def test_answering_twice_is_refused(rt: Runtime) -> None:
    with pytest.raises(Paused):
        asks_one("bool")
    question = _pending(rt)
    answer_question(rt.store, question, True)
    with pytest.raises(UsageError, match="already answered"):
        answer_question(rt.store, rt.store.get_question(question.id), False)


def test_retrying_a_run_failed_by_an_unanswered_question_asks_it_again(rt: Runtime) -> None:
    with pytest.raises(Paused):
        asks_with_timeout(False)
    question = _pending(rt)
    time.sleep(0.3)
    finished, error = continue_run(question.flow_run_id)
    assert isinstance(error, AskTimeout) and finished.state is State.FAILED
    again, error = continue_run(question.flow_run_id, retry=True)
    assert isinstance(error, Paused) and again.state is State.PAUSED
    reopened = _pending(rt)
    assert reopened.id == question.id and reopened.timeout_at is not None
    answer_question(rt.store, reopened, "now")
    done, error = continue_run(question.flow_run_id)
    assert error is None and rt.results.decode(done.result) == "now"
