"""JSON on the wire: how every store operation and record travels between HttpStore and the
server. Both sides use this module, so the two cannot drift apart.

Records (FlowRun, TaskRun, Question, ...) travel as their dataclass fields, states as their
string values; ``encode`` turns one into JSON-able data and ``decode`` turns it back (pydantic
validates on the way in, so a wrong type is an error that names the field). A batch of
operations travels as ``{"ops": [{"op": "insert_flow_run", ...}, ...]}``: ``encode_op`` and the
``OpIn`` models below are the two directions.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from legato.models import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    ApiToken,
    Artifact,
    Deployment,
    FlowRun,
    LogRecord,
    NotifyRule,
    Pool,
    Question,
    QuestionState,
    Role,
    Schedule,
    Share,
    State,
    StateChange,
    TaskRun,
    Trigger,
    Worker,
    WorkerState,
)
from legato.results import STORED_PARAMETER, stored_problem
from legato.store.ops import (
    InsertArtifact,
    InsertFlowRun,
    InsertLogs,
    InsertQuestion,
    InsertTaskRun,
    LogEntry,
    Op,
    PutCache,
    SupersedeTaskRun,
    UpdateFlowRun,
    UpdateTaskRun,
)
from legato.timefmt import MAX_TIMESTAMP, is_timestamp

T = TypeVar("T")

RECORD_TYPES = (
    FlowRun,
    TaskRun,
    Question,
    Artifact,
    LogRecord,
    LogEntry,
    StateChange,
    Worker,
    ApiToken,
)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(tp)
    if adapter is None:
        adapter = _ADAPTERS[tp] = TypeAdapter(tp)
    return adapter


def encode(value: Any) -> Any:
    """JSON-able data for a record, an operation, or a list of them."""
    if isinstance(value, list):
        return [encode(v) for v in value]
    return _adapter(type(value)).dump_python(value, mode="json")


def decode(tp: type[T], data: Any) -> T:
    """The record(s) of type ``tp`` (e.g. ``FlowRun``, ``list[TaskRun]``) held by ``data``."""
    result: T = _adapter(tp).validate_python(data)
    return result


# -- operations -----------------------------------------------------------------------------

OP_TAGS: dict[type[Any], str] = {
    InsertFlowRun: "insert_flow_run",
    InsertTaskRun: "insert_task_run",
    UpdateFlowRun: "update_flow_run",
    UpdateTaskRun: "update_task_run",
    SupersedeTaskRun: "supersede_task_run",
    InsertLogs: "insert_logs",
    InsertArtifact: "insert_artifact",
    PutCache: "put_cache",
    InsertQuestion: "insert_question",
}


def encode_op(op: Op) -> dict[str, Any]:
    data: dict[str, Any] = encode(op)
    data["op"] = OP_TAGS[type(op)]
    return data


# -- bounds: what a stored value may be ---------------------------------------------------------
# Whatever the API stores, every page, listing and client must be able to show: times are
# finite epoch seconds up to the end of year 9999, counts are non-negative, strings hold no
# NUL byte (PostgreSQL refuses them; terminals and logs mangle them) and have a length limit.

MAX_COUNT = 2**31 - 1
NAME_MAX = 1000  # ids, names, keys, pools, tags, versions
SOURCE_MAX = 4096  # a code reference: a path and a name
NOTIFY_MAX = 20  # channels one question may name
CHANNEL_MAX = 500  # characters of one (the notifications table's channel column)
TEXT_MAX = 1_000_000  # messages, errors, prompts, log lines
_LONG = {
    "message": TEXT_MAX,
    "error": TEXT_MAX,
    "prompt": TEXT_MAX,
    "last_error": TEXT_MAX,
    "source": SOURCE_MAX,
}
# Columns holding the user's own JSON (results, parameters, reports, answers): any JSON value.
_USER_DATA = frozenset(
    {"result", "payload", "parameters", "data", "schema", "default", "answer", "input_hashes"}
)
_TIME_WHY = f"must be a finite time in epoch seconds from 0 to {MAX_TIMESTAMP:.0f} (year 9999)"


def _is_time(name: str) -> bool:
    return name in ("at", "now", "last_heartbeat") or name.endswith("_at")


def _text_problem(value: str, limit: int) -> str | None:
    if "\x00" in value:
        return "must not hold a NUL byte"
    if len(value) > limit:
        return f"must be at most {limit} characters long, not {len(value)}"
    return None


def column_problem(name: str, value: Any) -> str | None:
    """Why ``value`` may not be stored in column ``name`` (None: it may). The column's type
    is checked elsewhere; this is its range."""
    if value is None or isinstance(value, bool) or name in _USER_DATA:
        return None
    if isinstance(value, int | float) and _is_time(name):
        return None if is_timestamp(value) else _TIME_WHY
    if isinstance(value, int) and name == "priority":
        ok = PRIORITY_MIN <= value <= PRIORITY_MAX
        return None if ok else f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}"
    if isinstance(value, int):
        return None if 0 <= value <= MAX_COUNT else f"must be between 0 and {MAX_COUNT}"
    if isinstance(value, str):
        return _text_problem(value, _LONG.get(name, NAME_MAX))
    if isinstance(value, list) and name == "notify":
        if len(value) > NOTIFY_MAX:
            return f"at most {NOTIFY_MAX} channels"
        for i, item in enumerate(value):
            why = _text_problem(item, CHANNEL_MAX) if isinstance(item, str) else None
            if why is not None:
                return f"[{i}] {why}"
    if isinstance(value, list) and name in ("tags", "depends_on", "notify"):
        for i, item in enumerate(value):
            why = _text_problem(item, NAME_MAX) if isinstance(item, str) else None
            if why is not None:
                return f"[{i}] {why}"
    return None


def check_record(record: T) -> T:
    """``record`` (a FlowRun, TaskRun, LogRecord, ...) if every column is in range; else
    ValueError naming the first column that is not."""
    for f in dataclasses.fields(record):  # type: ignore[arg-type]
        why = column_problem(f.name, getattr(record, f.name))
        if why is not None:
            raise ValueError(f"{f.name}: {why}")
    return record


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not hold a NUL byte")
    return value


def _finite_time(value: float) -> float:
    if not is_timestamp(value):
        raise ValueError(_TIME_WHY)
    return value


# The validators' rules, also written into the OpenAPI document (json_schema_extra: the
# validators keep their own messages) so that a generated client, or schemathesis, knows them.
_NO_NUL = {"pattern": "^[^\\u0000]*$"}
Timestamp = Annotated[
    float,
    Field(json_schema_extra={"minimum": 0, "maximum": MAX_TIMESTAMP}),
    AfterValidator(_finite_time),
]
Name = Annotated[
    str, Field(max_length=NAME_MAX, json_schema_extra=_NO_NUL), AfterValidator(_no_nul)
]
Text = Annotated[
    str, Field(max_length=TEXT_MAX, json_schema_extra=_NO_NUL), AfterValidator(_no_nul)
]


# Which columns an update may set, with their types: a record's fields, less its identity
# and its lease (only a claim gives a run a worker and a lease; the heartbeat renews it).
_FIXED = frozenset({"id", "state", "worker", "lease_expires_at"})


@functools.cache
def _column_types(record: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(record)
    return {f.name: hints[f.name] for f in dataclasses.fields(record) if f.name not in _FIXED}


def columns(record: Any) -> Any:
    """The ``values`` field of an update of ``record``: its settable columns, each with its
    type and range in the OpenAPI document (``check_values`` is what checks them)."""
    props = {
        n: _column_schema(n, TypeAdapter(t).json_schema()) for n, t in _column_types(record).items()
    }
    extra: dict[str, Any] = {"properties": props, "additionalProperties": False}
    return Field(default_factory=dict, json_schema_extra=extra)


def _column_schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a column type's) with the range ``column_problem`` enforces written in."""
    if name in _USER_DATA:
        return schema
    for branch in schema.get("anyOf", []):
        _column_schema(name, branch)
    kind = schema.get("type")
    if kind in ("number", "integer") and _is_time(name):
        schema |= {"minimum": 0, "maximum": MAX_TIMESTAMP}
    elif kind == "integer" and name == "priority":
        schema |= {"minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX}
    elif kind == "integer":
        schema |= {"minimum": 0, "maximum": MAX_COUNT}
    elif kind == "string":
        schema |= {"maxLength": _LONG.get(name, NAME_MAX)} | _NO_NUL
    elif kind == "array" and name in ("tags", "depends_on", "notify"):
        schema["items"] = {"type": "string", "maxLength": NAME_MAX} | _NO_NUL
        if name == "notify":
            schema["maxItems"] = NOTIFY_MAX
            schema["items"]["maxLength"] = CHANNEL_MAX
    return schema


class _Ranged:
    """Marks a record that ``check_record`` checks: its columns' ranges go into its schema."""

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        for name, prop in handler.resolve_ref_schema(schema).get("properties", {}).items():
            _column_schema(name, prop)
        return schema


RANGED = _Ranged()


def check_values(record: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each column checked (and coerced) against ``record``'s field types;
    ValueError naming the first column that is unknown or of the wrong type."""
    columns = _column_types(record)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in columns:
            known = ", ".join(sorted(columns))
            raise ValueError(f"values.{name}: not a column that can be set (known: {known})")
        try:
            out[name] = _adapter(columns[name]).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"values.{name}: {exc.errors()[0]['msg']}") from None
        why = column_problem(name, out[name])
        if why is not None:
            raise ValueError(f"values.{name}: {why}")
    return out


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class InsertFlowRunIn(Body):
    op: Literal["insert_flow_run"]
    run: Annotated[FlowRun, RANGED]
    message: Text | None = None

    @field_validator("run")
    @classmethod
    def _run(cls, run: Any) -> Any:
        return check_record(run)

    def to_op(self) -> Op:
        return InsertFlowRun(self.run, self.message)


class InsertTaskRunIn(Body):
    op: Literal["insert_task_run"]
    run: Annotated[TaskRun, RANGED]
    message: Text | None = None

    @field_validator("run")
    @classmethod
    def _run(cls, run: Any) -> Any:
        return check_record(run)

    def to_op(self) -> Op:
        return InsertTaskRun(self.run, self.message)


class UpdateFlowRunIn(Body):
    op: Literal["update_flow_run"]
    id: Name
    state: State
    at: Timestamp
    values: dict[str, Any] = columns(FlowRun)
    message: Text | None = None

    @field_validator("values")
    @classmethod
    def _columns(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_values(FlowRun, values)

    def to_op(self) -> Op:
        return UpdateFlowRun(self.id, self.state, self.at, self.values, self.message)


class UpdateTaskRunIn(Body):
    op: Literal["update_task_run"]
    id: Name
    state: State
    at: Timestamp
    values: dict[str, Any] = columns(TaskRun)
    message: Text | None = None

    @field_validator("values")
    @classmethod
    def _columns(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_values(TaskRun, values)

    def to_op(self) -> Op:
        return UpdateTaskRun(self.id, self.state, self.at, self.values, self.message)


class SupersedeTaskRunIn(Body):
    op: Literal["supersede_task_run"]
    id: Name
    at: Timestamp
    key: str | None = Field(default=None, max_length=300)

    def to_op(self) -> Op:
        return SupersedeTaskRun(self.id, self.at, self.key)


class InsertLogsIn(Body):
    op: Literal["insert_logs"]
    records: list[Annotated[LogRecord, RANGED]]

    @field_validator("records")
    @classmethod
    def _records(cls, records: list[LogRecord]) -> list[LogRecord]:
        for i, record in enumerate(records):
            try:
                check_record(record)
            except ValueError as exc:
                raise ValueError(f"records[{i}].{exc}") from None
        return records

    def to_op(self) -> Op:
        return InsertLogs(self.records)


class InsertArtifactIn(Body):
    op: Literal["insert_artifact"]
    artifact: Annotated[Artifact, RANGED]

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, artifact: Artifact) -> Artifact:
        return check_record(artifact)

    def to_op(self) -> Op:
        return InsertArtifact(self.artifact)


class PutCacheIn(Body):
    op: Literal["put_cache"]
    key: Name
    task: Name
    task_run_id: Name
    result: Any
    created_at: Timestamp
    expires_at: Timestamp | None

    def to_op(self) -> Op:
        return PutCache(
            self.key, self.task, self.task_run_id, self.result, self.created_at, self.expires_at
        )


class InsertQuestionIn(Body):
    op: Literal["insert_question"]
    question: Annotated[Question, RANGED]

    @field_validator("question")
    @classmethod
    def _schema(cls, question: Question) -> Question:
        import jsonschema

        check_record(question)
        try:
            jsonschema.Draft202012Validator.check_schema(question.schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"question.schema is not a JSON schema: {exc.message}") from None
        return question

    def to_op(self) -> Op:
        return InsertQuestion(self.question)


OpIn = Annotated[
    InsertFlowRunIn
    | InsertTaskRunIn
    | UpdateFlowRunIn
    | UpdateTaskRunIn
    | SupersedeTaskRunIn
    | InsertLogsIn
    | InsertArtifactIn
    | PutCacheIn
    | InsertQuestionIn,
    Field(discriminator="op"),
]


# -- stored results a body carries --------------------------------------------------------------

Loc = tuple[str | int, ...]


def _in_columns(values: dict[str, Any], loc: Loc) -> Iterator[tuple[Loc, Any]]:
    """Stored forms among a record's columns: its result, its payload's arguments (a queued
    call), its parameters that JSON could not hold."""
    if values.get("result") is not None:
        yield (*loc, "result"), values["result"]
    payload = values.get("payload")
    if isinstance(payload, dict) and "args" in payload:
        yield (*loc, "payload", "args"), payload["args"]
    parameters = values.get("parameters")
    if isinstance(parameters, dict):
        for name, value in parameters.items():
            if isinstance(value, dict) and STORED_PARAMETER in value:
                yield (*loc, "parameters", name, STORED_PARAMETER), value[STORED_PARAMETER]


def stored_results(body: BaseModel) -> Iterator[tuple[Loc, Any]]:
    """(where in the body, stored form) of every stored result ``body`` carries."""
    if isinstance(body, OpsIn):
        for i, op in enumerate(body.ops):
            loc: Loc = ("ops", i)
            if isinstance(op, InsertFlowRunIn | InsertTaskRunIn):
                yield from _in_columns(vars(op.run), (*loc, "run"))
            elif isinstance(op, UpdateFlowRunIn | UpdateTaskRunIn):
                yield from _in_columns(op.values, (*loc, "values"))
            elif isinstance(op, PutCacheIn):
                yield (*loc, "result"), op.result
    elif isinstance(body, TransitionIn | FinishIn):
        yield from _in_columns(body.values, ("values",))
    elif isinstance(body, FinishManyIn):
        for i, item in enumerate(body.finishes):
            yield from _in_columns(item.values, ("finishes", i, "values"))


def result_ref_errors(body: BaseModel, root: str) -> list[tuple[Loc, str]]:
    """(field, why) for each stored result in ``body`` that is malformed or points outside
    the result storage at ``root``: the server refuses those before anything is written."""
    errors: list[tuple[Loc, str]] = []
    for loc, stored in stored_results(body):
        if not (isinstance(stored, dict) and "ref" in stored):
            continue  # nothing is read from a file for it: not this check's business
        problem = stored_problem(stored, root)
        if problem is not None:
            field, why = problem
            errors.append(((*loc, field) if field else loc, why))
    return errors


# -- other request bodies ----------------------------------------------------------------------


class OpsIn(Body):
    ops: list[OpIn]
    request_id: str | None = Field(
        default=None, max_length=64, description="Makes the batch idempotent across retries."
    )


class TransitionIn(Body):
    state: State
    allowed_from: list[State]
    values: dict[str, Any] = columns(FlowRun)
    message: Text | None = None

    @field_validator("values")
    @classmethod
    def _columns(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_values(FlowRun, values)


class QuestionUpdateIn(Body):
    allowed_from: list[QuestionState]
    state: QuestionState
    values: dict[str, Any] = columns(Question)

    @field_validator("values")
    @classmethod
    def _columns(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_values(Question, values)


class AnswerIn(Body):
    value: Any = Field(description="The answer; it must fit the question's JSON schema.")
    by: Name | None = Field(default=None, max_length=200, description="Who answers.")


class ClaimIn(Body):
    pool: str = Field(min_length=1, max_length=200)
    worker: str = Field(min_length=1, max_length=200)
    free: dict[str, float]
    limit: int = Field(default=1, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0, le=86400)


class FlowClaimIn(Body):
    pool: str = Field(min_length=1, max_length=200)
    worker: str = Field(min_length=1, max_length=200)
    limit: int = Field(default=1, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0, le=86400)


class QueueFlowRunIn(Body):
    pool: str = Field(min_length=1, max_length=200)
    allowed_from: list[State]


class DeleteRunsIn(Body):
    run_ids: list[Name] = Field(min_length=1, max_length=1000)
    skip_active: bool = Field(
        default=False, description="Leave out runs no longer stopped (a prune), not refuse."
    )


class RerunIn(Body):
    task_run_ids: list[Name] = Field(min_length=1, max_length=10_000)


class LimitIn(Body):
    limit: int = Field(ge=0, le=2**31 - 1, description="Task runs RUNNING at once, at most.")


class DeploymentIn(Body):
    deployment: Deployment


class StartDeploymentIn(Body):
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The run's parameters, on top of the deployment's defaults; checked "
        "against the deployment's parameter schema.",
    )
    priority: int | None = Field(
        default=None,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="The run's priority instead of the deployment's (higher is claimed first).",
    )


class FoundDeployment(BaseModel):
    deployment: Deployment | None


class PoolIn(Body):
    pool: Pool


class FoundPool(BaseModel):
    pool: Pool | None


class EngineJobIn(Body):
    attempt: int = Field(ge=0, le=2**31 - 1)
    job_id: str = Field(min_length=1, max_length=200)


class Ids(BaseModel):
    ids: list[str]


class HeartbeatIn(Body):
    held: dict[str, Annotated[int, Field(ge=0, le=2**31 - 1)]]
    lease_seconds: float = Field(gt=0, le=86400)
    used: dict[str, float] = Field(default_factory=dict)


class FinishIn(Body):
    attempt: int = Field(ge=0, le=2**31 - 1)
    state: State
    values: dict[str, Any] = columns(TaskRun)
    message: Text | None = None

    @field_validator("values")
    @classmethod
    def _columns(cls, values: dict[str, Any]) -> dict[str, Any]:
        return check_values(TaskRun, values)


class FinishItemIn(FinishIn):
    task_run_id: str = Field(min_length=1, max_length=64)


class FinishManyIn(Body):
    finishes: list[FinishItemIn] = Field(min_length=1, max_length=1000)


class ChangedMany(BaseModel):
    changed: list[bool]


class RequeueIn(Body):
    now: Timestamp | None = None


class WaitQueueIn(Body):
    # A waiter is registered under each key: as many as /queues/versions answers (1,000
    # pools and "*"), so one wait cannot register a body's worth of keys.
    seen: dict[str, int] = Field(max_length=1001)
    timeout: float = Field(ge=0, le=3600)


class WaitTaskRunsIn(Body):
    ids: list[str] = Field(max_length=10000)
    timeout: float = Field(ge=0, le=3600)


class WorkerIn(Body):
    worker: Annotated[Worker, RANGED]

    @field_validator("worker")
    @classmethod
    def _worker(cls, worker: Worker) -> Worker:
        return check_record(worker)


class WorkerStateIn(Body):
    state: WorkerState


class TokenCreateIn(Body):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    role: Role
    pools: list[Name] | None = Field(default=None, min_length=1, max_length=1000)
    expires_at: Timestamp | None = None


class TokenVerifyIn(Body):
    secret: str = Field(max_length=1000)


class NewToken(BaseModel):
    """The answer to creating a token: its record and its secret (shown this once)."""

    token: ApiToken
    secret: str


SharedPath = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_no_nul)]


class ShareItemIn(Body):
    kind: Literal["artifacts", "results", "path"]
    path: SharedPath | None = None


class ShareIn(Body):
    """A share link to make: what of which run, until when (the server names its maker)."""

    flow_run_id: Name
    items: list[ShareItemIn] = Field(min_length=1, max_length=100)
    expires_at: Timestamp | None = None  # None: the server's default span from now
    note: Annotated[str, Field(max_length=2000), AfterValidator(_no_nul)] | None = None
    password: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class NewShare(BaseModel):
    """The answer to making a share: its record, its secret (shown this once) and its link."""

    share: Share
    secret: str
    url: str


class Changed(BaseModel):
    changed: bool


class Lost(BaseModel):
    lost: list[str]


class Woke(BaseModel):
    woke: bool


class NextAt(BaseModel):
    at: float | None


class Cached(BaseModel):
    found: bool
    result: Any = None


class FoundQuestion(BaseModel):
    question: Question | None


class TokenOrNone(BaseModel):
    token: ApiToken | None


class Count(BaseModel):
    count: int


# -- schedules, triggers, notifications ------------------------------------------------------


class PlainBody(BaseModel):
    """A request body of the trigger routes: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class SchedulesIn(PlainBody):
    schedules: list[Schedule] = Field(max_length=100)


class TriggerIn(PlainBody):
    trigger: Trigger


class RuleIn(PlainBody):
    rule: NotifyRule


class FoundTrigger(BaseModel):
    trigger: dict[str, Any] | None
