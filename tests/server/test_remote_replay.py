"""Replay through a server: a flow whose store is the HTTP API pauses on ask(), and carries on
after the answer with the answered question matched, as an embedded one does.

(Seen once: the replay read the run's questions in a page longer than the API allows, so a
worker's resume failed with "query.limit: Input should be less than or equal to 10000".)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from legato import ask, flow, task
from legato.ask import answer_question
from legato.errors import Paused
from legato.models import QuestionState, Role, State
from legato.resume import continue_run
from legato.runtime import Runtime
from legato.store.http import HttpStore
from legato.store.sql import SqlStore
from tests.live_server import LiveServer

CALLS: list[str] = []


@task
def measure(name: str) -> int:
    CALLS.append(name)
    return len(name)


@flow
def two_reviews(names: list[str]) -> dict[str, object]:
    sizes = [measure(n) for n in names]
    first = ask(f"Is {names[0]} usable?", schema=bool)
    second = ask(f"Is {names[1]} usable?", schema=bool)
    return {"sizes": sizes, "answers": [first, second]}


def test_a_run_on_the_http_store_resumes_after_each_answer(
    configure: Callable[..., Runtime],
    live: LiveServer,
    server_store: SqlStore,
    tokens: dict[Role, str],
) -> None:
    CALLS.clear()
    rt = configure(api_url=live.url, api_token=tokens[Role.RUNNER], remote_pools=False)
    assert isinstance(rt.store, HttpStore)
    with pytest.raises(Paused):
        two_reviews(["rec-1.h5", "rec-22.h5"])
    [first] = server_store.list_questions(states=[QuestionState.PENDING])
    answer_question(server_store, first, True)
    run, error = continue_run(first.flow_run_id)
    assert isinstance(error, Paused) and run.state is State.PAUSED
    [second] = server_store.list_questions(states=[QuestionState.PENDING])
    assert second.prompt == "Is rec-22.h5 usable?" and second.id != first.id
    answer_question(server_store, second, False)
    run, error = continue_run(first.flow_run_id)
    assert error is None and run.state is State.COMPLETED, run.error
    assert rt.results.decode(run.result) == {"sizes": [8, 9], "answers": [True, False]}
    assert CALLS == ["rec-1.h5", "rec-22.h5"]  # each task ran once, across two resumes
