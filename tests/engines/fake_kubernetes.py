"""A fake Kubernetes API server on 127.0.0.1: the batch/v1 Jobs and core/v1 Pods endpoints
the bridge calls, in the API's wire format. A created Job is really run: its container's
command runs here as a subprocess (storage is a local folder), so the outcome a bridge reads
back is the one the job wrote. ``activeDeadlineSeconds`` is enforced like the Job controller
does (kill, then condition Failed/DeadlineExceeded)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeKubernetes:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                fake.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if self.path.endswith("/jobs"):
                    self._send(201, fake.create(body))
                else:
                    self._send(404, {"kind": "Status", "code": 404})

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                url = urlparse(self.path)
                query = parse_qs(url.query)
                parts = url.path.strip("/").split("/")
                if url.path.endswith("/jobs"):
                    selector = query.get("labelSelector", [""])[0]
                    self._send(200, fake.list_jobs(selector))
                elif url.path.endswith("/pods"):
                    selector = query.get("labelSelector", [""])[0]
                    name = selector.removeprefix("job-name=")
                    items = [{"metadata": {"name": f"{name}-pod"}}] if name in fake.jobs else []
                    self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
                elif url.path.endswith("/log"):
                    pod = parts[-2].removesuffix("-pod")
                    self._send(200, fake.logs.get(pod, ""), "text/plain")
                else:
                    self._send(404, {"kind": "Status", "code": 404})

            def do_DELETE(self) -> None:
                fake.requests.append(("DELETE", self.path))
                name = self.path.split("?")[0].rstrip("/").split("/")[-1]
                fake.delete(name)
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        manifest = json.loads(json.dumps(manifest))
        manifest["metadata"]["uid"] = f"uid-{name}"
        manifest["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest["status"] = {"active": 1}
        with self.lock:
            self.jobs[name] = manifest
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        proc = subprocess.Popen(
            container["command"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        threading.Thread(target=self._watch, args=(name, proc), daemon=True).start()
        return manifest

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = self.jobs[name]["spec"].get("activeDeadlineSeconds")
        try:
            out, _ = proc.communicate(timeout=deadline)
            reason = None
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            reason = "DeadlineExceeded"
        with self.lock:
            job = self.jobs.get(name)
            self.logs[name] = out.decode("utf-8", "replace")
            if job is None:
                return
            if proc.returncode == 0 and reason is None:
                job["status"] = {
                    "succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}],
                }
            else:
                job["status"] = {
                    "failed": 1,
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": reason or "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                        }
                    ],
                }

    def list_jobs(self, selector: str) -> dict[str, Any]:
        wanted = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
        with self.lock:
            items = [
                j
                for j in self.jobs.values()
                if all(j["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]
            items = json.loads(json.dumps(items))
        return {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items}

    def delete(self, name: str) -> None:
        with self.lock:
            self.jobs.pop(name, None)
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
