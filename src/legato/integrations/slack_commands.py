"""What `/legato run NAME key=value ...` and `/legato why RUN_ID` do and say.

`run` starts a deployment's run on its pool exactly as `legato run NAME` and the API do
(``Store.start_deployment``: its parameters checked against the deployment's recorded
schema, nothing imported). `why` puts in one message what a person asks first about a
failed run: its failed task runs (in its child runs too), their last errors, and the tail of
their logs. Text from users and from runs is escaped for Slack's mrkdwn.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from legato.errors import RunNotFound
from legato.integrations.slack import _esc as esc
from legato.models import FlowRun, State, TaskRun

MAX_PAIRS = 50
MAX_RUNS_WALKED = 500  # child runs looked at for failures
FAILED_SHOWN = 5
LOG_LINES = 8


def unescape(text: str) -> str:
    """Slack escapes &, < and > in a command's text; the parameters are what was typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_pairs(text: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """``key=value`` words (shell quoting allowed) as parameters: each value JSON when it
    parses, except for a parameter whose schema says it is a string; ValueError saying
    which word is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the parameters ({exc}): quote values with spaces") from None
    if len(words) > MAX_PAIRS:
        raise ValueError(f"at most {MAX_PAIRS} parameters")
    props = (schema or {}).get("properties") or {}
    params: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or not key:
            raise ValueError(f"{word!r} is not key=value")
        if (props.get(key) or {}).get("type") == "string":
            params[key] = raw
            continue
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw  # plain text: a string
    return params


def start_text(store: Any, name: str, text: str, who: str) -> tuple[str, FlowRun | None]:
    """Start deployment ``name``; (what to say, the run started or None)."""
    from legato.store.starts import InvalidParameters

    dep = store.get_deployment(name)
    if dep is None:
        known = ", ".join(sorted(d.name for d in store.list_deployments())[:20]) or "none"
        return f"No deployment named {esc(name)!r} (deployments: {esc(known)}).", None
    try:
        params = parse_pairs(unescape(text), dep.parameter_schema)
        run = store.start_deployment(dep.name, params)
    except ValueError as exc:  # InvalidParameters is a ParameterError, not a ValueError
        return f"Not started: {esc(str(exc))}", None
    except InvalidParameters as exc:
        lines = [f"• `{esc(k)}`: {esc(why)}" for k, why in exc.errors[:10]]
        return "Not started: the parameters do not fit.\n" + "\n".join(lines), None
    logging.getLogger("legato.slack").info(
        "run %s of %s started from Slack by %s", run.id, name, who
    )
    return f"Run `{run.id}` of *{esc(dep.name)}* is queued on pool {esc(dep.pool)}.", run


def _failed_calls(store: Any, run: FlowRun) -> list[tuple[str, TaskRun]]:
    """(where, task run) for the task runs that failed in ``run`` and its child runs,
    causes only (not the calls that did not run because of them)."""
    from legato.items import item_of
    from legato.resume import NOT_RUN

    found: list[tuple[str, TaskRun]] = []
    runs = [run]
    for current in runs:  # grows as child runs are found, up to MAX_RUNS_WALKED
        for tr in store.get_task_runs(current.id):
            if tr.superseded_at is not None:
                continue
            if tr.child_flow_run_id and not tr.state.is_success:
                if len(runs) < MAX_RUNS_WALKED:
                    runs.append(store.get_flow_run(tr.child_flow_run_id))
            elif tr.state in (State.FAILED, State.CRASHED) and not (tr.error or "").startswith(
                NOT_RUN
            ):
                found.append((item_of(store, run, current.id), tr))
    return found


def why_text(store: Any, run_id: str, link: str) -> str:
    """One message on why a run is where it is: state, failed calls, errors, log tails."""
    try:
        run = store.get_flow_run(run_id)
    except RunNotFound as exc:
        return esc(str(exc))
    head = f"*{esc(run.flow)}* {link} is *{run.state.value}*"
    if run.error:
        head += f": {esc(run.error.splitlines()[0][:200])}"
    if run.state is State.COMPLETED:
        return head + "."
    failed = _failed_calls(store, run)
    if not failed:
        return head + "\nNo task run of it failed." if run.state.is_final else head
    lines = [head, f"{len(failed)} failed task run{'s' if len(failed) != 1 else ''}:"]
    for where, tr in failed[:FAILED_SHOWN]:
        name = f"{where} / {tr.key}" if where else tr.key
        error = (tr.error or "no error recorded").strip().splitlines()
        lines.append(
            f"• `{esc(name)}` ({tr.state.value}, {tr.attempts} tries): {esc(error[-1][:300])}"
        )
        tail = store.log_tail(tr.flow_run_id, task_run_id=tr.id, limit=LOG_LINES)
        if tail:
            text = "\n".join(
                f"{logging.getLevelName(e.record.level)[:4]} {e.record.message[:200]}" for e in tail
            )
            lines.append(f"```{esc(text)}```")
    if len(failed) > FAILED_SHOWN:
        lines.append(f"…and {len(failed) - FAILED_SHOWN} more (`legato runs show {run.id}`).")
    return "\n".join(lines)
