"""The HTTP API: a thin FastAPI shell over a Store (no SQL here), versioned under /api/v1.

Every route names the role it needs (``x-legato-role`` in the OpenAPI document): viewer reads;
operator writes run state, claims, heartbeats, finishes, answers; admin manages tokens.
Errors are JSON ``{"detail": "..."}`` (validation errors add ``errors``, each naming its
field): 4xx for anything wrong with the request, 503 when the store cannot be reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from legato.errors import IllegalTransition, InvalidAnswer, RunNotFound, StoreError, UsageError
from legato.models import (
    ApiToken,
    Artifact,
    Deployment,
    FlowRun,
    Pool,
    Question,
    QuestionState,
    Role,
    State,
    StateChange,
    TaskRun,
    Worker,
)
from legato.server import metrics
from legato.server.auth import Authenticator, require
from legato.store import PAGE_MAX, LogEntry, Store
from legato.store import wire as w

API = "/api/v1"
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
MAX_WAIT_SECONDS = 30.0  # a long-poll holds a server thread at most this long
ROLE_KEY = "x-legato-role"

Id = Annotated[str, Path(min_length=1, max_length=200)]
Operator = Annotated[ApiToken, Depends(require(Role.OPERATOR))]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]


def create_app(
    store: Store,
    *,
    auth: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_wait: float = MAX_WAIT_SECONDS,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """The API over ``store``. ``auth=False`` makes every caller an admin (loopback only: the
    CLI refuses anything else). ``authenticator`` checks tokens elsewhere than in ``store``
    (tests whose store must start empty)."""
    from legato import __version__

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # Route functions run in threads; long-polls hold one each for up to max_wait.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 256
        yield

    app = FastAPI(
        title="Legato",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
    )
    app.add_middleware(DeclaredSizeLimit, max_bytes=max_body_bytes)
    app.state.store = store
    app.state.max_body_bytes = max_body_bytes
    app.state.auth = authenticator or Authenticator(store, enabled=auth)
    _error_handlers(app)
    _routes(app, store, app.state.auth, max_wait)  # on the app itself: app.routes lists them
    from legato.triggers.routes import include as _trigger_routes

    _trigger_routes(app, store)  # schedules, triggers, webhooks, notifications, Slack
    from legato.server.dashboard import mount_dashboard

    mount_dashboard(app, store, auth=app.state.auth)  # the pages at /, over a SqlStore
    return app


def _route(
    router: FastAPI, method: str, path: str, role: Role, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return router.api_route(
        path,
        methods=[method],
        dependencies=[Depends(require(role))],
        openapi_extra={ROLE_KEY: role.value},
        max_body_size=router.state.max_body_bytes,  # bodies sent without a Content-Length
        **options,
    )


def _routes(r: FastAPI, store: Store, auth: Authenticator, max_wait: float) -> None:
    V, O, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN  # noqa: E741

    @r.get("/health", tags=["server"])
    def health() -> dict[str, str]:
        """The server is up and its store answers (503 otherwise); no token needed."""
        store.list_flow_runs(limit=1)
        return {"status": "ok"}

    @_route(r, "GET", "/metrics", V, tags=["server"], response_class=PlainTextResponse)
    def get_metrics() -> PlainTextResponse:
        """Prometheus metrics: runs by state, queue depth per pool, workers, task durations."""
        return PlainTextResponse(metrics.render(store), media_type=metrics.CONTENT_TYPE)

    # -- flow runs and task runs ----------------------------------------------------------

    @_route(r, "POST", f"{API}/ops", O, status_code=204, tags=["runs"])
    def apply_ops(body: w.OpsIn) -> None:
        """Commit a batch of operations in one transaction (all or nothing)."""
        store.apply([op.to_op() for op in body.ops], request_id=body.request_id)

    @_route(r, "GET", f"{API}/flow-runs", V, tags=["runs"])
    def list_flow_runs(
        flow: Annotated[str | None, Query(max_length=500)] = None,
        state: Annotated[list[State] | None, Query()] = None,
        parent_task_run_id: Annotated[str | None, Query(max_length=200)] = None,
        top_level: bool = False,
        limit: Limit = 50,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first."""
        return store.list_flow_runs(
            flow=flow,
            states=state,
            parent_task_run_id=parent_task_run_id,
            top_level=top_level,
            limit=limit,
            offset=offset,
        )

    @_route(r, "GET", f"{API}/flow-runs/{{run_id}}", V, tags=["runs"])
    def get_flow_run(run_id: Id) -> FlowRun:
        """One flow run by id or unique id prefix (404 if none)."""
        return store.get_flow_run(run_id)

    @_route(r, "POST", f"{API}/flow-runs/{{run_id}}/transition", O, tags=["runs"])
    def transition_flow_run(run_id: Id, body: w.TransitionIn) -> w.Changed:
        """Compare-and-set a flow run's state (cancel, resume, retry)."""
        changed = store.transition_flow_run(
            run_id,
            body.state,
            allowed_from=body.allowed_from,
            values=body.values,
            message=body.message,
        )
        return w.Changed(changed=changed)

    @_route(r, "GET", f"{API}/flow-runs/{{run_id}}/task-runs", V, tags=["runs"])
    def get_task_runs(run_id: Id) -> list[TaskRun]:
        """Every task run of a flow run, in creation order."""
        return store.get_task_runs(run_id)

    @_route(r, "GET", f"{API}/flow-runs/{{run_id}}/logs", V, tags=["runs"])
    def get_logs(
        run_id: Id,
        task_run_id: Annotated[str | None, Query(max_length=200)] = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        min_level: Annotated[int, Query(ge=0, le=1000)] = 0,
        limit: Limit = 1000,
    ) -> list[LogEntry]:
        """Log records of a flow run after ``after_id``, oldest first."""
        return store.get_logs(
            run_id, task_run_id=task_run_id, after_id=after_id, min_level=min_level, limit=limit
        )

    @_route(r, "GET", f"{API}/flow-runs/{{run_id}}/artifacts", V, tags=["runs"])
    def get_artifacts(run_id: Id) -> list[Artifact]:
        """Artifacts of a flow run and its task runs, oldest first."""
        return store.get_artifacts(run_id)

    @_route(r, "GET", f"{API}/runs/{{run_id}}/history", V, tags=["runs"])
    def get_history(run_id: Id) -> list[StateChange]:
        """Every state change of a flow or task run, oldest first."""
        return store.get_history(run_id)

    @_route(r, "GET", f"{API}/task-runs/{{task_run_id}}", V, tags=["runs"])
    def get_task_run(task_run_id: Id) -> TaskRun:
        """One task run (404 if none)."""
        return store.get_task_run(task_run_id)

    @_route(r, "POST", f"{API}/task-runs/wait", V, tags=["runs"])
    def wait_for_task_runs(body: w.WaitTaskRunsIn) -> list[TaskRun]:
        """Long-poll: wait (at most 30 s) until some of ``ids`` end; return those that did."""
        return store.wait_for_task_runs(body.ids, min(body.timeout, max_wait))

    @_route(r, "GET", f"{API}/cache", V, tags=["runs"])
    def get_cached(
        key: Annotated[str, Query(min_length=1, max_length=1000)],
        now: Annotated[float, Query(allow_inf_nan=False)],
    ) -> w.Cached:
        """The cached result for a key, unless it expired by ``now``."""
        result = store.get_cached(key, now)
        return w.Cached(found=result is not None, result=result)

    # -- questions --------------------------------------------------------------------------

    @_route(r, "GET", f"{API}/questions", V, tags=["questions"])
    def list_questions(
        state: Annotated[list[QuestionState] | None, Query()] = None,
        flow_run_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Limit = 100,
    ) -> list[Question]:
        """Questions, oldest first."""
        return store.list_questions(states=state, flow_run_id=flow_run_id, limit=limit)

    @_route(r, "GET", f"{API}/questions/{{question_id}}", V, tags=["questions"])
    def get_question(question_id: Id) -> Question:
        """One question (404 if none)."""
        return store.get_question(question_id)

    @_route(r, "GET", f"{API}/flow-runs/{{run_id}}/question", V, tags=["questions"])
    def find_question(
        run_id: Id, key: Annotated[str, Query(min_length=1, max_length=1000)]
    ) -> w.FoundQuestion:
        """The question a flow run asked at a call key, if any."""
        return w.FoundQuestion(question=store.find_question(run_id, key))

    @_route(r, "POST", f"{API}/questions/{{question_id}}/update", O, tags=["questions"])
    def update_question(question_id: Id, body: w.QuestionUpdateIn) -> w.Changed:
        """Compare-and-set a question's state and fields."""
        changed = store.update_question(
            question_id, allowed_from=body.allowed_from, state=body.state, values=body.values
        )
        return w.Changed(changed=changed)

    @_route(
        r,
        "POST",
        f"{API}/questions/{{question_id}}/answer",
        O,
        tags=["questions"],
        response_model=Question,
    )
    def answer(question_id: Id, body: w.AnswerIn, token: Operator) -> Any:
        """Answer a pending question: the value is checked against the question's schema
        (422 naming what is wrong) and recorded, by ``by`` or the token's name. The paused
        run then goes back to its pool's queue (``default`` for runs started outside a
        deployment): a worker there carries it on by replay, past the question.
        """
        from legato.ask import answer_question
        from legato.resume import queue_answered_run

        question = store.get_question(question_id)
        if question.state is not QuestionState.PENDING:
            return _error(409, f"question {question.id} is already {question.state.value}")
        try:
            answer_question(store, question, body.value, body.by or token.name)
        except InvalidAnswer as exc:
            return _error(422, str(exc), field="body.value")
        except UsageError as exc:  # answered by someone else meanwhile
            return _error(409, str(exc))
        queue_answered_run(store, question.flow_run_id)
        return store.get_question(question.id)

    # -- remote pools: claims, leases, workers --------------------------------------------

    @_route(r, "POST", f"{API}/claims", O, tags=["queues"])
    def claim_task_runs(body: w.ClaimIn) -> list[TaskRun]:
        """Claim queued task runs of a pool that fit the worker's free resources."""
        return store.claim_task_runs(
            body.pool,
            body.worker,
            body.free,
            limit=body.limit,
            lease_seconds=body.lease_seconds,
        )

    @_route(r, "POST", f"{API}/task-runs/{{task_run_id}}/finish", O, tags=["queues"])
    def finish_task_run(task_run_id: Id, body: w.FinishIn) -> w.Changed:
        """Record a claimed attempt's outcome; ``changed`` is false for a stale attempt."""
        done = store.finish_task_run(
            task_run_id, body.attempt, body.state, body.values, body.message
        )
        return w.Changed(changed=done)

    @_route(r, "POST", f"{API}/task-runs/requeue-expired", O, tags=["queues"])
    def requeue_expired(body: w.RequeueIn) -> list[TaskRun]:
        """CRASHED for every expired lease, queued again while attempts remain."""
        return store.requeue_expired(body.now)

    @_route(r, "GET", f"{API}/queues/depths", V, tags=["queues"])
    def queue_depths() -> dict[str, int]:
        """Queued task runs per pool."""
        return store.queue_depths()

    @_route(r, "GET", f"{API}/queues/versions", V, tags=["queues"])
    def queue_versions(
        pool: Annotated[list[str], Query(max_length=1000)],
    ) -> dict[str, int]:
        """Wake-up counters of these pools, to pass to the wait below."""
        return store.queue_versions(pool)

    @_route(r, "GET", f"{API}/queues/{{pool}}/next", V, tags=["queues"])
    def next_queued_at(pool: Id) -> w.NextAt:
        """When the earliest queued task run of the pool becomes claimable (null if none)."""
        return w.NextAt(at=store.next_queued_at(pool))

    @_route(r, "POST", f"{API}/queues/wait", V, tags=["queues"])
    def wait_for_queue(body: w.WaitQueueIn) -> w.Woke:
        """Long-poll: wait (at most 30 s) until work may have been queued in the pools."""
        return w.Woke(woke=store.wait_for_queue(body.seen, min(body.timeout, max_wait)))

    @_route(r, "GET", f"{API}/workers", V, tags=["workers"])
    def list_workers(
        pool: Annotated[str | None, Query(max_length=200)] = None, include_offline: bool = False
    ) -> list[Worker]:
        """Workers by pool and name."""
        return store.list_workers(pool, include_offline=include_offline)

    @_route(r, "POST", f"{API}/workers", O, status_code=204, tags=["workers"])
    def register_worker(body: w.WorkerIn) -> None:
        """Record a worker that just started."""
        store.register_worker(body.worker)

    @_route(r, "PUT", f"{API}/workers/{{worker_id}}/state", O, status_code=204, tags=["workers"])
    def set_worker_state(worker_id: Id, body: w.WorkerStateIn) -> None:
        """online | draining | offline."""
        store.set_worker_state(worker_id, body.state)

    @_route(r, "POST", f"{API}/workers/{{worker_id}}/heartbeat", O, tags=["workers"])
    def heartbeat(worker_id: Id, body: w.HeartbeatIn) -> w.Lost:
        """Renew the leases a worker holds; ``lost`` lists the runs it must let go."""
        lost = store.heartbeat(worker_id, body.held, body.lease_seconds, body.used)
        return w.Lost(lost=lost)

    # -- concurrency limits (admin: settings) ------------------------------------------------

    @_route(r, "GET", f"{API}/limits", V, tags=["limits"])
    def list_limits() -> dict[str, int]:
        """Every concurrency limit (``tag:X``, ``pool:X``, ``flow:X`` -> task runs at once)."""
        return store.list_limits()

    @_route(r, "PUT", f"{API}/limits/{{name}}", A, status_code=204, tags=["limits"])
    def set_limit(name: Id, body: w.LimitIn) -> None:
        """Set a concurrency limit: at most ``limit`` task runs RUNNING at once."""
        store.set_limit(name, body.limit)

    @_route(r, "DELETE", f"{API}/limits/{{name}}", A, tags=["limits"])
    def delete_limit(name: Id) -> w.Changed:
        """Remove a limit; ``changed`` is false if there was none."""
        return w.Changed(changed=store.delete_limit(name))

    # -- flow runs on workers, deployments ----------------------------------------------------

    @_route(r, "POST", f"{API}/flow-claims", O, tags=["queues"])
    def claim_flow_runs(body: w.FlowClaimIn) -> list[FlowRun]:
        """Claim flow runs queued for a pool (deployment runs, answered paused runs)."""
        return store.claim_flow_runs(
            body.pool, body.worker, limit=body.limit, lease_seconds=body.lease_seconds
        )

    @_route(r, "POST", f"{API}/flow-runs/{{run_id}}/queue", O, tags=["queues"])
    def queue_flow_run(run_id: Id, body: w.QueueFlowRunIn) -> w.Changed:
        """Queue an existing flow run for a pool (compare-and-set on its state)."""
        changed = store.queue_flow_run(run_id, body.pool, allowed_from=body.allowed_from)
        return w.Changed(changed=changed)

    @_route(r, "POST", f"{API}/flow-runs/requeue-expired", O, tags=["queues"])
    def requeue_expired_flow_runs(body: w.RequeueIn) -> w.Ids:
        """Flow runs whose lease expired: CRASHED, then queued again."""
        return w.Ids(ids=store.requeue_expired_flow_runs(body.now))

    @_route(r, "GET", f"{API}/deployments", V, tags=["deployments"])
    def list_deployments() -> list[Deployment]:
        """Every deployment, by name."""
        return store.list_deployments()

    @_route(r, "GET", f"{API}/deployments/{{name}}", V, tags=["deployments"])
    def get_deployment(name: Id) -> w.FoundDeployment:
        """A deployment by name (null if none)."""
        return w.FoundDeployment(deployment=store.get_deployment(name))

    @_route(r, "PUT", f"{API}/deployments/{{name}}", O, status_code=204, tags=["deployments"])
    def put_deployment(name: Id, body: w.DeploymentIn) -> None:
        """Create or replace a deployment (its name must match the path)."""
        if body.deployment.name != name:
            raise HTTPException(422, detail="body.deployment.name: must match the path")
        store.put_deployment(body.deployment)

    @_route(r, "DELETE", f"{API}/deployments/{{name}}", O, tags=["deployments"])
    def delete_deployment(name: Id) -> w.Changed:
        """Remove a deployment; ``changed`` is false if there was none."""
        return w.Changed(changed=store.delete_deployment(name))

    # -- pool definitions, engine jobs ---------------------------------------------------------

    @_route(r, "GET", f"{API}/pools", V, tags=["pools"])
    def list_pools() -> list[Pool]:
        """Every defined pool (process, slurm, dask, kubernetes), by name."""
        return store.list_pools()

    @_route(r, "GET", f"{API}/pools/{{name}}", V, tags=["pools"])
    def get_pool(name: Id) -> w.FoundPool:
        """A pool's definition (null if nobody defined it: served by process workers)."""
        return w.FoundPool(pool=store.get_pool(name))

    @_route(r, "PUT", f"{API}/pools/{{name}}", A, status_code=204, tags=["pools"])
    def put_pool(name: Id, body: w.PoolIn) -> None:
        """Create or replace a pool definition (its name must match the path)."""
        if body.pool.name != name:
            raise HTTPException(422, detail="body.pool.name: must match the path")
        store.put_pool(body.pool)

    @_route(r, "DELETE", f"{API}/pools/{{name}}", A, tags=["pools"])
    def delete_pool(name: Id) -> w.Changed:
        """Remove a pool definition; ``changed`` is false if there was none."""
        return w.Changed(changed=store.delete_pool(name))

    @_route(r, "POST", f"{API}/task-runs/{{task_run_id}}/engine-job", O, tags=["queues"])
    def set_engine_job(task_run_id: Id, body: w.EngineJobIn) -> w.Changed:
        """Record the engine job id of a claimed attempt (fenced by the attempt number)."""
        return w.Changed(changed=store.set_engine_job(task_run_id, body.attempt, body.job_id))

    # -- what /metrics shows, for other stores ----------------------------------------------

    @_route(r, "GET", f"{API}/stats/runs", V, tags=["server"])
    def count_runs() -> dict[str, dict[str, int]]:
        """Flow runs and task runs per state."""
        return store.count_runs()

    @_route(r, "GET", f"{API}/stats/task-durations", V, tags=["server"])
    def recent_task_durations(limit: Limit = 2000) -> list[tuple[str, str, float]]:
        """(task, state, seconds) of the task runs that ended among the newest ``limit``."""
        return store.recent_task_durations(limit)

    # -- API tokens (admin) ----------------------------------------------------------------

    @_route(r, "GET", f"{API}/tokens", A, tags=["tokens"])
    def list_tokens() -> list[ApiToken]:
        """Every token, revoked ones too (never their secrets)."""
        return store.list_tokens()

    @_route(r, "POST", f"{API}/tokens", A, status_code=201, tags=["tokens"])
    def create_token(body: w.TokenCreateIn) -> w.NewToken:
        """A new token; the secret is in this answer only (the store keeps its hash)."""
        token, secret = store.create_token(body.name, body.role)
        return w.NewToken(token=token, secret=secret)

    @_route(r, "DELETE", f"{API}/tokens/{{id_or_name}}", A, tags=["tokens"])
    def revoke_token(id_or_name: Id) -> w.Changed:
        """Revoke a live token by id, id prefix or name; ``changed`` is false if none."""
        changed = store.revoke_token(id_or_name)
        auth.forget()
        return w.Changed(changed=changed)

    @_route(r, "POST", f"{API}/tokens/verify", A, tags=["tokens"])
    def verify_token(body: w.TokenVerifyIn) -> w.TokenOrNone:
        """The live token with this secret, if any."""
        return w.TokenOrNone(token=store.verify_token(body.secret))

    @_route(r, "POST", f"{API}/tokens/{{token_id}}/touch", A, status_code=204, tags=["tokens"])
    def touch_token(token_id: Id) -> None:
        """Record that a token was used now."""
        store.touch_token(token_id)


# -- errors ----------------------------------------------------------------------------------


class DeclaredSizeLimit:
    """A body whose Content-Length is over the limit gets a JSON 413 before it is read.
    (Bodies sent without a length are cut off by FastAPI's ``max_body_size``.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope["headers"]).get(b"content-length", b"0")
            size = int(declared) if declared.isdigit() else 0
            if size > self.max_bytes:
                message = f"the request body is {size} bytes; the limit is {self.max_bytes}"
                await _error(413, message, field="body")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str, *, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if field is not None:
        body["errors"] = [{"field": field, "message": message}]
    return JSONResponse(body, status_code=status)


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _database_error(exc: Exception, message: str | None) -> JSONResponse:
    """409 for a conflict with stored rows, 400 for a value the database refuses, else 503."""
    from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

    orig = getattr(exc, "orig", None)
    reason = message or " ".join(str(orig if orig is not None else exc).split())[:300]
    if isinstance(exc, IntegrityError):
        return _error(409, f"conflicts with what is stored: {reason}")
    if isinstance(exc, DataError) or (
        not isinstance(exc, DBAPIError) and isinstance(orig, ValueError | OverflowError)
    ):
        return _error(400, f"a value could not be stored: {reason}")
    return _error(503, f"the state database is unavailable: {reason}")


def _error_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            field = _field(e.get("loc", ()))
            message = "not valid JSON" if e.get("type") == "json_invalid" else str(e.get("msg"))
            errors.append({"field": field, "message": message})
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(RunNotFound)
    async def not_found(_: Request, exc: RunNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(UsageError)
    async def usage(_: Request, exc: UsageError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(IllegalTransition)
    async def illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        body = {"detail": str(exc), "error": "IllegalTransition", "index": exc.index}
        return JSONResponse(body, status_code=409)

    @app.exception_handler(StoreError)
    async def store_failed(_: Request, exc: StoreError) -> JSONResponse:
        # SqlStore wraps the database's refusal of a write: its cause says whose fault it is.
        cause = exc.__cause__
        if isinstance(cause, SQLAlchemyError):
            return _database_error(cause, str(exc))
        return _error(503, f"the state store is unavailable: {exc}")

    @app.exception_handler(SQLAlchemyError)
    async def database(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        return _database_error(exc, None)

    @app.exception_handler(OverflowError)
    async def overflow(_: Request, exc: OverflowError) -> JSONResponse:
        return _error(400, f"a number is out of range: {exc}")

    @app.exception_handler(UnicodeError)
    async def unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return _error(400, f"a string could not be stored: {exc}")
