"""Posting a webhook through the outbound-URL policy (``legato.outbound``).

The lookup, the check and the connect are one step: an httpcore network backend resolves the
URL's host, vets every address and connects to a vetted one, so no second lookup (a DNS
rebinding) can send the connection elsewhere. The URL itself is unchanged, so the Host
header, TLS SNI and the certificate check still name the host. Redirects are never followed,
and no proxy is used (a proxy would resolve the name itself, outside the check).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from legato.errors import OutboundRefused
from legato.outbound import Policy, mask_url, parse_url


class _VettedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows: the lookup, the check and the connect
    are one step, so the address connected to is the one checked."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._plain = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.policy.vet(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for ip in addresses:
            try:
                return self._plain.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("the server sends to http(s) URLs only, not to sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def post_json(url: str, payload: dict[str, Any], policy: Policy, timeout: float = 15.0) -> int:
    """POST ``payload`` as JSON to ``url`` through the policy; the status (2xx). A refused
    address or a redirect raise OutboundRefused (sending again cannot help); another answer
    or a network failure raise an error that names the URL only masked."""
    parsed = parse_url(url)
    headers = [
        (b"Host", parsed.netloc),
        (b"Content-Type", b"application/json"),
        (b"User-Agent", b"legato-notify"),
    ]
    if parsed.userinfo:  # https://user:secret@host/...: the URL's login, as httpx would send it
        headers.append((b"Authorization", b"Basic " + base64.b64encode(parsed.userinfo)))
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    body = json.dumps(payload, default=str).encode()
    with httpcore.ConnectionPool(network_backend=_VettedBackend(policy)) as pool:
        answer = pool.request(
            "POST", target, headers=headers, content=body, extensions={"timeout": limits}
        )
    shown = mask_url(url)
    if 300 <= answer.status < 400:
        location = dict((k.lower(), v) for k, v in answer.headers).get(b"location", b"")
        raise OutboundRefused(
            f"{shown} answered {answer.status}, a redirect to "
            f"{mask_url(location.decode('latin-1')) if location else '(nowhere)'}: webhooks "
            "do not follow redirects; give the final URL"
        )
    if answer.status >= 400:
        raise RuntimeError(f"{shown} answered HTTP {answer.status}")
    return answer.status
