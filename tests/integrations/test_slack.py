"""The Slack app against a fake Slack on 127.0.0.1: what we post is Block Kit that slack_sdk's
models accept; what we accept are Slack's real request shapes (form-encoded ``payload=`` and
slash command bodies, signed v0). A question is answered from Slack end to end, and refused
for an unmapped user, a viewer, a bad or stale signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.errors import Paused
from legato.integrations.slack import SlackApp, manifest, modal_view, question_blocks
from legato.loader import load_flow
from legato.models import Question, QuestionState, State
from legato.notify.sender import Notifier
from legato.resume import continue_run
from legato.runtime import Runtime
from legato.settings import Settings

from .fake_slack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def _settings(fake: FakeSlack) -> Settings:
    return Settings(
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SECRET,
        slack_channel="#lab-qc",
        slack_api_url=fake.url,
        slack_users="U123=operator,U456=viewer",
        public_url="https://legato.lab.org",
    )


def signed(body: str, *, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    ts = str(int(time.time() - age))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sig,
    }


def _user(uid: str) -> dict[str, str]:
    name = {"U123": "alice", "U456": "victor"}.get(uid, "mallory")
    return {"id": uid, "username": name, "name": name, "team_id": "T1"}


def block_actions(
    message: dict[str, Any], action: dict[str, Any], uid: str, trigger: str = "1234.5678.abcd"
) -> str:
    """A ``block_actions`` payload as Slack sends it when ``action`` is clicked (each click
    has a trigger id of its own)."""
    payload = {
        "type": "block_actions",
        "user": _user(uid),
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": "C0LAB",
            "is_ephemeral": False,
        },
        "trigger_id": trigger,
        "team": {"id": "T1", "domain": "lab"},
        "channel": {"id": "C0LAB", "name": "lab-qc"},
        "message": {"type": "message", "ts": message["ts"], "blocks": message["blocks"]},
        "response_url": "https://hooks.slack.invalid/actions/T1/1/x",
        "actions": [{**action, "block_id": message["action_block"], "action_ts": "1.2"}],
    }
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def view_submission(view: dict[str, Any], values: dict[str, Any], uid: str) -> str:
    payload = {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "lab"},
        "user": _user(uid),
        "api_app_id": "A1",
        "trigger_id": "1234.5678.efgh",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "blocks": view["blocks"],
            "state": {"values": values},
            "hash": "1.abc",
        },
    }
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def _valid_blocks(blocks: list[dict[str, Any]]) -> None:
    from slack_sdk.models.blocks import Block

    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict()["type"] == block["type"]
    ids = [e["action_id"] for b in blocks for e in b.get("elements", []) if "action_id" in e]
    assert len(ids) == len(set(ids))


class Lab:
    """A server (uvicorn) over the runtime's store with the Slack app, and the fake Slack."""

    def __init__(self, rt: Runtime, fake: FakeSlack, flows_file: Path) -> None:
        from tests.live_server import LiveServer

        self.rt, self.fake, self.flows_file = rt, fake, flows_file
        self.settings = _settings(fake)
        self.server = LiveServer(rt.store)
        self.server.app.state.slack = SlackApp(rt.store, self.settings)
        self.http = httpx.Client(base_url=self.server.url, timeout=30)
        self.notifier = Notifier(rt.store, self.settings)

    def ask(self, flow: str, sample: str = "S-1") -> Question:
        with pytest.raises(Paused):
            load_flow(f"{self.flows_file}:{flow}")(sample)
        (q,) = self.rt.store.list_questions(states=[QuestionState.PENDING])
        return q

    def posted(self) -> dict[str, Any]:
        """Post the waiting question to Slack the way the server does; what Slack got."""
        assert self.notifier.tick() == 1
        post = self.fake.of("chat.postMessage")[-1]
        blocks = post.body["blocks"]
        actions = next(b for b in blocks if b["type"] == "actions")
        return {
            "ts": "1700000000.000001",
            "blocks": blocks,
            "action_block": actions["block_id"],
            "elements": actions["elements"],
            "body": post.body,
            "headers": post.headers,
        }

    def send(self, path: str, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(
            f"/api/v1/slack/{path}", content=body, headers=headers or signed(body)
        )

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture
def lab(rt: Runtime, fake_slack: FakeSlack, flows_file: Path) -> Iterator[Lab]:
    made = Lab(rt, fake_slack, flows_file)
    yield made
    made.close()


def test_question_messages_are_valid_block_kit(lab: Lab) -> None:
    from slack_sdk.models.views import View

    q = lab.ask("review")
    run = lab.rt.store.get_flow_run(q.flow_run_id)
    blocks = question_blocks(q, run, lab.settings)
    _valid_blocks(blocks)
    buttons = blocks[1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Yes", "No"]
    assert [json.loads(b["value"])["v"] for b in buttons] == [True, False]
    assert f"https://legato.lab.org/runs/{run.id}" in blocks[0]["text"]["text"]
    enum_q = Question(
        "q1", run.id, "ask:9", "Colour?", {"enum": ["red", "green"], "type": "string"}
    )
    _valid_blocks(question_blocks(enum_q, run, lab.settings))
    many = Question("q2", run.id, "ask:9", "Which?", {"enum": [f"s{i}" for i in range(30)]})
    many_blocks = question_blocks(many, run, lab.settings)
    _valid_blocks(many_blocks)
    assert many_blocks[1]["elements"][0]["type"] == "static_select"
    grade = Question(
        "q3",
        run.id,
        "ask:9",
        "Grade it",
        {
            "type": "object",
            "title": "Grade",
            "properties": {
                "ok": {"type": "boolean", "title": "Ok"},
                "score": {"type": "integer", "title": "Score", "minimum": 0},
                "note": {"type": "string", "title": "Note", "default": ""},
                "level": {"$ref": "#/$defs/Level"},
            },
            "required": ["ok", "score"],
            "$defs": {"Level": {"enum": ["low", "high"], "type": "string", "title": "Level"}},
        },
    )
    view = modal_view(grade, "C0LAB", "1.2")
    View(**view).validate_json()
    kinds = [b["element"]["type"] for b in view["blocks"] if b["type"] == "input"]
    assert kinds == ["static_select", "number_input", "plain_text_input", "static_select"]
    _valid_blocks(view["blocks"])


def test_the_manifest_points_slack_at_this_server() -> None:
    m = manifest("https://legato.lab.org/")
    assert m["settings"]["interactivity"]["request_url"] == (
        "https://legato.lab.org/api/v1/slack/interactions"
    )
    (command,) = m["features"]["slash_commands"]
    assert command["command"] == "/legato"
    assert command["url"] == "https://legato.lab.org/api/v1/slack/commands"
    assert set(m["oauth_config"]["scopes"]["bot"]) >= {"chat:write", "commands"}


def test_a_question_answered_from_slack_carries_the_run_on(lab: Lab) -> None:
    q = lab.ask("review")
    message = lab.posted()
    assert message["headers"]["authorization"] == "Bearer xoxb-test-token"
    assert message["body"]["channel"] == "lab-qc"
    _valid_blocks(message["blocks"])
    assert lab.notifier.tick() == 0  # posted once

    yes = message["elements"][0]
    answer = lab.send("interactions", block_actions(message, yes, "U123"))
    assert answer.status_code == 200, answer.text

    done = lab.rt.store.get_question(q.id)
    assert done.state is QuestionState.ANSWERED and done.answer is True
    assert done.answered_by == "slack:alice (U123)"
    [event] = lab.rt.store.list_audit(action="question.answer")
    assert (event.actor, event.role, event.target) == ("slack:alice (U123)", "operator", q.id)
    run = lab.rt.store.get_flow_run(q.flow_run_id)
    assert run.state is State.PENDING and run.queued_at is not None  # back in its pool's queue
    (update,) = lab.fake.of("chat.update")
    assert update.body["ts"] == message["ts"] and update.body["channel"] == "C0LAB"
    assert "<@U123> answered *yes*" in json.dumps(update.body["blocks"])

    finished, outcome = continue_run(run.id)  # what the pool's worker does with it
    assert outcome is None and finished.state is State.COMPLETED
    assert lab.rt.results.decode(finished.result) is True

    # A second click: a new request (the very same one again is a replay, refused).
    again = lab.send("interactions", block_actions(message, yes, "U123", "1234.5679.abcd"))
    assert again.status_code == 200
    (note,) = lab.fake.of("chat.postEphemeral")
    assert "already answered by slack:alice" in note.body["text"]


@pytest.mark.parametrize(
    ("uid", "reason"),
    [("U999", "not mapped to a Legato role"), ("U456", "role is viewer")],
    ids=["unmapped", "viewer"],
)
def test_only_mapped_operators_may_answer(lab: Lab, uid: str, reason: str) -> None:
    q = lab.ask("review")
    message = lab.posted()
    answer = lab.send("interactions", block_actions(message, message["elements"][0], uid))
    assert answer.status_code == 200
    assert lab.rt.store.get_question(q.id).state is QuestionState.PENDING
    (note,) = lab.fake.of("chat.postEphemeral")
    assert note.body["user"] == uid and reason in note.body["text"]
    assert lab.fake.of("chat.update") == []


@pytest.mark.parametrize(
    "headers",
    [
        lambda body: signed(body, secret="not-the-secret"),
        lambda body: signed(body, age=6 * 60),
        lambda body: {"content-type": "application/x-www-form-urlencoded"},
        lambda body: signed(body.replace("U123", "U124")),
    ],
    ids=["wrong-secret", "stale", "unsigned", "signed-other-body"],
)
def test_requests_without_a_good_signature_are_refused(
    lab: Lab, headers: Callable[[str], dict[str, str]]
) -> None:
    q = lab.ask("review")
    message = lab.posted()
    body = block_actions(message, message["elements"][0], "U123")
    answer = lab.send("interactions", body, headers(body))
    assert answer.status_code == 401
    assert lab.rt.store.get_question(q.id).state is QuestionState.PENDING
    assert lab.fake.of("chat.update") == [] and lab.fake.of("chat.postEphemeral") == []


def test_structured_answers_go_through_a_modal(lab: Lab) -> None:
    q = lab.ask("grade")
    message = lab.posted()
    (open_button,) = message["elements"]
    assert open_button["action_id"] == "legato_open"
    assert lab.send("interactions", block_actions(message, open_button, "U123")).status_code == 200
    (opened,) = lab.fake.of("views.open")
    assert opened.body["trigger_id"] == "1234.5678.abcd"
    view = opened.body["view"]
    from slack_sdk.models.views import View

    View(**view).validate_json()

    def values(score: str) -> dict[str, Any]:
        return {
            "f:ok": {
                "value": {
                    "type": "static_select",
                    "selected_option": {
                        "text": {"type": "plain_text", "text": "yes"},
                        "value": "true",
                    },
                }
            },
            "f:score": {"value": {"type": "number_input", "value": score}},
            "f:note": {"value": {"type": "plain_text_input", "value": "fine"}},
        }

    refused = lab.send("interactions", view_submission(view, values("4.5"), "U123"))
    assert refused.status_code == 200
    assert refused.json()["response_action"] == "errors"
    assert "f:score" in refused.json()["errors"]
    assert lab.rt.store.get_question(q.id).state is QuestionState.PENDING

    viewer = lab.send("interactions", view_submission(view, values("4"), "U456"))
    assert viewer.json()["response_action"] == "errors"

    accepted = lab.send("interactions", view_submission(view, values("4"), "U123"))
    assert accepted.status_code == 200 and accepted.content == b""  # closes the modal
    done = lab.rt.store.get_question(q.id)
    assert done.answer == {"ok": True, "score": 4, "note": "fine"}
    finished, _ = continue_run(done.flow_run_id)
    assert lab.rt.results.decode(finished.result) == {"ok": True, "score": 4, "note": "fine"}


def _command(lab: Lab, text: str, uid: str) -> dict[str, Any]:
    """A slash command as Slack sends it (its documented form fields), signed."""
    body = urllib.parse.urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "team_domain": "lab",
            "channel_id": "C0LAB",
            "channel_name": "lab-qc",
            "user_id": uid,
            "user_name": "someone",
            "command": "/legato",
            "text": text,
            "api_app_id": "A1",
            "response_url": "https://hooks.slack.invalid/commands/1",
            "trigger_id": "1.2.3",
        }
    )
    answer = lab.send("commands", body)
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    assert data["response_type"] == "ephemeral"
    assert len(data["text"]) <= 3000
    return data


def test_the_slash_command_lists_and_retries_runs(lab: Lab) -> None:
    broken = load_flow(f"{lab.flows_file}:broken")
    with pytest.raises(ValueError):
        broken("S-3")
    (run,) = lab.rt.store.list_flow_runs(flow="broken")

    def command(text: str, uid: str) -> dict[str, Any]:
        return _command(lab, text, uid)

    listed = command("runs", "U456")["text"]
    assert run.id[:13] in listed and "FAILED" in listed
    assert "not mapped" in command("runs", "U999")["text"]
    assert "role is viewer" in command(f"retry {run.id}", "U456")["text"]
    assert lab.rt.store.get_flow_run(run.id).state is State.FAILED
    assert "queued again on pool default" in command(f"retry {run.id[:13]}", "U123")["text"]
    assert lab.rt.store.get_flow_run(run.id).state is State.PENDING
    [event] = lab.rt.store.list_audit(action="run.")  # the refused retry left none
    assert (event.action, event.actor, event.target) == ("run.retry", "slack:U123", run.id)
    assert "/legato runs" in command("", "U123")["text"]
    bad = lab.send("commands", "user_id=U123&text=runs", signed("user_id=U123&text=other"))
    assert bad.status_code == 401


def test_run_starts_a_deployment_with_checked_parameters(lab: Lab) -> None:
    from tests.triggers.conftest import deploy_flow

    deploy_flow(lab.rt.store, lab.flows_file, "from_hook", "hook")
    said = _command(lab, "run hook sample=S-7 threshold=0.9", "U123")["text"]
    assert "of *hook* is queued on pool default" in said
    (run,) = lab.rt.store.list_flow_runs(flow="from_hook")
    assert run.parameters == {"sample": "S-7", "threshold": 0.9}
    assert run.state is State.PENDING and run.deployment == "hook"
    [event] = lab.rt.store.list_audit(action="deployment.start")
    assert (event.actor, event.target) == ("slack:U123", "hook")
    quoted = _command(lab, "run hook 'sample=S 8 &lt;a&gt;'", "U123")["text"]
    assert "queued" in quoted
    assert {r.parameters["sample"] for r in lab.rt.store.list_flow_runs(flow="from_hook")} == {
        "S-7",
        "S 8 <a>",  # Slack's escapes undone: the parameter is what was typed
    }
    bad = _command(lab, "run hook threshold=high", "U123")["text"]
    assert bad.startswith("Not started") and "`sample`: missing" in bad
    assert "`threshold`" in bad
    assert "No deployment named 'nope'" in _command(lab, "run nope", "U123")["text"]
    assert "is not key=value" in _command(lab, "run hook S-9", "U123")["text"]
    assert "role is viewer" in _command(lab, "run hook sample=S-1", "U456")["text"]
    assert "not mapped" in _command(lab, "run hook sample=S-1", "U999")["text"]
    assert len(lab.rt.store.list_flow_runs(flow="from_hook")) == 2  # nothing else started


def test_why_says_which_calls_failed_their_errors_and_log_tails(lab: Lab) -> None:
    week = load_flow(f"{lab.flows_file}:week_fails")
    with pytest.raises(RuntimeError, match="some recordings failed"):
        week(2)
    (run,) = lab.rt.store.list_flow_runs(flow="week_fails")
    said = _command(lab, f"why {run.id}", "U456")["text"]  # a viewer may ask
    link = f"<https://legato.lab.org/runs/{run.id}|{run.id}>"  # LEGATO_PUBLIC_URL is set
    assert f"*week_fails* {link} is *FAILED*: RuntimeError: some recordings failed" in said
    assert "2 failed task runs" in said
    assert "`recording_fails:0[0] / extract_keypoints:0` (FAILED, 1 tries)" in said
    assert "CUDA out of memory on S-1" in said
    assert "WARN frame 12 unreadable in S-0" in said
    assert "not mapped" in _command(lab, f"why {run.id}", "U999")["text"]
    assert "no run has id" in _command(lab, "why 0000dead", "U456")["text"]
    assert "Usage: `/legato why RUN_ID`" in _command(lab, "why", "U456")["text"]
