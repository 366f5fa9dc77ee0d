"""Where the server may send on a user's say-so: the outbound-URL policy.

A webhook channel names a URL that the server itself then posts to, from inside the lab's
network. Sent unchecked, a rule holder could make the server reach what only the server
can reach: its own admin ports on loopback, the database, the cloud metadata service at
169.254.169.254. So an address is refused when it is not a public one (loopback, private,
link-local, unspecified, multicast, reserved, site-local, shared address space), unless
``LEGATO_OUTBOUND_ALLOW`` names it.

The check is made on the addresses the name resolves to, all of them, and the connection is
made to an address that was checked (``legato.notify.webhook`` vets inside the TCP connect,
so no second lookup can answer otherwise). Redirects are never followed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from legato.errors import OutboundRefused

SETTING = "LEGATO_OUTBOUND_ALLOW"
SCHEMES = ("http", "https")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

if TYPE_CHECKING:
    import httpx


def refusal(ip: Address) -> str | None:
    """Why ``ip`` is no place to send to unless allowed; None for a public address. An IPv6
    address that carries an IPv4 one (``::ffff:127.0.0.1``, 6to4, Teredo) is judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return refusal(ip.ipv4_mapped)
        for inner in (ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if inner is not None:
                why = refusal(inner)
                if why is not None:
                    return why
        if ip.is_site_local:
            return "site-local"
    for name, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return name
    return None if ip.is_global else "not public"


def _host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host lower case, port or None)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port in {text!r}")
    if not host:
        raise ValueError(f"no host in {text!r}")
    return host.lower().rstrip("."), int(port) if port else None


@dataclass(frozen=True)
class Policy:
    """The allow-list: ``networks`` whose every address may be reached, and ``hosts`` (a
    name or an address, with an optional port) that may be reached whatever they resolve
    to. Build it with ``Policy.parse(settings.outbound_allow)``."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> Policy:
        """``hooks.lab.internal,10.0.0.0/8,127.0.0.1:9000`` -> a Policy; ValueError naming a
        bad entry."""
        networks: list[Network] = []
        hosts: set[tuple[str, int | None]] = set()
        for entry in filter(None, (e.strip() for e in (text or "").split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            try:
                hosts.add(_host_port(entry))
            except ValueError as exc:
                raise ValueError(
                    f"{SETTING}: {exc}; expected hosts, host:port or CIDRs, e.g. "
                    "hooks.lab.internal,10.0.0.0/8,127.0.0.1:9000"
                ) from None
        return cls(tuple(networks), frozenset(hosts))

    def allows(self, host: str, ip: Address, port: int) -> bool:
        """Whether the allow-list names ``host`` (as written in the URL), ``ip`` or its
        network, on this port."""
        names = {host.lower().rstrip("."), str(ip)}
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            names.add(str(ip.ipv4_mapped))
        if any((n, p) in self.hosts for n in names for p in (None, port)):
            return True
        return any(ip in net for net in self.networks) or (
            isinstance(ip, ipaddress.IPv6Address)
            and ip.ipv4_mapped is not None
            and any(ip.ipv4_mapped in net for net in self.networks)
        )

    def check(self, host: str, port: int, addresses: Iterable[Address]) -> list[Address]:
        """``addresses`` if every one may be reached; OutboundRefused naming the first that
        may not, the reason, and the setting that would allow it."""
        found = list(addresses)
        for ip in found:
            why = refusal(ip)
            if why is not None and not self.allows(host, ip, port):
                shown = host if host == str(ip) else f"{host} ({ip})"
                raise OutboundRefused(
                    f"{shown} is a {why} address: the server does not send there unless "
                    f"{SETTING} names it (a host, host:port or CIDR)"
                )
        return found

    def vet(self, host: str, port: int) -> list[Address]:
        """Resolve ``host`` and check every address it resolves to (OutboundRefused)."""
        return self.check(host, port, resolve(host, port))

    def check_url(self, url: str) -> None:
        """For a URL given now and sent to later (a rule): the scheme, and the addresses the
        host resolves to today. A name that does not resolve yet passes: every send checks
        again."""
        parsed = parse_url(url)
        with contextlib.suppress(socket.gaierror):
            self.vet(parsed.host, default_port(parsed))


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (literal addresses in any form socket accepts,
    ``2130706433`` and ``0x7f.1`` included, come back as what they mean)."""
    seen: dict[str, Address] = {}
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        text = str(sockaddr[0]).partition("%")[0]  # a zone index (fe80::1%eth0) is no address
        seen.setdefault(text, ipaddress.ip_address(text))
    return list(seen.values())


def parse_url(url: str) -> httpx.URL:
    """``url`` as the sender will read it; OutboundRefused unless http(s) with a host."""
    import httpx  # only where a URL is checked: settings and masking stay light

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise OutboundRefused(f"not a valid URL: {exc}") from None
    if parsed.scheme not in SCHEMES or not parsed.host:
        raise OutboundRefused(f"only http:// and https:// URLs with a host are sent to: {url!r}")
    return parsed


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


# -- masking ---------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/secret`` -> ``https://hooks.slack.com/***``:
    scheme, host and port stay (where it goes), a login, path, query and fragment do not."""
    parts = urlsplit(url.strip())
    if not parts.netloc:  # a relative redirect, or no URL at all: nothing worth showing
        return "***"
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    return f"{parts.scheme}://{netloc}/" + ("***" if hidden else "")


_URL = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def mask_urls(text: str) -> str:
    """Every http(s) URL in ``text`` (an error message) masked by ``mask_url``."""
    return _URL.sub(lambda m: mask_url(m.group()), text)


def mask_channel(channel: str) -> str:
    """A notification channel as non-admins see it: a webhook's URL masked (``mask_url``)."""
    kind, sep, rest = channel.partition(":")
    if sep and kind.strip().lower() == "webhook":
        return f"webhook:{mask_url(rest)}"
    return channel
