"""Property-based: schemathesis generates requests from the API's own OpenAPI document, valid
and invalid, for every operation, sends them with an admin token and runs every one of its
checks on each answer: no 5xx, only declared status codes, content types and headers, bodies
that match their declared schemas (errors included), invalid requests refused, auth enforced
where declared. Bounded (a few examples per operation) and derandomized for CI.

Three check settings differ from schemathesis' defaults, each for a reason in docs/decisions.md
or below (a body too large is refused with 413 before it is read, a refusal like any other):
a schema-valid request may still be refused with 400 or 422 (rules a JSON schema cannot state:
a body's name matching its path, cron syntax, a result inside the result storage), and the
two operations answering lists of tuples skip the response-schema check (schemathesis cannot
read ``prefixItems``, its issues 3842 and 4099).
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    CHECKS,
    CheckFunction,
    load_all_checks,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation

from legato.models import Role
from tests.live_server import LiveServer

EXAMPLES = 12
ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]
# schemathesis' own list of refusals, and 413: a body over the server's size bound is refused
# before it is read, so an invalid one that is also huge is refused that way.
REJECTED = ["400", "401", "403", "404", "406", "413", "422", "428", "5xx"]
# Bodies whose records and column updates carry their ranges in the document (store/wire.py):
# a schema-valid one is never refused as invalid.
RANGED = {
    "POST /api/v1/ops",
    "POST /api/v1/workers",
    "POST /api/v1/flow-runs/{run_id}/transition",
    "POST /api/v1/task-runs/{task_run_id}/finish",
    "POST /api/v1/questions/{question_id}/update",
}
TUPLE_ANSWERS = {
    "GET /api/v1/deployments/{name}/scheduled-runs",
    "GET /api/v1/stats/task-durations",
}


def test_every_operation_keeps_the_documented_contract(
    live: LiveServer, tokens: dict[Role, str]
) -> None:
    load_all_checks()
    checks = CHECKS.get_all()
    assert len(checks) >= 14  # every built-in check, not a chosen few
    config = SchemathesisConfig.from_dict(
        {
            # the scheme the document declares: the auth checks know which requests carry it
            "auth": {"openapi": {"bearer": {"bearer": tokens[Role.ADMIN]}}},
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ACCEPTED},
                "negative_data_rejection": {"expected-statuses": REJECTED},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    answered: set[str] = set()  # operations that answered 2xx: the token was sent

    def succeeded(_ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
        if response.status_code < 300:
            answered.add(case.operation.label)

    for operation in operations:
        skipped = [response_schema_conformance] if operation.label in TUPLE_ANSWERS else []
        _fuzz(operation, [*checks, succeeded], skipped)
    assert {"GET /api/v1/flow-runs", "GET /api/v1/tokens", "POST /api/v1/ops"} <= answered


def test_the_document_states_the_ranges_the_server_checks(
    live: LiveServer, tokens: dict[Role, str]
) -> None:
    """With schemathesis' default statuses: a valid request to these is never a 400 or 422."""
    config = SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"bearer": {"bearer": tokens[Role.ADMIN]}}}}
    )
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().label in RANGED]
    assert len(operations) == len(RANGED)
    for operation in operations:
        _fuzz(
            operation,
            [not_a_server_error, positive_data_acceptance],
            [],
            negative=False,
            keep=_questions_ask_with_json_schemas,
        )


def _questions_ask_with_json_schemas(case: schemathesis.Case) -> bool:
    """The one rule of these bodies the document cannot state: a question's ``schema`` must
    itself be a JSON schema (the OpenAPI document would need the whole meta-schema). Cases
    that break it are left out here; tests/server/test_api.py holds the server to refusing
    them."""
    import jsonschema

    body = case.body if isinstance(case.body, dict) else {}
    ops = body.get("ops")
    for op in ops if isinstance(ops, list) else []:
        question = op.get("question") if isinstance(op, dict) else None
        if isinstance(question, dict) and op.get("op") == "insert_question":
            try:
                jsonschema.Draft202012Validator.check_schema(question.get("schema"))
            except jsonschema.SchemaError:
                return False
    return True


def _fuzz(
    operation: APIOperation,
    checks: list[CheckFunction],
    skipped: list[CheckFunction],
    *,
    negative: bool = True,
    keep: Callable[[schemathesis.Case], bool] | None = None,
) -> None:
    """EXAMPLES valid (and invalid) requests to ``operation``, each answer through ``checks``."""
    modes = (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if negative
        else [GenerationMode.POSITIVE]
    )
    cases = st.one_of(*(operation.as_strategy(mode) for mode in modes))
    if keep is not None:
        cases = cases.filter(keep)

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks, excluded_checks=skipped)

    check()
