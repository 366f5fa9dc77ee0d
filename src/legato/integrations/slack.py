"""The Slack app: questions with buttons and modals, answers from Slack, a slash command.

- A question a flow asks (``ask()``) is posted to ``LEGATO_SLACK_CHANNEL`` by the server's
  notifier: buttons for yes/no and for a few choices, a select menu for more choices, an
  "Answer..." button opening a modal built from the question's JSON schema for the rest.
- A click or a submitted modal comes back to ``POST /api/v1/slack/interactions``; the answer
  is recorded and the run re-queued exactly as ``legato answer`` and the API do
  (``answer_question`` + ``queue_answered_run``), and the message is updated with who answered.
- ``/legato runs``, ``/legato retry RUN_ID``, ``/legato run NAME key=value ...`` and
  ``/legato why RUN_ID`` come to ``POST /api/v1/slack/commands`` (slack_commands.py).

Every request from Slack is verified (signature v0: HMAC-SHA256 of ``v0:timestamp:body`` with
the signing secret, compared in constant time by slack_sdk's ``SignatureVerifier``; the
timestamp must be whole unix seconds within 5 minutes of now), and the same request (same
signature and timestamp) is accepted once: a replay within the window is refused with 409.
The requests seen are remembered in memory by each server process (``Replays``), which is
enough because a replay older than the window fails the timestamp check anyway; a second
server process behind the same URL keeps its own memory. Only Slack users mapped to a Legato
role (``LEGATO_SLACK_USERS``) act, and answering or retrying needs the operator role.
slack_sdk is imported lazily.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from legato.audit import Actor
from legato.errors import InvalidAnswer, LegatoError, RunNotFound, UsageError
from legato.models import FlowRun, Question, QuestionState, Role
from legato.notify.channels import Message, slack_client
from legato.settings import Settings
from legato.store import Store

log = logging.getLogger("legato.slack")
ANSWER = "legato_answer"
OPEN_MODAL = "legato_open"
MODAL = "legato_answer_modal"
MAX_BUTTONS = 5
WINDOW_SECONDS = 300  # how far a request's timestamp may be from now (Slack's own rule)


def parse_users(text: str) -> dict[str, Role]:
    """``U123=operator,U456=viewer`` -> {user id: role}."""
    out: dict[str, Role] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        user, sep, role = part.partition("=")
        try:
            if not sep or not user.strip():
                raise ValueError
            out[user.strip()] = Role(role.strip().lower())
        except ValueError:
            from legato.errors import ConfigurationError

            raise ConfigurationError(
                f"LEGATO_SLACK_USERS: bad entry {part!r}: expected SLACK_USER_ID=ROLE "
                "(viewer, operator, runner or admin), e.g. U123=operator"
            ) from None
    return out


# -- what we send: Block Kit ------------------------------------------------------------------


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit] or " ", "emoji": True}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = root.get("$defs", {}).get(ref.split("/")[-1])
        if isinstance(found, dict):
            return {**found, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _run_link(settings: Settings, run: FlowRun) -> str:
    if settings.public_url:
        return f"<{settings.public_url.rstrip('/')}/runs/{run.id}|{run.id}>"
    return f"`{run.id}`"


def question_blocks(q: Question, run: FlowRun, settings: Settings) -> list[dict[str, Any]]:
    """The message of a question: the prompt, and what lets a person answer it."""
    schema = _resolve(q.schema, q.schema)
    header = (
        f"*{_esc(run.flow)}* asks: *{_esc(q.prompt)}*\n"
        f"Run {_run_link(settings, run)} is paused until someone answers."
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": "legato_prompt",
            "text": {"type": "mrkdwn", "text": header[:3000]},
        }
    ]
    elements: list[dict[str, Any]]
    enum = schema.get("enum")
    if schema.get("type") == "boolean":
        elements = [
            _button("Yes", f"{ANSWER}:0", {"q": q.id, "v": True}, "primary"),
            _button("No", f"{ANSWER}:1", {"q": q.id, "v": False}, "danger"),
        ]
    elif isinstance(enum, list) and 0 < len(enum) <= MAX_BUTTONS:
        elements = [
            _button(str(v), f"{ANSWER}:{i}", {"q": q.id, "v": v}) for i, v in enumerate(enum)
        ]
    elif isinstance(enum, list) and 0 < len(enum) <= 100:
        elements = [
            {
                "type": "static_select",
                "action_id": f"{ANSWER}:select",
                "placeholder": _plain("Choose"),
                "options": [
                    {"text": _plain(str(v)), "value": json.dumps({"q": q.id, "v": v})} for v in enum
                ],
            }
        ]
    else:
        elements = [
            {
                "type": "button",
                "text": _plain("Answer…"),
                "action_id": OPEN_MODAL,
                "value": q.id,
                "style": "primary",
            }
        ]
    blocks.append({"type": "actions", "block_id": f"legato_q:{q.id}", "elements": elements})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"or `legato answer {run.id} VALUE` (question {_esc(q.key)})",
                }
            ],
        }
    )
    return blocks


def _button(text: str, action_id: str, value: Any, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text),
        "action_id": action_id,
        "value": json.dumps(value)[:2000],
    }
    if style:
        button["style"] = style
    return button


def question_message(q: Question, run: FlowRun, settings: Settings) -> Message:
    return Message(
        title=f"{run.flow} asks",
        text=q.prompt,
        blocks=question_blocks(q, run, settings),
        fields={"question_id": q.id, "flow_run_id": run.id},
    )


def answered_blocks(q: Question, value: Any, who: str) -> list[dict[str, Any]]:
    shown = "yes" if value is True else "no" if value is False else json.dumps(value)
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*{_esc(q.prompt)}*\n:white_check_mark: {who} answered *{_esc(shown)}*"[
                    :3000
                ],
            },
        }
    ]


def _input_for(name: str, prop: dict[str, Any], label: str, optional: bool) -> dict[str, Any]:
    kind = prop.get("type")
    enum = prop.get("enum")
    element: dict[str, Any]
    if kind == "boolean" or isinstance(enum, list):
        choices = [True, False] if kind == "boolean" else list(enum or [])[:100]
        element = {
            "type": "static_select",
            "action_id": "value",
            "placeholder": _plain("Choose"),
            "options": [
                {
                    "text": _plain("yes" if c is True else "no" if c is False else str(c)),
                    "value": json.dumps(c),
                }
                for c in choices
            ],
        }
        if "default" in prop and prop["default"] in choices:
            d = prop["default"]
            element["initial_option"] = {
                "text": _plain("yes" if d is True else "no" if d is False else str(d)),
                "value": json.dumps(d),
            }
    elif kind in ("integer", "number"):
        element = {
            "type": "number_input",
            "action_id": "value",
            "is_decimal_allowed": kind == "number",
        }
        for key, slack_key in (("minimum", "min_value"), ("maximum", "max_value")):
            if key in prop:
                element[slack_key] = str(prop[key])
        if isinstance(prop.get("default"), int | float) and not isinstance(prop["default"], bool):
            element["initial_value"] = str(prop["default"])
    else:
        element = {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": kind in ("object", "array") or kind is None,
        }
        if kind in ("object", "array"):
            element["placeholder"] = _plain("JSON")
        if isinstance(prop.get("default"), str):
            element["initial_value"] = prop["default"]
        if isinstance(prop.get("maxLength"), int):
            element["max_length"] = prop["maxLength"]
    block: dict[str, Any] = {
        "type": "input",
        "block_id": f"f:{name}",
        "label": _plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if prop.get("description"):
        block["hint"] = _plain(str(prop["description"]), 2000)
    return block


def modal_view(q: Question, channel: str | None, ts: str | None) -> dict[str, Any]:
    """A modal with one input per field of the question's schema (``views.open``)."""
    schema = _resolve(q.schema, q.schema)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_esc(q.prompt)}*"[:3000]}}
    ]
    props = schema.get("properties")
    if schema.get("type") == "object" and isinstance(props, dict):
        required = set(schema.get("required") or [])
        for name, prop in list(props.items())[:50]:
            prop = _resolve(prop, q.schema)
            label = str(prop.get("title") or name)
            blocks.append(_input_for(name, prop, label, name not in required))
    else:
        blocks.append(_input_for("", schema, "Answer", False))
    meta = json.dumps({"q": q.id, "channel": channel, "ts": ts})
    return {
        "type": "modal",
        "callback_id": MODAL,
        "title": _plain("Answer the question", 24),
        "submit": _plain("Answer", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": meta[:3000],
        "blocks": blocks,
    }


def _field_value(prop: dict[str, Any], state: dict[str, Any]) -> Any:
    """One input's value from ``view.state.values[block]["value"]``; ``...`` if empty."""
    kind = state.get("type")
    if kind == "static_select":
        selected = state.get("selected_option")
        return ... if not selected else json.loads(selected["value"])
    raw = state.get("value")
    if raw is None or raw == "":
        return ...
    ptype = prop.get("type")
    if kind == "number_input" or ptype in ("integer", "number"):
        try:
            number = float(raw)
        except ValueError:
            raise InvalidAnswer(f"{raw!r} is not a number") from None
        return int(number) if ptype == "integer" and number.is_integer() else number
    if ptype in ("object", "array") or ptype is None:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            if ptype is None:
                return raw
            raise InvalidAnswer("expected JSON") from None
    return raw


class FieldError(InvalidAnswer):
    """An answer refused, with the modal block to show the reason under."""

    def __init__(self, message: str, block_id: str) -> None:
        super().__init__(message)
        self.block_id = block_id


def modal_answer(q: Question, values: dict[str, Any]) -> Any:
    """The answer a submitted modal gives (``view.state.values``); FieldError names the
    block to show a refusal under."""
    from legato.ask import check_answer

    schema = _resolve(q.schema, q.schema)
    props = schema.get("properties")
    value: Any
    if schema.get("type") == "object" and isinstance(props, dict):
        value = {}
        for name, prop in props.items():
            block = f"f:{name}"
            try:
                got = _field_value(_resolve(prop, q.schema), values.get(block, {}).get("value", {}))
            except InvalidAnswer as exc:
                raise FieldError(str(exc), block) from None
            if got is not ...:
                value[name] = got
    else:
        try:
            value = _field_value(schema, values.get("f:", {}).get("value", {}))
        except InvalidAnswer as exc:
            raise FieldError(str(exc), "f:") from None
        if value is ...:
            raise FieldError("an answer is needed", "f:")
    try:
        check_answer(q.schema, value)
    except InvalidAnswer as exc:
        first = next(iter(props)) if isinstance(props, dict) and props else ""
        parts = str(exc).split(": ")
        field = parts[1] if len(parts) >= 3 else first
        block = f"f:{field}" if isinstance(props, dict) and field in props else f"f:{first}"
        raise FieldError(str(exc), block) from None
    return value


# -- what we accept: requests from Slack -------------------------------------------------------


class Replays:
    """The Slack requests accepted within the window, by signature and timestamp: each is
    accepted once. In memory, per process; entries older than the window are dropped, since
    the timestamp check refuses those requests anyway."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first(self, signature: str, timestamp: str, at: float, now: float) -> bool:
        """True the first time this request is seen (and it is remembered), else False."""
        with self._lock:
            if len(self._seen) > 1000:  # prune now and then, not on every request
                self._seen = {k: t for k, t in self._seen.items() if now - t <= self.window}
            key = (signature, timestamp)
            if key in self._seen:
                return False
            self._seen[key] = at
            return True


class SlackApp:
    """Handles Slack's requests over a store. ``client`` defaults to a WebClient built from
    the settings; ``now`` is injectable (tests)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        client: Any = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.now = now
        self._client = client
        self.users = parse_users(settings.slack_users)
        self.replays = Replays()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = slack_client(self.settings)
        return self._client

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Slack's v0 signature over the raw body, its timestamp whole unix seconds within 5
        minutes (constant-time compare). Does not look for replays: see ``refusal``."""
        return self._signature(body, headers) is None

    def _signature(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request's signature is not good (None: it is)."""
        secret = self.settings.slack_signing_secret
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get("x-slack-request-timestamp")
        signature = lower.get("x-slack-signature")
        if not secret or not timestamp or not signature:
            return "the Slack signature is missing, wrong or too old"
        # Digits only: "nan", "inf", "1e9", " 17" or "1_7" are not a time Slack sends (int()
        # and float() accept some of them, and nan passes any window comparison).
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "the Slack request timestamp must be whole unix seconds"
        if abs(self.now() - int(timestamp)) > WINDOW_SECONDS:
            return "the Slack signature is missing, wrong or too old"
        from slack_sdk.signature import Clock, SignatureVerifier

        now = self.now

        class _Now(Clock):  # slack_sdk checks the window again, on our clock
            def now(self) -> float:
                return now()

        try:
            good = SignatureVerifier(secret, clock=_Now()).is_valid(body, timestamp, signature)
        except UnicodeDecodeError:  # slack_sdk decodes the body to sign it
            good = False
        return None if good else "the Slack signature is missing, wrong or too old"

    def refusal(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """(status, why) when a request must not be handled: 401 for a bad, stale or
        missing signature, 409 for a request already accepted (a replay); None: handle it,
        and it is remembered so it is accepted only once."""
        why = self._signature(body, headers)
        if why is not None:
            return 401, why
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower["x-slack-request-timestamp"]
        if not self.replays.first(
            lower["x-slack-signature"], timestamp, float(timestamp), self.now()
        ):
            return 409, "this Slack request was already handled (a replay)"
        return None

    def may(self, user_id: str, needed: Role) -> bool:
        role = self.users.get(user_id)
        return role is not None and role.allows(needed)

    def _who(self, user: dict[str, Any]) -> str:
        name = user.get("username") or user.get("name") or user["id"]
        return f"slack:{name} ({user['id']})" if name != user["id"] else f"slack:{name}"

    def _actor(self, user_id: str, who: str) -> Actor:
        role = self.users.get(user_id)
        return Actor(who, role.value if role is not None else "unknown")

    def _refuse(self, user_id: str, needed: Role) -> str:
        role = self.users.get(user_id)
        if role is None:
            return (
                f"Your Slack user {user_id} is not mapped to a Legato role, so you cannot "
                f"{'answer' if needed is Role.OPERATOR else 'use Legato'} here "
                "(an admin adds it to LEGATO_SLACK_USERS)."
            )
        return f"Your Legato role is {role.value}; this needs {needed.value}."

    # -- interactions: buttons, selects, modals ---------------------------------------------

    def handle_interaction(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any] | None]:
        """(HTTP status, JSON body or None for an empty 200)."""
        refused = self.refusal(body, headers)
        if refused is not None:
            return refused[0], {"detail": refused[1]}
        try:
            form = urllib.parse.parse_qs(body.decode(), strict_parsing=True)
            payload = json.loads(form["payload"][0])
            kind = payload["type"]
            user = payload["user"]
        except (ValueError, KeyError, UnicodeDecodeError):
            return 400, {"detail": "expected a form-encoded payload= with Slack's JSON"}
        if kind == "block_actions":
            self._block_action(payload, user)
            return 200, None
        if kind == "view_submission":
            return 200, self._view_submission(payload, user)
        return 200, None  # view_closed and others: nothing to do

    def _block_action(self, payload: dict[str, Any], user: dict[str, Any]) -> None:
        action = payload["actions"][0]
        action_id = str(action.get("action_id", ""))
        container = payload.get("container") or {}
        channel = (payload.get("channel") or {}).get("id") or container.get("channel_id")
        ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
        if not (action_id.startswith(ANSWER) or action_id == OPEN_MODAL):
            return
        if not self.may(user["id"], Role.OPERATOR):
            self._tell(channel, user["id"], self._refuse(user["id"], Role.OPERATOR))
            return
        if action_id == OPEN_MODAL:
            try:
                q = self.store.get_question(str(action["value"]))
            except RunNotFound:
                self._tell(channel, user["id"], "That question no longer exists.")
                return
            self.client.views_open(
                trigger_id=payload["trigger_id"], view=modal_view(q, channel, ts)
            )
            return
        raw = action["selected_option"]["value"] if "selected_option" in action else action["value"]
        data = json.loads(raw)
        problem = self._answer(str(data["q"]), data["v"], user, channel, ts)
        if problem:
            self._tell(channel, user["id"], problem)

    def _view_submission(
        self, payload: dict[str, Any], user: dict[str, Any]
    ) -> dict[str, Any] | None:
        view = payload["view"]
        if view.get("callback_id") != MODAL:
            return None
        meta = json.loads(view.get("private_metadata") or "{}")
        values = (view.get("state") or {}).get("values") or {}
        first_block = next(iter(values), "f:")
        if not self.may(user["id"], Role.OPERATOR):
            return _errors(first_block, self._refuse(user["id"], Role.OPERATOR))
        try:
            q = self.store.get_question(str(meta["q"]))
            value = modal_answer(q, values)
        except RunNotFound:
            return _errors(first_block, "That question no longer exists.")
        except FieldError as exc:
            return _errors(exc.block_id if exc.block_id in values else first_block, str(exc))
        problem = self._answer(q.id, value, user, meta.get("channel"), meta.get("ts"))
        return _errors(first_block, problem) if problem else None

    def _answer(
        self,
        question_id: str,
        value: Any,
        user: dict[str, Any],
        channel: str | None,
        ts: str | None,
    ) -> str | None:
        """Record the answer and carry the run on, as `legato answer` does; an error message
        for the person, or None."""
        from legato.ask import answer_question
        from legato.resume import queue_answered_run

        try:
            q = self.store.get_question(question_id)
            if q.state is not QuestionState.PENDING:
                who = q.answered_by or "someone"
                return f"This question was already answered by {who}."
            answer_question(self.store, q, value, self._who(user))
        except (InvalidAnswer, UsageError, RunNotFound) as exc:
            return str(exc)
        detail = {"run": q.flow_run_id, "key": q.key, "via": "slack"}
        self._actor(user["id"], self._who(user)).record(self.store, "question.answer", q.id, detail)
        try:
            pool = queue_answered_run(self.store, q.flow_run_id)
        except LegatoError as exc:
            log.warning("answered question %s but could not re-queue its run: %s", q.id, exc)
            pool = None
        log.info("question %s answered from Slack by %s; run queued for %s", q.id, user["id"], pool)
        if channel and ts:
            try:
                self.client.chat_update(
                    channel=channel,
                    ts=ts,
                    text=f"{q.prompt}: answered by <@{user['id']}>",
                    blocks=answered_blocks(q, value, f"<@{user['id']}>"),
                )
            except Exception as exc:  # the answer stands even if the message stays
                log.warning("could not update the Slack message of question %s: %s", q.id, exc)
        return None

    def _tell(self, channel: str | None, user_id: str, text: str) -> None:
        if not channel:
            return
        try:
            self.client.chat_postEphemeral(channel=channel, user=user_id, text=text)
        except Exception as exc:
            log.warning("could not tell Slack user %s: %s", user_id, exc)

    # -- the slash command ------------------------------------------------------------------

    def handle_command(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        refused = self.refusal(body, headers)
        if refused is not None:
            return refused[0], {"detail": refused[1]}
        try:
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            user_id = form["user_id"]
        except (KeyError, UnicodeDecodeError):
            return 400, {"detail": "expected Slack's form-encoded slash command"}
        words = form.get("text", "").split()
        sub = words[0].lower() if words else "help"
        if sub == "runs":
            if not self.may(user_id, Role.VIEWER):
                return 200, _ephemeral(self._refuse(user_id, Role.VIEWER))
            return 200, _ephemeral(self._runs_text(words[1:]))
        if sub == "retry":
            if not self.may(user_id, Role.OPERATOR):
                return 200, _ephemeral(self._refuse(user_id, Role.OPERATOR))
            if len(words) != 2:
                return 200, _ephemeral("Usage: `/legato retry RUN_ID`")
            return 200, _ephemeral(self._retry(words[1], user_id))
        if sub == "run":
            if not self.may(user_id, Role.OPERATOR):
                return 200, _ephemeral(self._refuse(user_id, Role.OPERATOR))
            if len(words) < 2:
                return 200, _ephemeral("Usage: `/legato run NAME key=value ...`")
            rest = form.get("text", "").strip()[len(words[0]) :].strip()[len(words[1]) :]
            return 200, _ephemeral(self._start(words[1], rest, user_id, form))
        if sub == "why":
            if not self.may(user_id, Role.VIEWER):
                return 200, _ephemeral(self._refuse(user_id, Role.VIEWER))
            if len(words) != 2:
                return 200, _ephemeral("Usage: `/legato why RUN_ID`")
            return 200, _ephemeral(self._why(words[1]))
        return 200, _ephemeral(
            "`/legato runs [STATE]`: the latest runs\n`/legato retry RUN_ID`: run a failed, "
            "crashed or cancelled run again on its pool\n`/legato run NAME key=value ...`: "
            "start a deployment\n`/legato why RUN_ID`: its failed task runs, their errors "
            "and log tails"
        )

    def _start(self, name: str, text: str, user_id: str, form: dict[str, str]) -> str:
        from legato.integrations.slack_commands import start_text

        who = f"slack:{form.get('user_name') or user_id}"
        said, run = start_text(self.store, name, text, who)
        if run is not None:
            detail = {"flow_run_id": run.id, "pool": run.pool, "via": "slack"}
            self._actor(user_id, f"slack:{user_id}").record(
                self.store, "deployment.start", name, detail
            )
            said = said.replace(f"`{run.id}`", _run_link(self.settings, run), 1)
        return said

    def _why(self, run_id: str) -> str:
        from legato.integrations.slack_commands import why_text

        try:
            run = self.store.get_flow_run(run_id)
        except RunNotFound as exc:
            return _esc(str(exc))
        return why_text(self.store, run.id, _run_link(self.settings, run))

    def _runs_text(self, args: list[str]) -> str:
        from legato.models import State

        states = None
        if args:
            try:
                states = [State(args[0].upper())]
            except ValueError:
                return f"Unknown state {args[0]!r}: use one of {', '.join(s.value for s in State)}."
        runs = self.store.list_flow_runs(top_level=True, states=states, limit=10)
        if not runs:
            return "No runs."
        lines = [
            f"`{r.id[:13]}` *{_esc(r.flow)}* {r.state.value}"
            + (f" — {_esc((r.error or '').splitlines()[0][:80])}" if r.error else "")
            for r in runs
        ]
        return "\n".join(lines)

    def _retry(self, run_id: str, user_id: str) -> str:
        from legato.deployments import DEFAULT_POOL
        from legato.resume import RETRYABLE

        try:
            run = self.store.get_flow_run(run_id)
        except RunNotFound as exc:
            return str(exc)
        if run.parent_task_run_id:
            return f"Run {run.id} is a child run: retry its parent instead."
        if run.state not in RETRYABLE:
            return (
                f"Run {run.id} is {run.state.value}: only failed, crashed or cancelled runs retry."
            )
        pool = run.pool or DEFAULT_POOL
        if not self.store.queue_flow_run(run.id, pool, allowed_from=list(RETRYABLE)):
            return f"Run {run.id} changed state meanwhile; try again."
        log.info("run %s re-queued for retry from Slack by %s", run.id, user_id)
        detail = {"via": "slack", "pool": pool}
        self._actor(user_id, f"slack:{user_id}").record(self.store, "run.retry", run.id, detail)
        return f"Run `{run.id}` ({_esc(run.flow)}) is queued again on pool {pool}."


def _errors(block_id: str, message: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block_id: message[:150]}}


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text[:3000]}


# -- installing the app --------------------------------------------------------------------


def manifest(public_url: str, name: str = "Legato") -> dict[str, Any]:
    """The Slack app manifest (api.slack.com/apps -> Create New App -> From a manifest)."""
    base = public_url.rstrip("/")
    return {
        "display_information": {
            "name": name,
            "description": "Questions from your pipelines, and their runs, in Slack.",
        },
        "features": {
            "bot_user": {"display_name": name.lower(), "always_online": True},
            "slash_commands": [
                {
                    "command": "/legato",
                    "url": f"{base}/api/v1/slack/commands",
                    "description": "Legato runs: list them, retry one",
                    "usage_hint": "runs [STATE] | retry RUN_ID",
                    "should_escape": False,
                }
            ],
        },
        "oauth_config": {"scopes": {"bot": ["chat:write", "chat:write.public", "commands"]}},
        "settings": {
            "interactivity": {
                "is_enabled": True,
                "request_url": f"{base}/api/v1/slack/interactions",
            },
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }
