"""The storm of test_long_polls.py, sent from a process of its own.

An attacker's requests come from another machine: sent from the test process, the storm's
own client (300 connections in httpx's pool) took most of the interpreter lock that the
server in that process needs, so /health's latency measured the test's client as much as the
server. Run as ``python -m tests.security.storm_client URL TOKEN ROUTE BODY N TIMEOUT``; it
prints one JSON line: each long-poll's status, seconds taken, JSON answer and Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx


async def _long_poll(client: httpx.AsyncClient, route: str, body: dict[str, Any]) -> list[Any]:
    started = time.monotonic()
    got = await client.post(route, json=body)
    return [got.status_code, time.monotonic() - started, got.json(), got.headers.get("retry-after")]


async def storm(
    url: str, token: str, route: str, body: dict[str, Any], n: int, wait: float
) -> list[list[Any]]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=wait + 60,
        limits=limits,
    ) as client:
        return await asyncio.gather(*(_long_poll(client, route, body) for _ in range(n)))


if __name__ == "__main__":
    url, token, route, body, n, wait = sys.argv[1:7]
    polls = asyncio.run(storm(url, token, route, json.loads(body), int(n), float(wait)))
    print(json.dumps(polls))
