"""The decorators users write: ``@task`` and ``@flow``, and ``wait``.

Outside a flow, calling a task or a flow's pieces is a plain Python call (easy unit tests);
calling a flow outside any flow runs it durably. Inside a flow, task calls go to the engine.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import wait as _cf_wait
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from legato.context import current_engine
from legato.engine import run_flow
from legato.errors import ParameterError, UsageError
from legato.futures import Future, resolved
from legato.models import check_priority
from legato.policies import RetryDelay, code_fingerprint
from legato.results import STORED_PARAMETER, ResultStorage

P = ParamSpec("P")
R = TypeVar("R")

_RESERVED = ("key", "wait_for")
ReplayMode = Literal["rerun", "strict"]
# "process": every run in a fresh process (a clean interpreter; nothing outlives it).
Isolation = Literal["process"] | None
_STORED = STORED_PARAMETER
_ARBITRARY: Any = {"arbitrary_types_allowed": True}


def _reserved_kwargs(
    fn: Callable[..., Any], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], Any, Any]:
    """Split Legato's own ``key=``/``wait_for=`` from the call's arguments (unless the
    function itself takes a parameter of that name)."""
    params = _param_names(fn)
    key = kwargs.pop("key", None) if "key" not in params else kwargs.pop("legato_key", None)
    wait_for = (
        kwargs.pop("wait_for", None)
        if "wait_for" not in params
        else kwargs.pop("legato_wait_for", None)
    )
    return kwargs, key, wait_for


def _positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names positional arguments bind to (fingerprints name each argument)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


@functools.cache
def _param_names(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


class Task(Generic[P, R]):
    """A function whose calls inside a flow are recorded, retried, cached and placed."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        pool: str | None = None,
        resources: dict[str, float] | None = None,
        retries: int = 0,
        retry_delay: RetryDelay = None,
        retry_jitter: float = 0.0,
        retry_on: type[BaseException] | Sequence[type[BaseException]] | None = None,
        timeout: float | None = None,
        cache: bool | Callable[..., Any] = False,
        cache_expiration: float | None = None,
        tags: Iterable[str] = (),
        version: str | None = None,
        isolation: Isolation = None,
        priority: int = 0,
        expected_duration: float | None = None,
    ) -> None:
        if not callable(fn):
            raise UsageError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "task"))
        self.pool = pool
        # Added to its flow run's priority; higher is claimed first from a pool's queue.
        self.priority = check_priority(priority, f"task {self.name!r}")
        if expected_duration is not None and not expected_duration > 0:
            raise UsageError(f"task {self.name!r}: expected_duration must be > 0 seconds")
        # A run going past it is the `long` event of notification rules (else the task's
        # usual p95 is the measure).
        self.expected_duration = None if expected_duration is None else float(expected_duration)
        self.resources = {str(k): float(v) for k, v in (resources or {}).items()}
        gpus = self.resources.get("gpu", 0.0)
        if gpus != int(gpus) or gpus < 0:
            raise UsageError(
                f"task {self.name!r}: resources gpu={gpus:g}: GPUs are handed out whole "
                "(CUDA_VISIBLE_DEVICES); ask for 1, 2, ..."
            )
        if retries < 0:
            raise UsageError(f"task {self.name!r}: retries must be >= 0, got {retries}")
        self.retries = int(retries)
        self.retry_delay = retry_delay
        if not 0 <= retry_jitter <= 1:
            raise UsageError(f"task {self.name!r}: retry_jitter must be between 0 and 1")
        self.retry_jitter = float(retry_jitter)
        self.retry_on: tuple[type[BaseException], ...] | None
        if retry_on is None:
            self.retry_on = None
        elif isinstance(retry_on, type):
            self.retry_on = (retry_on,)
        else:
            self.retry_on = tuple(retry_on)
        if timeout is not None and timeout <= 0:
            raise UsageError(f"task {self.name!r}: timeout must be > 0 seconds")
        self.timeout = timeout
        if isolation not in (None, "process"):
            raise UsageError(
                f"task {self.name!r}: isolation must be None or 'process', got {isolation!r}"
            )
        self.isolation = isolation
        self.cache = cache
        self.cache_expiration = cache_expiration
        self.tags = tuple(tags)
        self.version = None if version is None else str(version)
        # What replay recognises the task by: its name and version, not its source, so a
        # run resumed after a bug fix reuses what completed (bump version= to redo it).
        self.identity = self.name if self.version is None else f"{self.name}@{self.version}"
        self.params = _positional_names(fn)
        functools.update_wrapper(self, fn)

    @property
    def needs_process(self) -> bool:
        """Runs in a fresh child process: a timeout must really stop it, a GPU must be
        isolated, or the task asked for a clean interpreter (``isolation="process"``)."""
        return (
            self.timeout is not None
            or self.resources.get("gpu", 0) > 0
            or self.isolation == "process"
        )

    @functools.cached_property
    def ref(self) -> str | None:
        """Where workers load this task from (see ``loader.code_ref``)."""
        from legato.loader import code_ref

        return code_ref(self.fn)

    @functools.cached_property
    def code_fingerprint(self) -> str:
        return code_fingerprint(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        engine = current_engine()
        if engine is None:
            kw, _, _ = _reserved_kwargs(self.fn, dict(kwargs))
            return self.fn(*args, **kw)
        kw, key, wait_for = _reserved_kwargs(self.fn, dict(kwargs))
        fut = engine.call_task(self, args, kw, key=key, wait_for=wait_for, submit=False)
        return fut.result()  # type: ignore[no-any-return]

    def submit(self, *args: Any, **kwargs: Any) -> Future[R]:
        """Start the task and return a future at once. Futures among the arguments are waited
        for first (the task depends on them); ``wait_for=[...]`` adds ordering without data;
        ``key="..."`` names the call for replay."""
        kw, key, wait_for = _reserved_kwargs(self.fn, kwargs)
        engine = current_engine()
        if engine is None:
            return resolved(self.fn(*args, **kw))
        return engine.call_task(self, args, kw, key=key, wait_for=wait_for, submit=True)

    def map(self, iterable: Iterable[Any], *args: Any, **kwargs: Any) -> list[Future[R]]:
        """One call per item (the item is the first argument; other arguments are passed to
        every call). ``key`` may be a string (keys become ``key[i]``) or a function of the
        item returning its key."""
        kw, key, wait_for = _reserved_kwargs(self.fn, kwargs)
        engine = current_engine()
        items = list(iterable)
        if engine is None:
            return [resolved(self.fn(item, *args, **kw)) for item in items]
        base = key if isinstance(key, str) else engine.next_key(self.name, None)
        futures = []
        for i, item in enumerate(items):
            # An index names a place, not a call: replay matches such calls by their inputs.
            by_index = not callable(key)
            item_key = f"{base}[{i}]" if by_index else key(item)
            futures.append(
                engine.call_task(
                    self,
                    (item, *args),
                    kw,
                    key=item_key,
                    wait_for=wait_for,
                    submit=True,
                    positional=by_index,
                )
            )
        return futures

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class Flow(Generic[P, R]):
    """A function that runs durably: its task calls are recorded, so a crashed run resumes."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        pool: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        tags: Iterable[str] = (),
        replay: ReplayMode | None = None,
        priority: int = 0,
    ) -> None:
        if not callable(fn):
            raise UsageError(f"@flow needs a function, got {fn!r}")
        if replay not in (None, "rerun", "strict"):
            raise UsageError(f"@flow replay= must be 'rerun' or 'strict', got {replay!r}")
        # None: the LEGATO_REPLAY setting decides (default "rerun").
        self.replay: ReplayMode | None = replay
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "flow"))
        self.pool = pool
        # Its runs' priority (a child flow's adds to its parent run's); `legato run
        # --priority` overrides it for a top-level run, a deployment's priority for its runs.
        self.priority = check_priority(priority, f"flow {self.name!r}")
        if retries < 0:
            raise UsageError(f"flow {self.name!r}: retries must be >= 0, got {retries}")
        self.retries = int(retries)
        if timeout is not None and timeout <= 0:
            raise UsageError(f"flow {self.name!r}: timeout must be > 0 seconds")
        self.timeout = timeout
        self.tags = tuple(tags)
        self.signature = inspect.signature(fn)
        self.params = _positional_names(fn)
        functools.update_wrapper(self, fn)

    # -- parameters -----------------------------------------------------------------------

    @functools.cached_property
    def _model(self) -> Any:
        """A pydantic model of the parameters, built from the function's type hints."""
        import typing

        from pydantic import ConfigDict, create_model

        try:
            hints = typing.get_type_hints(
                self.fn, include_extras=True
            )  # keep Annotated constraints
        except Exception:
            hints = {}
        fields: dict[str, Any] = {}
        for pname, param in self.signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise UsageError(
                    f"flow {self.name!r}: *args/**kwargs parameters are not supported; "
                    "name each parameter so runs can record and replay them"
                )
            default = ... if param.default is param.empty else param.default
            fields[pname] = (hints.get(pname, Any), default)
        return create_model(
            f"{self.name}_parameters",
            __config__=ConfigDict(arbitrary_types_allowed=True),
            **fields,
        )

    def _adapter(self, name: str) -> Any:
        """The TypeAdapter of parameter ``name``, built on first use and kept: building one
        costs far more than using it, and every run dumps its parameters through them."""
        adapter = self._adapters.get(name)
        if adapter is None:
            from pydantic import TypeAdapter

            annotation = self._model.model_fields[name].annotation
            adapter = self._adapters[name] = TypeAdapter(annotation, config=_ARBITRARY)
        return adapter

    @functools.cached_property
    def _adapters(self) -> dict[str, Any]:
        return {}

    def parameter_schema(self) -> dict[str, Any]:
        """The parameters as a JSON schema, recorded by `legato deploy` so the server checks
        a run's parameters without importing the flow. Types JSON schema cannot describe
        (arbitrary classes) accept any value there; the worker validates them fully."""
        from pydantic.json_schema import GenerateJsonSchema

        class _Lenient(GenerateJsonSchema):
            def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> Any:
                return {}  # an arbitrary class: anything here, the worker's check decides

            def emit_warning(self, kind: Any, detail: str) -> None:
                pass  # a default JSON cannot hold is left out of the schema, not an error

        schema: dict[str, Any] = self._model.model_json_schema(schema_generator=_Lenient)
        schema["additionalProperties"] = False  # an unknown parameter is refused, as here
        return schema

    def validate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind and validate call arguments against the type hints; ParameterError if bad."""
        from pydantic import ValidationError

        unknown = [k for k in kwargs if k not in self.signature.parameters]
        if unknown:
            takes = ", ".join(self.signature.parameters) or "no parameters"
            raise ParameterError(
                f"flow {self.name!r}: unknown parameter {unknown[0]!r} (it takes: {takes})"
            )
        try:
            bound = self.signature.bind_partial(*args, **kwargs)  # missing ones: pydantic says
        except TypeError as exc:
            raise ParameterError(f"flow {self.name!r}: {exc}") from None
        try:
            model = self._model.model_validate(dict(bound.arguments))
        except ValidationError as exc:
            raise ParameterError(_explain(self.name, exc)) from None
        return {name: getattr(model, name) for name in self.signature.parameters}

    def validate_some(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate the parameters given (defaults for a deployment); others may come later."""
        from pydantic import ValidationError

        unknown = [k for k in kwargs if k not in self.signature.parameters]
        if unknown:
            takes = ", ".join(self.signature.parameters) or "no parameters"
            raise ParameterError(
                f"flow {self.name!r}: unknown parameter {unknown[0]!r} (it takes: {takes})"
            )
        out = {}
        for name, value in kwargs.items():
            try:
                out[name] = self._adapter(name).validate_python(value)
            except ValidationError as exc:
                raise ParameterError(_explain(self.name, exc, prefix=name)) from None
        return out

    def dump_params(self, params: dict[str, Any], results: ResultStorage) -> dict[str, Any]:
        """Parameters as JSON for the store; values JSON cannot hold go to result storage."""
        out: dict[str, Any] = {}
        for name, value in params.items():
            try:
                out[name] = self._adapter(name).dump_python(value, mode="json", warnings=False)
            except Exception:
                out[name] = {_STORED: results.encode(value, what=f"parameter {name!r}")}
        return out

    def load_params(self, stored: dict[str, Any], results: ResultStorage) -> dict[str, Any]:
        """Parameters back from the store (for resume), validated again."""
        raw = {
            k: results.decode(v[_STORED]) if isinstance(v, dict) and _STORED in v else v
            for k, v in stored.items()
        }
        return self.validate((), raw)

    # -- where the code lives (so a run can be resumed from another process) -------------

    @functools.cached_property
    def source(self) -> str | None:
        from legato.loader import code_ref

        return code_ref(self.fn)

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        engine = current_engine()
        if engine is None:
            kw, _, _ = _reserved_kwargs(self.fn, dict(kwargs))  # a top-level run needs no key
            params = self.validate(args, kw)
            value, _ = run_flow(self, params)
            return value  # type: ignore[no-any-return]
        kw, key, wait_for = _reserved_kwargs(self.fn, dict(kwargs))
        fut = engine.call_flow(self, args, kw, key=key, submit=False, wait_for=wait_for)
        return fut.result()  # type: ignore[no-any-return]

    def submit(self, *args: Any, **kwargs: Any) -> Future[R]:
        """Start a child flow run and return a future at once (inside a flow)."""
        kw, key, wait_for = _reserved_kwargs(self.fn, kwargs)
        engine = current_engine()
        if engine is None:
            return resolved(self(*args, **kw))
        return engine.call_flow(self, args, kw, key=key, submit=True, wait_for=wait_for)

    def map(self, iterable: Iterable[Any], *args: Any, **kwargs: Any) -> list[Future[R]]:
        """One child flow run per item, run concurrently (inside a flow), or one run per item
        in turn (outside)."""
        kw, key, wait_for = _reserved_kwargs(self.fn, kwargs)
        engine = current_engine()
        items = list(iterable)
        if engine is None:
            return [resolved(self(item, *args, **kw)) for item in items]
        base = key if isinstance(key, str) else engine.next_key(self.name, None)
        waits = list(wait_for or [])
        return [
            engine.call_flow(
                self,
                (item, *args),
                kw,
                key=key(item) if callable(key) else f"{base}[{i}]",
                submit=True,
                wait_for=waits,
                positional=not callable(key),
            )
            for i, item in enumerate(items)
        ]

    def __repr__(self) -> str:
        return f"<Flow {self.name}>"


def _explain(flow_name: str, exc: Any, prefix: str | None = None) -> str:
    parts = []
    for err in exc.errors():
        loc = [prefix, *err["loc"]] if prefix else list(err["loc"])
        where = ".".join(str(p) for p in loc) or "parameters"
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {got!r})"
        msg = "missing" if err["type"] == "missing" else err["msg"]
        parts.append(f"parameter {where!r}: {msg}{shown}")
    return f"flow {flow_name!r}: " + "; ".join(parts)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = ...,
    pool: str | None = ...,
    resources: dict[str, float] | None = ...,
    retries: int = ...,
    retry_delay: RetryDelay = ...,
    retry_jitter: float = ...,
    retry_on: type[BaseException] | Sequence[type[BaseException]] | None = ...,
    timeout: float | None = ...,
    cache: bool | Callable[..., Any] = ...,
    cache_expiration: float | None = ...,
    tags: Iterable[str] = ...,
    version: str | None = ...,
    isolation: Isolation = ...,
    priority: int = ...,
    expected_duration: float | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(pool="gpu", retries=3, ...)``."""
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = ...,
    pool: str | None = ...,
    retries: int = ...,
    timeout: float | None = ...,
    tags: Iterable[str] = ...,
    replay: ReplayMode | None = ...,
    priority: int = ...,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a flow: ``@flow`` or ``@flow(name=..., retries=1, ...)``."""
    if fn is not None:
        return Flow(fn, **options)
    return lambda f: Flow(f, **options)


def wait(
    futures: Iterable[Future[Any]], timeout: float | None = None
) -> tuple[list[Future[Any]], list[Future[Any]]]:
    """Wait until every future is done (or ``timeout`` passes); returns (done, not_done).
    Failures are not raised here: call ``.result()`` on each to see them."""
    futures = list(futures)
    _cf_wait([f._cf for f in futures], timeout=timeout)
    return [f for f in futures if f.done()], [f for f in futures if not f.done()]
