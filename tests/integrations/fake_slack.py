"""A fake Slack Web API on 127.0.0.1: records every call, answers like Slack does.

``fail`` makes every call answer ``{"ok": false, "error": ...}`` (or an HTTP status), to test
a failing channel. Payloads are JSON (slack_sdk sends JSON for chat.* and views.*) or forms.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    method: str  # e.g. chat.postMessage
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    fail: str | int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                kind = self.headers.get("content-type", "")
                if "json" in kind:
                    body = json.loads(raw or b"{}")
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                method = self.path.rsplit("/", 1)[-1]
                with fake.lock:
                    fake.calls.append(
                        Call(
                            method, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    failing = fake.fail
                if isinstance(failing, int):
                    self.send_response(failing)
                    self.end_headers()
                    return
                answer: dict[str, Any] = {"ok": True}
                if failing:
                    answer = {"ok": False, "error": failing}
                elif method == "auth.test":
                    answer.update(user_id="U0BOT", bot_id="B1", team_id="T1")
                elif method in ("chat.postMessage", "chat.update"):
                    answer.update(
                        channel="C0LAB", ts=body.get("ts") or f"1700000000.{len(fake.calls):06}"
                    )
                elif method == "views.open":
                    answer["view"] = {"id": "V1", **body.get("view", {})}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def of(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]
