"""The `legato` command.

Exit codes: 0 completed, 1 failed, 2 bad usage or input, 3 paused (waiting for an answer).
Errors are one readable line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from legato.audit import record_local
from legato.cli import audit as _audit
from legato.cli import backup as _backup
from legato.cli import deploy as _deploy
from legato.cli import notify as _notify
from legato.cli import output
from legato.cli import retention as _retention
from legato.cli import schedules as _schedules
from legato.cli import serve as _serve
from legato.cli import server as _server
from legato.cli import share as _share
from legato.cli import tokens as _tokens
from legato.cli import workers as _workers
from legato.errors import (
    ConfigurationError,
    LegatoError,
    SchemaOutOfDate,
    SchemaTooNew,
    StoreUnavailable,
    Unauthorized,
    UsageError,
)
from legato.models import State

EXIT_COMPLETED, EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED = 0, 1, 2, 3

app = typer.Typer(
    name="legato",
    help="Durable workflows for heterogeneous data pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # `legato --install-completion` / `--show-completion` (bash, zsh, fish, PowerShell).
    add_completion=True,
)
runs_app = typer.Typer(help="List, inspect, cancel, resume and retry runs.", no_args_is_help=True)
db_app = typer.Typer(help="The state database.", no_args_is_help=True)
asks_app = typer.Typer(help="Questions flows asked with ask().", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(asks_app, name="asks")
app.add_typer(_workers.worker_app, name="worker")
app.add_typer(_workers.workers_app, name="workers")
app.add_typer(_workers.pools_app, name="pools")
app.add_typer(_server.server_app, name="server")
app.add_typer(_tokens.tokens_app, name="tokens")
app.add_typer(_deploy.deployments_app, name="deployments")
app.add_typer(_workers.limits_app, name="limits")
app.command("deploy")(_deploy.deploy)
app.add_typer(_schedules.schedules_app, name="schedules")
app.add_typer(_schedules.triggers_app, name="triggers")
app.add_typer(_notify.notify_app, name="notify")
app.add_typer(_notify.slack_app, name="slack")
app.command("serve")(_serve.serve)
app.add_typer(_audit.audit_app, name="audit")
app.add_typer(_share.share_app, name="share")
runs_app.command("delete")(_retention.runs_delete)
db_app.command("prune")(_retention.db_prune)
db_app.command("storage")(_retention.db_storage)
db_app.command("backup")(_backup.db_backup)
db_app.command("restore")(_backup.db_restore)

_debug = False


def _version(shown: bool) -> None:
    if shown:
        from legato import __version__

        output.out.print(f"legato {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks.", envvar="LEGATO_DEBUG")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print Legato's version."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    output.err.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _store() -> Any:
    from legato.runtime import get_runtime

    return get_runtime().store


@contextmanager
def _store_stops(run_id: str) -> Iterator[None]:
    """A state database that cannot take writes ends a run's command with one line naming the
    database, and exit code 1; the run is left as its last committed change had it."""
    try:
        yield
    except StoreUnavailable as exc:
        try:
            run = _store().get_flow_run(run_id)
            hint = (
                f"Flow run {run.id} stopped at its last committed change: once the database "
                f"takes writes again, carry it on with `legato runs resume {run.id}`"
            )
        except Exception:
            hint = (
                f"Flow run {run_id} was not recorded: start it again once the database takes writes"
            )
        fail(escape(f"{exc}. {hint}"), EXIT_FAILED)


def _exit_code(state: State) -> int:
    if state.is_success:
        return EXIT_COMPLETED
    if state is State.PAUSED:
        return EXIT_PAUSED
    return EXIT_FAILED


# -- legato run ----------------------------------------------------------------------------


def parse_params(
    schema: dict[str, Any] | None, pairs: list[str], params_file: Path | None
) -> dict[str, Any]:
    """``-p key=value`` pairs on top of a JSON params file. Values are JSON when they parse,
    except for the parameters ``schema`` (a flow's parameter schema) types as strings."""
    props = (schema or {}).get("properties") or {}
    text = {k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"}
    params: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text())
        except OSError as exc:
            raise UsageError(f"cannot read params file {params_file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"params file {params_file} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"params file {params_file} must hold a JSON object")
        params.update(loaded)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"bad parameter {pair!r}: expected -p NAME=VALUE")
        if name in text:
            params[name] = raw
            continue
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            if raw.lstrip()[:1] in ("[", "{", '"'):  # meant as JSON: say where it breaks
                raise UsageError(
                    f"-p {name}: {raw!r} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    'strings inside need double quotes, e.g. -p \'paths=["a.h5","b.h5"]\''
                ) from None
            params[name] = raw  # a bare word: the flow's types decide (an enum, a path)
    return params


@app.command()
def run(
    ref: Annotated[str, typer.Argument(help="FILE.py:FLOW (or module:FLOW).")],
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="NAME=VALUE, repeatable.")
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option("--params-file", help="JSON object of parameters.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    capture_output: Annotated[
        bool, typer.Option("--capture-output", help="Store what tasks print in the run's log.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="For a deployment: queue the run and return.")
    ] = False,
    priority: Annotated[
        int | None,
        _deploy.priority_option("The run's priority (default: the flow's or deployment's)."),
    ] = None,
) -> None:
    """Run a flow now: FILE.py:FLOW in this process, or a deployment's NAME on its pool."""
    from legato.cli.progress import RunProgress
    from legato.engine import run_flow
    from legato.errors import Cancelled, Paused
    from legato.loader import load_flow
    from legato.models import new_id
    from legato.runtime import get_runtime

    if capture_output:
        os.environ["LEGATO_CAPTURE_OUTPUT"] = "true"
    if ":" not in ref and not ref.endswith(".py"):
        _run_deployment(
            ref, param or [], params_file, json_out, quiet, wait=not no_wait, priority=priority
        )
    flow = load_flow(ref)
    if priority is not None:  # this run's, not the flow's: a copy carries it
        import copy

        flow = copy.copy(flow)
        flow.priority = priority
    # The schema only tells which -p values are strings: not built when there are none.
    schema = flow.parameter_schema() if param else None
    params = flow.validate((), parse_params(schema, param or [], params_file))
    rt = get_runtime()
    _console_logs()
    run_id = new_id()
    show = not quiet and not json_out and output.err.is_terminal
    started = time.perf_counter()
    outcome: BaseException | None = None
    with _store_stops(run_id):
        try:
            with RunProgress(rt.recorder, flow.name, enabled=show, store=rt.store):
                run_flow(flow, params, run_id=run_id)
        except (Paused, Cancelled, Exception) as exc:
            outcome = exc
        rt.recorder.flush()
    finished = rt.store.get_flow_run(run_id)
    report(finished, outcome, time.perf_counter() - started, json_out)


def report(
    finished: Any, outcome: BaseException | None, elapsed: float, json_out: bool
) -> NoReturn:
    """Print how a run ended (one line, or the run as JSON) and exit with its code."""
    from legato.resume import failed_while_waiting, pending_questions
    from legato.runtime import get_runtime

    store = get_runtime().store
    if json_out:
        output.print_json(output.flow_run_json(finished, store.get_task_runs(finished.id)))
    summary = f"flow run {finished.id} {output.styled(finished.state)} in {elapsed:.2f} s"
    if finished.state is State.PAUSED:
        waiting = pending_questions(finished, store)
        many = f"{len(waiting)} answers" if len(waiting) > 1 else "an answer"
        lines = [f"{summary}: waiting for {many}."]
        for q in waiting:
            lines.append(f"  {escape(repr(q.prompt))} ({escape(_schema_hint(q.schema))})")
            if q.error:
                lines.append(f"    [red]{escape(q.error)}[/]")
            lines.append(f"    answer: legato answer {q.flow_run_id} VALUE")
        failed = failed_while_waiting(store, finished)
        if failed:
            lines.append(
                f"[yellow]{len(failed)} task run(s) had already failed; an answer carries the "
                "run on, and it fails unless the flow handles that:[/]"
            )
            for tr in failed[:5]:
                why = (tr.error or tr.state.value).splitlines()[0][:200]
                lines.append(f"  {escape(tr.key)} in flow run {tr.flow_run_id}: {escape(why)}")
        output.err.print("\n".join(lines), highlight=False)
    elif outcome is not None and not finished.state.is_success:
        reason = finished.error or str(outcome) or type(outcome).__name__.lower()
        output.err.print(f"{summary}: {escape(reason)}")
        if _debug:
            import traceback

            traceback.print_exception(outcome)
    elif not json_out:
        output.err.print(summary)
    raise typer.Exit(_exit_code(finished.state))


def _schema_hint(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kind = schema.get("type")
    if kind == "boolean":
        return "yes or no"
    if kind == "object":
        return "a JSON object: --json '{...}'"
    return str(kind or schema.get("title") or "a value")


def _run_deployment(
    name: str,
    pairs: list[str],
    params_file: Path | None,
    json_out: bool,
    quiet: bool,
    *,
    wait: bool,
    priority: int | None = None,
) -> NoReturn:
    """`legato run NAME`: queue a run of the deployment for its pool's workers. The server
    (or, embedded, this process) checks the parameters against the deployment's recorded
    schema; the flow's code is loaded only by the worker."""
    store = _store()
    dep = store.get_deployment(name)
    if dep is None:
        known = ", ".join(d.name for d in store.list_deployments()) or "none"
        raise UsageError(
            f"no deployment named {name!r} (deployments: {known}); to run a file use FILE.py:FLOW"
        )
    params = parse_params(dep.parameter_schema, pairs, params_file)
    run = store.start_deployment(dep.name, params, priority=priority)
    record_local(store, "deployment.start", dep.name, {"flow_run_id": run.id, "pool": dep.pool})
    output.err.print(f"flow run {run.id} queued for pool {dep.pool}", markup=False)
    if not wait:
        if json_out:
            output.print_json(output.flow_run_json(run))
        raise typer.Exit(0)
    started = time.perf_counter()
    while True:
        current = store.get_flow_run(run.id)
        if current.state.is_final or current.state is State.PAUSED:
            break
        time.sleep(0.5)
    report(current, None, time.perf_counter() - started, json_out)


def _console_logs() -> None:
    """Show the run's log records on stderr as they happen."""
    from rich.logging import RichHandler

    logger = logging.getLogger("legato.run")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=output.err, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


# -- legato runs ...------------------------------------------------------------------------


def _parse_states(values: list[str] | None) -> list[State] | None:
    if not values:
        return None
    states = []
    for value in values:
        for part in value.split(","):
            try:
                states.append(State(part.strip().upper()))
            except ValueError:
                names = ", ".join(s.value for s in State)
                raise UsageError(f"unknown state {part!r}: use one of {names}") from None
    return states


@runs_app.command("ls")
def runs_ls(
    flow: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow.")] = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only runs in these states (a,b).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000)] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    all_runs: Annotated[bool, typer.Option("--all", help="Include child flow runs.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List flow runs, newest first (top-level runs unless --all)."""
    store = _store()
    runs = store.list_flow_runs(
        flow=flow,
        states=_parse_states(state),
        limit=limit,
        offset=offset,
        top_level=not all_runs,
    )
    if json_out:
        output.print_json([output.flow_run_json(r) for r in runs])
        return
    if not runs:
        output.err.print("no flow runs yet: start one with `legato run FILE.py:FLOW`")
        return
    output.out.print(output.runs_table(runs))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One flow run: state, parameters, task runs, child runs, errors."""
    store = _store()
    run = store.get_flow_run(run_id)
    task_runs = store.get_task_runs(run.id)
    if json_out:
        data = output.flow_run_json(run, task_runs)
        data["questions"] = [
            output.with_iso_times(q.to_json()) for q in store.list_questions(flow_run_id=run.id)
        ]
        data["artifacts"] = [
            {
                "id": a.id,
                "kind": a.kind,
                "title": a.title,
                "task_run_id": a.task_run_id,
                "created_at": output.iso(a.created_at),
                "data": a.data,
            }
            for a in store.get_artifacts(run.id)
        ]
        data["history"] = [
            {"state": h.state.value, "at": output.iso(h.at), "message": h.message}
            for h in store.get_history(run.id)
        ]
        output.print_json(data)
        raise typer.Exit(_show_code(run.state))
    o = output.out
    o.print(f"[bold]{escape(run.flow)}[/] {run.id}  {output.styled(run.state)}")
    o.print(
        f"started {output.short_time(run.started_at)}  "
        f"duration {output.duration(run.started_at, run.ended_at)}"
    )
    o.print(f"parameters {json.dumps(run.parameters)}", markup=False)
    if run.parent_task_run_id:
        parent = store.get_task_run(run.parent_task_run_id)
        o.print(f"child of flow run {parent.flow_run_id} (call {parent.key})", markup=False)
    if run.error:
        o.print(f"[red]error[/] {escape(run.error)}")
    counts: dict[str, int] = {}
    for t in task_runs:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    o.print(f"task runs: {len(task_runs)}" + (f" ({summary})" if summary else ""))
    if task_runs:
        o.print(output.task_runs_table(task_runs))
    for q in store.list_questions(flow_run_id=run.id):
        asked = f"asked {q.prompt!r} at {output.short_time(q.created_at)}: {q.state.value}"
        if q.answered_at is not None:
            asked += (
                f", {json.dumps(q.answer)} by {q.answered_by} at {output.short_time(q.answered_at)}"
            )
        line = escape(asked)
        if q.error:
            line += f" [red]({escape(q.error)})[/]"
        o.print(line)
    for art in store.get_artifacts(run.id):
        o.print(
            f"artifact {art.kind}: {art.title or ''} {_artifact_hint(art)}".rstrip(), markup=False
        )
    queued = [t for t in task_runs if t.state is State.PENDING and t.pool and t.queued_at]
    if queued:
        online = {w.pool for w in store.list_workers()}
        for pool in sorted({t.pool for t in queued if t.pool}):
            n = sum(1 for t in queued if t.pool == pool)
            if pool in online:
                o.print(f"{n} task run(s) queued for pool {pool}", markup=False)
            else:
                o.print(f"[yellow]{n} task run(s) waiting for a worker in pool {escape(pool)}[/]")
    raise typer.Exit(_show_code(run.state))


def _show_code(state: State) -> int:
    """`runs show` exits like the run would have: 0 completed (or still going), 1 failed,
    3 paused."""
    return _exit_code(state) if state.is_final or state is State.PAUSED else EXIT_COMPLETED


def _artifact_hint(art: Any) -> str:
    if art.kind == "link":
        return str(art.data.get("url", ""))
    if art.kind == "table":
        return f"({len(art.data.get('rows', []))} rows)"
    if art.kind == "image":
        return f"({art.data.get('mime')})"
    return f"({len(art.data.get('markdown', ''))} characters)"


@runs_app.command("logs")
def runs_logs(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    task_key: Annotated[
        str | None, typer.Option("--task", help="Only this task run (its key or id).")
    ] = None,
    level: Annotated[str, typer.Option("--level", help="Lowest level shown.")] = "DEBUG",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records until the run ends.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The log of a flow run and of its child flow runs (records from get_logger(),
    captured output, failures), each line labelled with the call it came from."""
    from legato.cli.run_logs import print_logs

    store = _store()
    run = store.get_flow_run(run_id)
    min_level = logging.getLevelName(level.upper())
    if not isinstance(min_level, int):
        raise UsageError(f"unknown level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    print_logs(store, run, task_key=task_key, min_level=min_level, follow=follow, json_out=json_out)


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
) -> None:
    """Cancel a run: its running tasks are stopped and it is marked CANCELLED."""
    from legato.resume import root_of

    store = _store()
    run = store.get_flow_run(run_id)
    root = root_of(store, run)
    if root.id != run.id:
        # A child run lives in its parent's process: it stops with the whole run.
        output.err.print(
            f"{run.id} is a child of flow run {root.id}: cancelling the whole run", markup=False
        )
        run = root
    active = [s for s in State if not s.is_final]
    if not store.transition_flow_run(
        run.id,
        State.CANCELLED,
        allowed_from=active,
        values={"ended_at": time.time()},
        message="cancelled from the CLI",
    ):
        now_state = store.get_flow_run(run.id).state
        raise UsageError(f"flow run {run.id} is already {now_state.value}: nothing to cancel")
    record_local(store, "run.cancel", run.id)
    output.err.print(
        f"flow run {run.id} CANCELLED; a process running it stops its tasks within a second"
    )


# `runs resume|retry --here`: server mode queues the run for its pool's workers by default.
Here = Annotated[
    bool,
    typer.Option(
        "--here",
        help="With LEGATO_API_URL: run it in this shell (a runner token) instead of "
        "queueing it for its pool's workers.",
    ),
]


@runs_app.command("resume")
def runs_resume(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    here: Here = False,
) -> None:
    """Carry on a paused or crashed run; finished tasks are not run again."""
    from legato.resume import continue_run

    if not here:
        _queue_for_workers(run_id, retry=False, json_out=json_out)
    _console_logs()
    started = time.perf_counter()
    with _store_stops(run_id):
        finished, outcome = continue_run(run_id, on_start=_audited("run.resume"))
    report(finished, outcome, time.perf_counter() - started, json_out)


def _queue_for_workers(run_id: str, *, retry: bool, json_out: bool) -> None:
    """Server mode: queue the run for its pool's workers and exit (an operator's retry or
    resume; the code runs where it was deployed, not in this shell). Embedded: return."""
    from legato.resume import queue_for_workers
    from legato.store.http import HttpStore

    store = _store()
    if not isinstance(store, HttpStore):
        return
    root, pool = queue_for_workers(store, run_id, retry=retry)
    if json_out:
        output.print_json(output.flow_run_json(store.get_flow_run(root.id)))
    output.err.print(
        f"flow run {root.id} queued for pool {pool}: a worker there carries it on by replay "
        f"(`legato runs show {root.id}` to follow it)",
        markup=False,
    )
    raise typer.Exit(0)


def _audited(action: str) -> Any:
    """Records ``action`` on the run once it is taken over (embedded; the server records it
    itself when the CLI works through its API)."""

    def started(run: Any) -> None:
        record_local(_store(), action, run.id)

    return started


@runs_app.command("retry")
def runs_retry(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    here: Here = False,
) -> None:
    """Run a failed or cancelled run again: only failed and never-started tasks run."""
    from legato.resume import continue_run

    if not here:
        _queue_for_workers(run_id, retry=True, json_out=json_out)
    _console_logs()
    started = time.perf_counter()
    with _store_stops(run_id):
        finished, outcome = continue_run(run_id, retry=True, on_start=_audited("run.retry"))
    report(finished, outcome, time.perf_counter() - started, json_out)


@runs_app.command("rerun")
def runs_rerun(
    run_id: Annotated[str, typer.Argument(help="Flow run id (or a unique prefix).")],
    step: Annotated[
        str,
        typer.Option(
            "--from",
            help="The call to run again: its key (extract:3), or a task's name for every call "
            "of it. Looked up in the run, else in its child runs.",
        ),
    ],
    item: Annotated[
        list[str] | None,
        typer.Option(
            "--item",
            help="Only in these child runs, by call key or map index (repeatable).",
        ),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only calls now in this state, e.g. FAILED (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would run again; change nothing.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run chosen calls of a finished run again, and every call downstream of them; the rest
    replay their recorded results. Recorded as a forced rerun, with who asked."""
    from legato.audit import local_actor
    from legato.items import item_of
    from legato.rerun import pick_calls, plan_rerun
    from legato.resume import continue_run
    from legato.store.http import HttpStore

    store = _store()
    run = store.get_flow_run(run_id)
    try:
        states = [State(s.upper()) for s in state or []]
    except ValueError:
        fail(f"--state takes one of {', '.join(s.value for s in State)}")
    chosen = pick_calls(store, run, step, items=item or [], states=states)
    plan = plan_rerun(store, [t.id for t in chosen])
    places: dict[str, str] = {}

    def where(t: Any) -> str:  # a child's call is named by its item: rec-3 / extract:0
        if t.flow_run_id not in places:
            places[t.flow_run_id] = item_of(store, plan.root, t.flow_run_id)
        return f"{places[t.flow_run_id]} / {t.key}" if places[t.flow_run_id] else t.key

    head = (
        f"{len(plan.chosen)} call{'s' if len(plan.chosen) != 1 else ''} "
        f"({', '.join(where(t) for t in plan.chosen[:5])}"
        f"{', ...' if len(plan.chosen) > 5 else ''})"
        f" and {plan.downstream} downstream, in {len(plan.reopened)} run"
        f"{'s' if len(plan.reopened) != 1 else ''} of {plan.root.id}"
    )
    if dry_run:
        if json_out:
            output.print_json(plan.done().__dict__)
        output.err.print(f"would rerun {head}", markup=False)
        for t in plan.superseded[:50]:
            output.err.print(f"  {where(t)} (now {t.state.value})", markup=False)
        raise typer.Exit(0)
    remote = isinstance(store, HttpStore)
    done = store.rerun_calls([t.id for t in plan.chosen], by=local_actor().name)
    if remote:  # the server queued it for the run's pool and audited it as this token
        if json_out:
            output.print_json(done.__dict__)
        output.err.print(
            f"rerunning {head}: queued for pool {done.pool}, where a worker replays it "
            f"(`legato runs show {done.root}` to follow it)",
            markup=False,
        )
        raise typer.Exit(0)
    record_local(store, "run.rerun", done.root, done.detail())
    output.err.print(f"rerunning {head}", markup=False)
    _console_logs()
    started = time.perf_counter()
    with _store_stops(done.root):
        finished, outcome = continue_run(done.root)
    report(finished, outcome, time.perf_counter() - started, json_out)


# -- questions ------------------------------------------------------------------------------


@app.command()
def answer(
    run_id: Annotated[str, typer.Argument(help="The flow run that asked (id or prefix).")],
    value: Annotated[
        str | None, typer.Argument(help="The answer: yes/no, a word, a number.")
    ] = None,
    json_value: Annotated[
        str | None, typer.Option("--json", help="The answer as JSON (for structured answers).")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Which question, if the run has several.")
    ] = None,
    item: Annotated[
        str | None,
        typer.Option(
            "--item",
            help="Which child run's question, by its call key (process_recording:0[1], "
            "rec-003) or map index (1), when a parent's children ask.",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who answers (default user@host).")] = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Only record the answer; resume later.")
    ] = False,
) -> None:
    """Answer a question a paused run asked, then carry the run on in this process."""
    from legato.ask import answer_question, default_answerer, parse_answer
    from legato.items import item_matches, item_of
    from legato.resume import continue_run, pending_questions

    store = _store()
    run = store.get_flow_run(run_id)
    pending = pending_questions(run, store)
    items = {q.id: item_of(store, run, q.flow_run_id) for q in pending}
    if key is not None:
        pending = [q for q in pending if q.key == key or q.id.startswith(key)]
    if item is not None:
        pending = [q for q in pending if item_matches(items[q.id], item)]
    if not pending:
        picked = "".join(f" {w}" for w in (key and repr(key), item and f"of item {item!r}") if w)
        raise UsageError(f"flow run {run.id} has no pending question{picked}")
    if len(pending) > 1:
        if len({items[q.id] for q in pending}) > 1:
            shown = ", ".join(items[q.id] or "(this run)" for q in pending[:10])
            raise UsageError(
                f"flow run {run.id} waits on {len(pending)} questions of its child runs: "
                f"pick one with --item ({shown}{', ...' if len(pending) > 10 else ''})"
            )
        keys = ", ".join(q.key for q in pending)
        raise UsageError(
            f"flow run {run.id} waits on several questions: pick one with --key ({keys})"
        )
    question = pending[0]
    from legato.resume import root_of
    from legato.runtime import get_runtime

    root = root_of(store, run)
    if root.state.is_final:
        raise UsageError(
            f"flow run {root.id} is {root.state.value}: retry it first "
            f"(`legato runs retry {root.id}`), then answer"
        )
    if (value is None) == (json_value is None):
        raise UsageError("give the answer as VALUE or as --json '...', not both or neither")
    if json_value is not None:
        try:
            parsed = json.loads(json_value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--json is not valid JSON: {exc}") from None
    else:
        assert value is not None
        parsed = parse_answer(question.schema, value)
    from legato.store.http import HttpStore

    if isinstance(store, HttpStore):
        # Through the server's answer route (an operator's right): it checks the value,
        # records who answered and queues the run for its pool's workers.
        store.answer_question(question.id, parsed, by or default_answerer())
        output.err.print(f"answered {question.prompt!r} with {json.dumps(parsed)}", markup=False)
        output.err.print(
            f"the run is queued for pool {root.pool or 'default'}: a worker there carries it on",
            markup=False,
        )
        return
    answer_question(store, question, parsed, by)
    detail = {"run": question.flow_run_id, "key": question.key, "by": by or default_answerer()}
    record_local(store, "question.answer", question.id, detail)
    output.err.print(f"answered {question.prompt!r} with {json.dumps(parsed)}", markup=False)
    if no_resume:
        return

    if get_runtime().remote_pools:
        from legato.resume import queue_answered_run

        pool = queue_answered_run(store, run.id)
        if pool is not None:
            output.err.print(
                f"the run is queued for pool {pool}: a worker there carries it on", markup=False
            )
        return
    _console_logs()
    started = time.perf_counter()
    with _store_stops(run.id):
        finished, outcome = continue_run(run.id)
    refused = store.get_question(question.id)
    if refused.error and refused.state.value == "pending":
        output.err.print(f"[red]{escape(refused.error)}[/]; the run is still waiting")
        raise typer.Exit(EXIT_USAGE)
    report(finished, outcome, time.perf_counter() - started, False)


@asks_app.command("ls")
def asks_ls(
    all_questions: Annotated[
        bool, typer.Option("--all", help="Answered and expired questions too.")
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this flow run's.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Questions waiting for an answer (oldest first)."""
    from rich.table import Table

    from legato.models import QuestionState

    store = _store()
    states = None if all_questions else [QuestionState.PENDING]
    rid = store.get_flow_run(run_id).id if run_id else None
    questions = store.list_questions(states=states, flow_run_id=rid, limit=1000)
    if json_out:
        output.print_json([output.with_iso_times(q.to_json()) for q in questions])
        return
    if not questions:
        output.err.print("no questions waiting")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("RUN", "KEY", "QUESTION", "EXPECTS", "ASKED", "STATE", "ANSWER"):
        table.add_column(col, overflow="fold")
    for q in questions:
        output.add_row(
            table,
            q.flow_run_id,
            q.key,
            q.prompt,
            _schema_hint(q.schema),
            output.short_time(q.created_at),
            q.state.value,
            "" if q.answer is None else f"{json.dumps(q.answer)} by {q.answered_by}",
        )
    output.out.print(table)


@app.command()
def demo(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8787,
    recordings: Annotated[int, typer.Option("--recordings", min=1, max=10000)] = 20,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after the pipeline pauses (for checks).")
    ] = False,
) -> None:
    """The lab pipeline on this machine: server + dashboard, workers, 20 recordings, one
    waiting for your approval; serves until Ctrl-C."""
    from legato.demo import run_demo

    raise typer.Exit(run_demo(port=port, recordings=recordings, keep_serving=not no_serve))


@app.command()
def config(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The defaults as the README's table.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every LEGATO_* setting with its value here (secrets masked) and what it does."""
    from legato.settings import describe_settings, get_settings

    rows = describe_settings(None if markdown else get_settings())
    if markdown:
        print("| variable | default | what it does |\n|---|---|---|")
        for env, value, text in rows:
            print(f"| `{env}` | `{value}` | {text} |")
        return
    if json_out:
        output.print_json({env: value for env, value, _ in rows})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("VARIABLE", "VALUE", "WHAT IT DOES"):
        table.add_column(col, overflow="fold")
    for row in rows:
        output.add_row(table, *row)
    output.out.print(table)


# -- legato db ...---------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the state database's schema to this Legato's version."""
    from legato.settings import get_settings
    from legato.store.migrate import check_schema
    from legato.store.sql import SqlStore

    url = get_settings().db_url
    store = SqlStore(url, auto_upgrade=False, check=False)
    try:
        check_schema(store.engine, auto_upgrade=True)
    finally:
        store.close()
    output.err.print(f"database {store.safe_url} is at the current schema", markup=False)


@db_app.command("status")
def db_status() -> None:
    """Show which schema revision the database holds."""
    from legato.settings import get_settings
    from legato.store.migrate import current_revision
    from legato.store.schema import HEAD_REVISION
    from legato.store.sql import SqlStore

    store = SqlStore(get_settings().db_url, auto_upgrade=False, check=False)
    try:
        with store.engine.connect() as conn:
            found = current_revision(conn)
    finally:
        store.close()
    output.out.print(f"database: {store.safe_url}", markup=False)
    output.out.print(
        f"schema revision: {found or 'none (empty)'}; this Legato needs {HEAD_REVISION}"
    )


# -- entry point ----------------------------------------------------------------------------


def _code_for(exc: LegatoError) -> int:
    usage = (
        UsageError,
        ConfigurationError,
        SchemaTooNew,
        SchemaOutOfDate,
        Unauthorized,
    )
    # A state database or result storage that fails (StoreError, ResultStorageError) is a
    # failure, 1, like a failed run: 2 is for what the person typed or configured.
    return EXIT_USAGE if isinstance(exc, usage) else EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    """Console entry point: typer, with Legato's errors shown as one line."""
    try:
        code = app(args=argv, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except LegatoError as exc:
        if _debug:
            raise
        output.err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(_code_for(exc))
    except KeyboardInterrupt:
        output.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the parser's usage errors, and anything unexpected
        # Typer vendors click: its exceptions are recognised by shape, not by class.
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(EXIT_USAGE if code in (0, 1, 2) else code)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if _debug:
            raise
        output.err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} (run with --debug "
            "for the "
            "traceback)",
            highlight=False,
        )
        sys.exit(EXIT_FAILED)
