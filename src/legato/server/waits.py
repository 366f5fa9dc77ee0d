"""Long-polls without a thread per waiting client, and at most so many per token.

A long-poll (``/queues/wait``, ``/task-runs/wait``) is a coroutine awaiting the store's
wake-ups (``AsyncWaits``), so N waiting clients cost N small coroutines and sockets, not N of
the thread pool's threads that every other route needs. A token holds at most
``max_waits_per_token`` waits at once: one more is refused at once with 429 and
``Retry-After``. A wait ends early when its client goes away, and its slot is given back on
every path out (answer, timeout, error, disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from legato.models import ApiToken

T = TypeVar("T")

RETRY_AFTER = 1  # seconds: a slot frees whenever one of the token's waits ends


class WaitSlots:
    """How many long-polls each token holds. Only coroutines on the server's event loop
    touch it, one at a time, so it needs no lock."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def held(self, token_id: str) -> int:
        return self._held.get(token_id, 0)

    @asynccontextmanager
    async def hold(self, token: ApiToken) -> AsyncIterator[None]:
        """One slot of ``token``'s for the block; 429 when it holds ``cap`` already."""
        held = self._held.get(token.id, 0)
        if held >= self.cap:
            raise HTTPException(
                429,
                detail=f"token {token.name!r} already holds {held} long-polls, the most one "
                f"token may (LEGATO_MAX_WAITS_PER_TOKEN); retry after {RETRY_AFTER} s",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        self._held[token.id] = held + 1
        try:
            yield
        finally:
            left = self._held[token.id] - 1
            if left:
                self._held[token.id] = left
            else:
                del self._held[token.id]


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away (its body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def long_poll(request: Request, wait: Callable[[], Coroutine[Any, Any, T]], *, gone: T) -> T:
    """Await ``wait()`` in one of the caller's slots; ``gone`` if the client leaves first
    (the wait is cancelled then: nobody is left to answer it)."""
    slots: WaitSlots = request.app.state.waits
    token: ApiToken = request.state.token
    async with slots.hold(token):
        waiting = asyncio.ensure_future(wait())
        watching = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait((waiting, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this request is cancelled (the server shutting down)
            for task in (waiting, watching):
                task.cancel()
            await asyncio.gather(waiting, watching, return_exceptions=True)
        if waiting.cancelled():
            return gone
        return waiting.result()
