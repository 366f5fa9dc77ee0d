"""ask(): put a question to a person and pause the flow run durably until it is answered.

The first time a flow reaches ``ask()``, the question is recorded, the run becomes PAUSED and
its process lets go (``legato run`` exits with code 3). When the question is answered (CLI,
API, dashboard, Slack) the run is resumed: the flow function runs again from the top, finished
calls replay from the store, and this ``ask()`` returns the validated answer.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any, TypeVar, overload

from legato.context import current_engine, get_run_context
from legato.errors import AskTimeout, InvalidAnswer, Paused, UsageError
from legato.models import Question, QuestionState, new_id, now
from legato.store import InsertQuestion, RunStore

T = TypeVar("T")
_MISSING: Any = object()


@overload
def ask(
    prompt: str,
    schema: type[T],
    *,
    timeout: float | None = ...,
    key: str | None = ...,
    default: T = ...,
    notify: Any = ...,
) -> T: ...


@overload
def ask(
    prompt: str,
    *,
    timeout: float | None = ...,
    key: str | None = ...,
    default: bool = ...,
    notify: Any = ...,
) -> bool: ...


def ask(
    prompt: str,
    schema: Any = bool,
    *,
    timeout: float | None = None,
    key: str | None = None,
    default: Any = _MISSING,
    notify: Any = None,
) -> Any:
    """Ask a person and return their answer, validated against ``schema`` (bool, str, int,
    float, an Enum or Literal, or a pydantic model). Call it from a flow function.

    ``timeout`` (seconds): after it, ``default`` is used, or the run fails if there is none.
    ``key`` names the question for replay (default ``ask:N``, the N-th ask of the run).
    ``notify``: a channel or a list of them (``"slack:#qc"``, ``"email:lead@lab.org"``,
    ``"webhook:https://..."``) told besides the configured Slack channel, by the server (or
    `legato serve`) that sends notifications.
    """
    channels = _channels(notify)
    engine = current_engine()
    if engine is None:
        where = "inside a task" if get_run_context() is not None else "outside any flow"
        raise UsageError(
            f"ask() was called {where}: call it from a flow function, whose run can pause"
        )
    from pydantic import TypeAdapter

    adapter = TypeAdapter(schema)
    json_schema = adapter.json_schema()
    question, call_key = engine.find_question(
        engine.next_key("ask", key), key is not None, prompt, json_schema
    )
    store = engine.rt.store
    if question is None:
        if default is not _MISSING:
            adapter.validate_python(default)  # a bad default is the flow author's error
        question = Question(
            id=new_id(),
            flow_run_id=engine.run.id,
            key=call_key,
            prompt=prompt,
            schema=json_schema,
            default=None
            if default is _MISSING
            else {"v": adapter.dump_python(default, mode="json")},
            created_at=now(),
            timeout_at=None if timeout is None else now() + timeout,
            notify=channels,
        )
        engine.rt.recorder.commit(InsertQuestion(question))
        engine.rt.notify_question(question, notify)
        raise Paused(question.id)
    return _outcome(store, question, adapter)


CHANNEL_MAX = 500  # the notifications table's channel column


def _channels(notify: Any) -> list[str]:
    """``notify`` as a list of channels, each checked (UsageError names a bad one)."""
    from legato.notify.rules import parse_channel

    if notify is None:
        return []
    given = [notify] if isinstance(notify, str) else list(notify)
    channels: list[str] = []
    for channel in given:
        if not isinstance(channel, str):
            raise UsageError(f"ask(notify=...): {channel!r} is not a channel name")
        if len(channel) > CHANNEL_MAX:
            raise UsageError(f"ask(notify=...): a channel is at most {CHANNEL_MAX} characters")
        parse_channel(channel)  # slack:, email: or webhook:, else UsageError
        if channel not in channels:
            channels.append(channel)
    if len(channels) > 20:
        raise UsageError("ask(notify=...) names more than 20 channels")
    return channels


def _outcome(store: RunStore, question: Question, adapter: Any) -> Any:
    from pydantic import ValidationError

    timed_out = question.timeout_at is not None and now() >= question.timeout_at
    if question.state is QuestionState.PENDING and timed_out:
        store.update_question(
            question.id,
            allowed_from=[QuestionState.PENDING],
            state=QuestionState.EXPIRED,
            values={"answered_at": now(), "answered_by": "timeout"},
        )
        question = store.get_question(question.id)
    if question.state is QuestionState.PENDING:
        raise Paused(question.id)
    if question.state is QuestionState.EXPIRED and question.answer is None:
        if question.default is None:
            raise AskTimeout(f"nobody answered {question.prompt!r} in time, and it has no default")
        return adapter.validate_python(question.default["v"])
    try:
        return adapter.validate_python(question.answer)
    except ValidationError as exc:
        # Checked against the JSON schema when it was given, but the flow's own type is the
        # judge: refuse it, and wait for another answer.
        store.update_question(
            question.id,
            allowed_from=[QuestionState.ANSWERED],
            state=QuestionState.PENDING,
            values={"error": f"answer {question.answer!r} refused: {_first_error(exc)}"},
        )
        raise Paused(question.id) from None


def _first_error(exc: Any) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


# -- answering (shared by the CLI, the API, the dashboard and Slack) -----------------------

TRUE_WORDS = {"y", "yes", "true", "t", "1", "ok", "approve", "approved"}
FALSE_WORDS = {"n", "no", "false", "f", "0", "reject", "rejected"}


def parse_answer(schema: dict[str, Any], text: str) -> Any:
    """Turn a typed answer into a value of the schema's JSON type (yes/no for booleans)."""
    import json

    kind = schema.get("type")
    if kind == "boolean":
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise InvalidAnswer(f"expected yes or no, got {text!r}")
    if kind == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def check_answer(schema: dict[str, Any], value: Any) -> None:
    """InvalidAnswer naming what is wrong, unless ``value`` fits the question's JSON schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path)
        raise InvalidAnswer(f"answer refused: {where + ': ' if where else ''}{e.message}")


def default_answerer() -> str:
    from legato.settings import get_settings

    return get_settings().user or f"{getpass.getuser()}@{socket.gethostname()}"


def answer_question(store: RunStore, question: Question, value: Any, by: str | None = None) -> None:
    """Validate and record an answer; InvalidAnswer (nothing recorded) if it does not fit."""
    if question.state is not QuestionState.PENDING:
        raise UsageError(
            f"question {question.key!r} of run {question.flow_run_id} is already "
            f"{question.state.value}"
        )
    check_answer(question.schema, value)
    done = store.update_question(
        question.id,
        allowed_from=[QuestionState.PENDING],
        state=QuestionState.ANSWERED,
        values={
            "answer": value,
            "answered_by": by or default_answerer(),
            "answered_at": now(),
            "error": None,
        },
    )
    if not done:
        raise UsageError(f"question {question.key!r} was answered by someone else meanwhile")
