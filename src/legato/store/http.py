"""HttpStore: the Store interface over a Legato server's HTTP API (``legato server start``).

One ``httpx.Client`` per store (connections are reused). A request that cannot connect, or
that the server answers 503 (its database is down), is retried with backoff for up to
``retry_seconds``; then a StoreError names the URL. 401 and 403 raise Unauthorized, 404 on a
read raises RunNotFound with the server's message, other 4xx raise UsageError.
Long waits (``wait_for_queue``, ``wait_for_task_runs``) are long-polls: the server waits on
its own store's wake-ups, at most 30 s a request, and this client asks again until its timeout.
A token may hold only so many long-polls at once (LEGATO_MAX_WAITS_PER_TOKEN): one refused
(429) makes this store's long-polls wait out the answer's Retry-After before asking again (the
same versions, so a wake-up that came meanwhile is answered at once); any other request
answered 429 is retried after its Retry-After, as a 503 is.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from legato.errors import IllegalTransition, RunNotFound, StoreError, Unauthorized, UsageError
from legato.models import (
    Artifact,
    FlowRun,
    Pool,
    Question,
    QuestionState,
    State,
    StateChange,
    TaskRun,
    Waiting,
    Worker,
    new_id,
)
from legato.rerun import Rerun
from legato.store.http_admin import HttpAdmin
from legato.store.operations import API, OPERATIONS, VERSION_HEADER, Operation
from legato.store.ops import Finish, LogEntry, Op
from legato.store.wire import decode, encode, encode_op

SERVER_WAIT = 30.0  # the longest a server holds one long-poll
MAX_RETRY_AFTER = 30.0  # the longest pause a server's Retry-After may impose


class _Refused(Exception):
    """The server refused a long-poll: the token holds as many as it may (HTTP 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class HttpStore(HttpAdmin):
    """The Store over HTTP; ``url`` is the server's base URL, ``token`` its bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry_seconds = retry_seconds
        self._timeout = timeout
        self._refused_until = 0.0  # monotonic time before which long-polls are not sent
        from legato.version import __version__

        # The server refuses a client of another release line (server/app.VersionCheck).
        headers = {"User-Agent": f"legato/{__version__}", VERSION_HEADER: __version__}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    @property
    def safe_url(self) -> str:
        return self.url

    # -- requests ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        timeout: float | None = None,
        refusable: bool = False,
    ) -> Any:
        """Send one request, retrying connection failures, 503 and 429 (after its
        Retry-After); the decoded JSON answer. ``refusable``: a 429 raises ``_Refused``."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            problem: str
            pause = 0.0
            try:
                response = self._client.request(
                    method,
                    API + path,
                    json=json,
                    params=params,
                    timeout=self._timeout if timeout is None else timeout,
                )
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
            ) as exc:
                problem = f"cannot reach {self.url} ({type(exc).__name__}: {exc})"
            except httpx.TimeoutException as exc:
                raise StoreError(f"{self.url} did not answer {method} {path} in time") from exc
            except httpx.HTTPError as exc:
                raise StoreError(f"request to {self.url} failed: {exc}") from exc
            else:
                status = response.status_code
                if status == 429:
                    pause = _retry_after(response)
                    if refusable:
                        raise _Refused(pause)
                    problem = f"{self.url} refused {method} {path}: {_detail(response)}"
                elif status == 503:
                    problem = f"{self.url} is unavailable: {_detail(response)}"
                else:
                    return self._answer(response, method, path)
            wait = max(pause, delay * (0.5 + random.random()))
            if time.monotonic() + wait > deadline:
                raise StoreError(f"{problem}; gave up after {self.retry_seconds:g} s")
            time.sleep(wait)
            delay = min(delay * 2, 2.0)

    def _send(
        self,
        op: Operation,
        *,
        json: Any = None,
        params: Any = None,
        timeout: float | None = None,
        refusable: bool = False,
        **segments: str,
    ) -> Any:
        """Send the request of a declared operation (its method and path, with ``segments``
        filled in); the decoded JSON answer."""
        path = op.url(**segments)
        return self._call(
            op.method, path, json=json, params=params, timeout=timeout, refusable=refusable
        )

    def _long_poll(
        self, op: Operation, body: dict[str, Any], timeout: float, done: Callable[[Any], bool]
    ) -> Any:
        """Long-poll ``op`` (``body`` plus the server's wait) until an answer is ``done`` or
        ``timeout`` passes; the last answer, or None when the server had refused this store's
        long-polls (429) for all of that time. Once refused, no long-poll of this store is
        sent before Retry-After has passed: a flow polling in short waits does not hammer
        the server meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self._refused_until > now:
                if self._refused_until >= deadline:
                    time.sleep(max(0.0, deadline - now))
                    return None
                time.sleep(self._refused_until - now)
            wait = max(0.0, min(deadline - time.monotonic(), SERVER_WAIT))
            try:
                data = self._send(
                    op, json={**body, "timeout": wait}, timeout=wait + self._timeout, refusable=True
                )
            except _Refused as refused:
                self._refused_until = time.monotonic() + refused.retry_after
                continue
            if done(data) or deadline - time.monotonic() <= 0.01:
                return data

    def _answer(self, response: httpx.Response, method: str, path: str) -> Any:
        status = response.status_code
        if status < 300:
            return None if status == 204 or not response.content else response.json()
        detail = _detail(response)
        if status in (401, 403):
            raise Unauthorized(f"{self.url} refused {method} {path}: {detail}")
        if status == 404:
            raise RunNotFound(detail)
        if status == 409 and (body := _body(response)).get("error") == "IllegalTransition":
            refused = IllegalTransition(detail)
            index = body.get("index")  # which op of the batch, as the server's store said
            refused.index = index if type(index) is int else None
            raise refused
        if status < 500:
            raise UsageError(detail)
        raise StoreError(f"{self.url} failed on {method} {path} (HTTP {status}): {detail}")

    # -- writes --------------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op], *, request_id: str | None = None) -> None:
        if ops:
            # One id for every retry of this batch: if the server committed it and then died
            # before answering, the retry is recognised and not applied twice.
            body = {"ops": [encode_op(op) for op in ops], "request_id": request_id or new_id()}
            self._send(OPERATIONS["apply_ops"], json=body)

    def transition_flow_run(
        self,
        run_id: str,
        state: State,
        *,
        allowed_from: Sequence[State],
        values: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> bool:
        body = {
            "state": state.value,
            "allowed_from": [s.value for s in allowed_from],
            "values": values or {},
            "message": message,
        }
        try:
            data = self._send(OPERATIONS["transition_flow_run"], run_id=run_id, json=body)
        except RunNotFound:
            return False
        return bool(data["changed"])

    # -- reads ---------------------------------------------------------------------------------

    def get_flow_run(self, run_id: str) -> FlowRun:
        return decode(FlowRun, self._send(OPERATIONS["get_flow_run"], run_id=run_id))

    def list_flow_runs(
        self,
        *,
        flow: str | None = None,
        states: Sequence[State] | None = None,
        parent_task_run_id: str | None = None,
        top_level: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[FlowRun]:
        params: dict[str, Any] = {"limit": limit, "offset": offset, "top_level": top_level}
        if flow is not None:
            params["flow"] = flow
        if states:
            params["state"] = [s.value for s in states]
        if parent_task_run_id is not None:
            params["parent_task_run_id"] = parent_task_run_id
        return decode(list[FlowRun], self._send(OPERATIONS["list_flow_runs"], params=params))

    def get_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        return decode(list[TaskRun], self._send(OPERATIONS["get_task_runs"], run_id=flow_run_id))

    def get_task_run(self, task_run_id: str) -> TaskRun:
        return decode(TaskRun, self._send(OPERATIONS["get_task_run"], task_run_id=task_run_id))

    def get_history(self, run_id: str) -> list[StateChange]:
        return decode(list[StateChange], self._send(OPERATIONS["get_history"], run_id=run_id))

    def get_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        after_id: int = 0,
        min_level: int = 0,
        limit: int = 1000,
    ) -> list[LogEntry]:
        params: dict[str, Any] = {"after_id": after_id, "min_level": min_level, "limit": limit}
        if task_run_id is not None:
            params["task_run_id"] = task_run_id
        data = self._send(OPERATIONS["get_logs"], run_id=flow_run_id, params=params)
        return decode(list[LogEntry], data)

    def get_artifacts(self, flow_run_id: str) -> list[Artifact]:
        return decode(list[Artifact], self._send(OPERATIONS["get_artifacts"], run_id=flow_run_id))

    def get_cached(self, key: str, now: float) -> Any | None:
        return self._send(OPERATIONS["get_cached"], params={"key": key, "now": now})["result"]

    # -- questions -----------------------------------------------------------------------------

    def get_question(self, question_id: str) -> Question:
        return decode(Question, self._send(OPERATIONS["get_question"], question_id=question_id))

    def find_question(self, flow_run_id: str, key: str) -> Question | None:
        data = self._send(OPERATIONS["find_question"], run_id=flow_run_id, params={"key": key})
        return None if data["question"] is None else decode(Question, data["question"])

    def list_questions(
        self,
        *,
        states: Sequence[QuestionState] | None = None,
        flow_run_id: str | None = None,
        limit: int = 100,
    ) -> list[Question]:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = [s.value for s in states]
        if flow_run_id is not None:
            params["flow_run_id"] = flow_run_id
        return decode(list[Question], self._send(OPERATIONS["list_questions"], params=params))

    def update_question(
        self,
        question_id: str,
        *,
        allowed_from: Sequence[QuestionState],
        state: QuestionState,
        values: dict[str, Any],
    ) -> bool:
        body = {
            "allowed_from": [s.value for s in allowed_from],
            "state": state.value,
            "values": values,
        }
        data = self._send(OPERATIONS["update_question"], question_id=question_id, json=body)
        return bool(data["changed"])

    def answer_question(self, question_id: str, value: Any, by: str | None = None) -> Question:
        """Answer on the server, which validates the value (InvalidAnswer-like UsageError)."""
        data = self._send(
            OPERATIONS["answer"], question_id=question_id, json={"value": value, "by": by}
        )
        return decode(Question, data)

    # -- remote pools ----------------------------------------------------------------------

    def claim_task_runs(
        self,
        pool: str,
        worker: str,
        free: dict[str, float],
        *,
        limit: int = 1,
        lease_seconds: float = 30.0,
    ) -> list[TaskRun]:
        body = {
            "pool": pool,
            "worker": worker,
            "free": free,
            "limit": limit,
            "lease_seconds": lease_seconds,
        }
        return decode(list[TaskRun], self._send(OPERATIONS["claim_task_runs"], json=body))

    def claim_flow_runs(
        self, pool: str, worker: str, *, limit: int = 1, lease_seconds: float = 30.0
    ) -> list[FlowRun]:
        body = {"pool": pool, "worker": worker, "limit": limit, "lease_seconds": lease_seconds}
        return decode(list[FlowRun], self._send(OPERATIONS["claim_flow_runs"], json=body))

    def queue_flow_run(self, run_id: str, pool: str, *, allowed_from: Sequence[State]) -> bool:
        body = {"pool": pool, "allowed_from": [s.value for s in allowed_from]}
        try:
            data = self._send(OPERATIONS["queue_flow_run"], run_id=run_id, json=body)
        except RunNotFound:
            return False
        return bool(data["changed"])

    def rerun_calls(
        self, task_run_ids: Sequence[str], *, by: str, pool: str | None = None
    ) -> Rerun:
        """The server reruns as the token's name, queued for the run's pool (``by`` and
        ``pool`` are its to decide)."""
        body = {"task_run_ids": list(task_run_ids)}
        return decode(Rerun, self._send(OPERATIONS["rerun_calls"], json=body))

    def requeue_expired_flow_runs(self, now: float | None = None) -> list[str]:
        data = self._send(OPERATIONS["requeue_expired_flow_runs"], json={"now": now})
        return [str(i) for i in data["ids"]]

    def get_pool(self, name: str) -> Pool | None:
        data = self._send(OPERATIONS["get_pool"], name=name)
        return None if data["pool"] is None else decode(Pool, data["pool"])

    def set_engine_job(self, task_run_id: str, attempt: int, job_id: str) -> bool:
        body = {"attempt": attempt, "job_id": job_id}
        data = self._send(OPERATIONS["set_engine_job"], task_run_id=task_run_id, json=body)
        return bool(data["changed"])

    def next_queued_at(self, pool: str) -> float | None:
        data = self._send(OPERATIONS["next_queued_at"], pool=pool)
        return None if data["at"] is None else float(data["at"])

    def heartbeat(
        self, worker_id: str, held: dict[str, int], lease_seconds: float, used: dict[str, float]
    ) -> list[str]:
        body = {"held": held, "lease_seconds": lease_seconds, "used": used}
        data = self._send(OPERATIONS["heartbeat"], worker_id=worker_id, json=body)
        return [str(i) for i in data["lost"]]

    def finish_task_run(
        self,
        task_run_id: str,
        attempt: int,
        state: State,
        values: dict[str, Any],
        message: str | None = None,
    ) -> bool:
        body = {"attempt": attempt, "state": state.value, "values": values, "message": message}
        data = self._send(OPERATIONS["finish_task_run"], task_run_id=task_run_id, json=body)
        return bool(data["changed"])

    def finish_task_runs(self, finishes: Sequence[Finish]) -> list[bool]:
        accepted: list[bool] = []
        for start in range(0, len(finishes), 1000):  # the route's bound
            items = [
                {
                    "task_run_id": f.task_run_id,
                    "attempt": f.attempt,
                    "state": f.state.value,
                    "values": f.values,
                    "message": f.message,
                }
                for f in finishes[start : start + 1000]
            ]
            data = self._send(OPERATIONS["finish_task_runs"], json={"finishes": items})
            accepted.extend(bool(c) for c in data["changed"])
        return accepted

    def requeue_expired(self, now: float | None = None) -> list[TaskRun]:
        data = self._send(OPERATIONS["requeue_expired"], json={"now": now})
        return decode(list[TaskRun], data)

    def queue_versions(self, pools: Sequence[str]) -> dict[str, int]:
        data = self._send(OPERATIONS["queue_versions"], params={"pool": list(pools)})
        return {str(k): int(v) for k, v in data.items()}

    def wait_for_queue(self, seen: dict[str, int], timeout: float) -> bool:
        op = OPERATIONS["wait_for_queue"]
        data = self._long_poll(op, {"seen": seen}, timeout, lambda d: bool(d["woke"]))
        # Refused all along (None): say "look", since the versions may have moved unseen.
        return data is None or bool(data["woke"])

    def wait_for_task_runs(self, ids: Sequence[str], timeout: float) -> list[TaskRun]:
        op = OPERATIONS["wait_for_task_runs"]
        data = self._long_poll(op, {"ids": list(ids)}, timeout, bool)
        return decode(list[TaskRun], data or [])

    def register_worker(self, worker: Worker) -> None:
        self._send(OPERATIONS["register_worker"], json={"worker": encode(worker)})

    def set_worker_state(self, worker_id: str, state: str) -> None:
        self._send(OPERATIONS["set_worker_state"], worker_id=worker_id, json={"state": state})

    def list_workers(
        self, pool: str | None = None, *, include_offline: bool = False
    ) -> list[Worker]:
        params: dict[str, Any] = {"include_offline": include_offline}
        if pool is not None:
            params["pool"] = pool
        return decode(list[Worker], self._send(OPERATIONS["list_workers"], params=params))

    def waiting(self, per_pool: int = 5) -> list[Waiting]:
        params = {"per_pool": per_pool}
        return decode(list[Waiting], self._send(OPERATIONS["waiting"], params=params))

    def queue_depths(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._send(OPERATIONS["queue_depths"]).items()}

    def close(self) -> None:
        self._client.close()


def _retry_after(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (1 when missing or a date), from 0.1 (never a
    busy loop) to MAX_RETRY_AFTER (a server cannot park a worker for long)."""
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds):
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER)


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    return error_text(data)


def error_text(body: Any) -> str:
    """A person's reading of an error body: its ``detail`` message, or for a 422 each
    ``{loc, msg}`` as ``body.ops[1].values.result.ref: is outside ...``, joined by "; "."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(
            f"{field_name(e.get('loc') or [])}: {e.get('msg')}" if isinstance(e, dict) else str(e)
            for e in detail
        )
    return str(body)[:300]


def field_name(loc: Sequence[Any]) -> str:
    """A 422's ``loc`` as one path: ``["body", "ops", 1, "id"]`` is ``body.ops[1].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _body(response: httpx.Response) -> dict[str, Any]:
    """The error answer's JSON object ({} when it is not one)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
