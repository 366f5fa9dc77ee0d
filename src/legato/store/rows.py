"""Row mappers: database rows to records and records to rows, for every table.

One home for how each record is laid out in its table (which columns hold JSON, how a state
is stored), so every SQL module of the store maps rows the same way. Pure functions over
rows and records: this module imports no other part of the store but the schema's names.
"""

from __future__ import annotations

import json
from typing import Any

from legato.models import (
    ApiToken,
    Artifact,
    AuditEvent,
    Deployment,
    FlowRun,
    LogRecord,
    Notification,
    NotifyRule,
    Pool,
    Question,
    QuestionState,
    Role,
    Schedule,
    Share,
    ShareAccess,
    ShareItem,
    State,
    StateChange,
    TaskRun,
    Trigger,
    Worker,
)
from legato.store.ops import LogEntry

dumps = json.dumps

# Columns that hold JSON text, whatever their table: an update's values are encoded by name.
JSON_COLUMNS = frozenset(
    {
        "parameters",
        "tags",
        "resources",
        "depends_on",
        "notify",
        "result",
        "answer",
        "default",
        "schema",
        "payload",
        "input_hashes",
        "capacity",
        "used",
    }
)


def encode(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (dumps(v) if k in JSON_COLUMNS and v is not None else v) for k, v in values.items()}


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def flow_run(row: Any) -> FlowRun:
    return FlowRun(
        id=row.id,
        flow=row.flow,
        state=State(row.state),
        parameters=json.loads(row.parameters),
        parent_task_run_id=row.parent_task_run_id,
        pool=row.pool,
        tags=json.loads(row.tags),
        result=loads(row.result),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        source=row.source,
        owner=row.owner,
        deployment=row.deployment,
        version=row.version,
        worker=row.worker,
        attempts=row.attempts,
        queued_at=row.queued_at,
        lease_expires_at=row.lease_expires_at,
        priority=row._mapping.get("priority", 0),
    )


def task_run(row: Any) -> TaskRun:
    """A task run from a row; a row that leaves out the heavy columns (resources, tags,
    cache_key, result, payload: the dashboard's light selects) gets their empty values."""
    m = row._mapping
    return TaskRun(
        id=row.id,
        flow_run_id=row.flow_run_id,
        task=row.task,
        key=row.key,
        state=State(row.state),
        attempts=row.attempts,
        pool=row.pool,
        worker=row.worker,
        resources=json.loads(m["resources"]) if "resources" in m else {},
        tags=json.loads(m["tags"]) if "tags" in m else [],
        depends_on=json.loads(row.depends_on),
        cache_key=m.get("cache_key"),
        result=loads(m.get("result")),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        child_flow_run_id=row.child_flow_run_id,
        queued_at=row.queued_at,
        lease_expires_at=row.lease_expires_at,
        max_attempts=row.max_attempts,
        payload=loads(m.get("payload")),
        engine_job_id=row.engine_job_id,
        fingerprint=m.get("fingerprint"),
        input_hashes=loads(m.get("input_hashes")),
        superseded_at=m.get("superseded_at"),
        rerun_by=m.get("rerun_by"),
        priority=m.get("priority", 0),
        root_id=m.get("root_id"),
        expected_duration=m.get("expected_duration"),
    )


def question(row: Any) -> Question:
    return Question(
        id=row.id,
        flow_run_id=row.flow_run_id,
        key=row.key,
        prompt=row.prompt,
        schema=json.loads(row.schema),
        state=QuestionState(row.state),
        default=loads(row.default),
        answer=loads(row.answer),
        answered_by=row.answered_by,
        answered_at=row.answered_at,
        error=row.error,
        created_at=row.created_at,
        timeout_at=row.timeout_at,
        notify=json.loads(row.notify) if row.notify else [],
    )


def flow_run_row(run: FlowRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow": run.flow,
        "state": run.state.value,
        "parameters": dumps(run.parameters),
        "parent_task_run_id": run.parent_task_run_id,
        "pool": run.pool,
        "tags": dumps(run.tags),
        "result": None if run.result is None else dumps(run.result),
        "error": run.error,
        "source": run.source,
        "owner": run.owner,
        "deployment": run.deployment,
        "version": run.version,
        "worker": run.worker,
        "attempts": run.attempts,
        "queued_at": run.queued_at,
        "lease_expires_at": run.lease_expires_at,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "updated_at": run.created_at,
        "priority": run.priority,
    }


def task_run_row(run: TaskRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "task": run.task,
        "key": run.key,
        "state": run.state.value,
        "attempts": run.attempts,
        "pool": run.pool,
        "worker": run.worker,
        "resources": dumps(run.resources),
        "tags": dumps(run.tags),
        "depends_on": dumps(run.depends_on),
        "cache_key": run.cache_key,
        "result": None if run.result is None else dumps(run.result),
        "error": run.error,
        "child_flow_run_id": run.child_flow_run_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "queued_at": run.queued_at,
        "lease_expires_at": run.lease_expires_at,
        "max_attempts": run.max_attempts,
        "payload": None if run.payload is None else dumps(run.payload),
        "engine_job_id": run.engine_job_id,
        "fingerprint": run.fingerprint,
        "input_hashes": None if run.input_hashes is None else dumps(run.input_hashes),
        "superseded_at": run.superseded_at,
        "rerun_by": run.rerun_by,
        "priority": run.priority,
        "root_id": run.root_id,
        "expected_duration": run.expected_duration,
    }


def history(run_id: str, kind: str, state: State, at: float, msg: str | None) -> dict[str, Any]:
    return {"run_id": run_id, "kind": kind, "state": state.value, "at": at, "message": msg}


def deployment(row: Any) -> Deployment:
    return Deployment(
        name=row.name,
        flow=row.flow,
        source=row.source,
        pool=row.pool,
        parameters=json.loads(row.parameters),
        tags=json.loads(row.tags),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        parameter_schema=None if row.parameter_schema is None else json.loads(row.parameter_schema),
        priority=row._mapping.get("priority", 0),
    )


def worker(row: Any) -> Worker:
    return Worker(
        id=row.id,
        name=row.name,
        pool=row.pool,
        capacity=json.loads(row.capacity),
        used=json.loads(row.used),
        state=row.state,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        last_heartbeat=row.last_heartbeat,
        version=row.version,
        token_id=row.token_id,
    )


def pool(row: Any) -> Pool:
    return Pool(
        name=row.name,
        type=row.type,
        options={str(k): str(v) for k, v in json.loads(row.options).items()},
        created_at=row.created_at,
    )


def audit_event(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        target=row.target,
        detail=json.loads(row.detail),
    )


def token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        pools=None if row.pools is None else json.loads(row.pools),
        expires_at=row.expires_at,
    )


def schedule(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        deployment=row.deployment,
        cron=row.cron,
        timezone=row.timezone,
        every=row.every,
        catchup=row.catchup,
        paused=bool(row.paused),
        parameters=json.loads(row.parameters),
        next_at=row.next_at,
        last_at=row.last_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def schedule_row(sch: Schedule) -> dict[str, Any]:
    row = sch.to_json()
    row["parameters"] = json.dumps(sch.parameters)
    return row


def trigger(row: Any) -> Trigger:
    return Trigger(
        name=row.name,
        kind=row.kind,
        deployment=row.deployment,
        config=json.loads(row.config),
        paused=bool(row.paused),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def rule(row: Any) -> NotifyRule:
    return NotifyRule(
        id=row.id,
        events=json.loads(row.events),
        channel=row.channel,
        flow=row.flow,
        created_at=row.created_at,
    )


def notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        channel=row.channel,
        event=row.event,
        dedup_key=row.dedup_key,
        payload=json.loads(row.payload),
        rule_id=row.rule_id,
        flow_run_id=row.flow_run_id,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


def artifact(row: Any) -> Artifact:
    return Artifact(
        row.id,
        row.flow_run_id,
        row.task_run_id,
        row.kind,
        json.loads(row.data),
        row.title,
        row.created_at,
    )


def artifact_row(a: Artifact) -> dict[str, Any]:
    return {
        "id": a.id,
        "flow_run_id": a.flow_run_id,
        "task_run_id": a.task_run_id,
        "kind": a.kind,
        "title": a.title,
        "data": dumps(a.data),
        "created_at": a.created_at,
    }


def log_row(r: LogRecord) -> dict[str, Any]:
    return {
        "flow_run_id": r.flow_run_id,
        "task_run_id": r.task_run_id,
        "at": r.at,
        "level": r.level,
        "logger": r.logger,
        "message": r.message,
    }


def log_entry(row: Any) -> LogEntry:
    record = LogRecord(row.flow_run_id, row.task_run_id, row.at, row.level, row.logger, row.message)
    return LogEntry(row.id, record)


def question_row(q: Question) -> dict[str, Any]:
    return {
        "id": q.id,
        "flow_run_id": q.flow_run_id,
        "key": q.key,
        "prompt": q.prompt,
        "schema": dumps(q.schema),
        "state": q.state.value,
        "default": None if q.default is None else dumps(q.default),
        "answer": None if q.answer is None else dumps(q.answer),
        "answered_by": q.answered_by,
        "answered_at": q.answered_at,
        "error": q.error,
        "created_at": q.created_at,
        "timeout_at": q.timeout_at,
        "notify": json.dumps(q.notify) if q.notify else None,
    }


def state_change(row: Any) -> StateChange:
    return StateChange(row.run_id, row.kind, State(row.state), row.at, row.message)


def share(row: Any) -> Share:
    return Share(
        id=row.id,
        flow_run_id=row.flow_run_id,
        items=[ShareItem(i["kind"], i.get("path")) for i in json.loads(row.items)],
        created_at=row.created_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
        note=row.note,
        revoked_at=row.revoked_at,
        has_password=row.password is not None,
    )


def share_access(row: Any) -> ShareAccess:
    return ShareAccess(
        id=row.id,
        share_id=row.share_id,
        at=row.at,
        client=row.client,
        item=row.item,
        bytes=row.bytes,
        status=row.status,
    )
