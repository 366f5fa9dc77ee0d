"""A real uvicorn server over a store, in a background thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from legato.models import Role
from legato.server import create_app
from legato.server.auth import Authenticator
from legato.store import Store


class LiveServer:
    """Serves ``create_app(store, ...)`` on 127.0.0.1 at a free port; ``token`` is an admin
    token made directly in ``token_store`` (default: the store itself). ``stop()`` shuts it
    down (the stores stay open)."""

    def __init__(self, store: Store, *, token_store: Store | None = None, **options: Any) -> None:
        self.store = store
        if token_store is not None:
            options["authenticator"] = Authenticator(token_store)
        self.app = create_app(store, **options)
        self.token = (token_store or store).create_token("test-admin", Role.ADMIN)[1]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it each answer waits on a delayed ACK (40 ms).
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
