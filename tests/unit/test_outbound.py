"""The outbound-URL policy's pieces: which addresses are refused, how the allow-list reads,
what socket makes of odd ways to write an address, and the masks."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from legato.errors import OutboundRefused
from legato.outbound import Policy, mask_channel, mask_url, mask_urls, parse_url, refusal, resolve
from legato.settings import Settings


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is judged by its IPv4 address
        ("2002:7f00:1::", "loopback"),  # 6to4 carrying 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),  # ULA
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("fec0::1", "site-local"),
        ("100.64.0.1", "not public"),  # shared address space (carrier-grade NAT)
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("written", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1"])
def test_odd_ways_to_write_loopback_resolve_to_it(written: str) -> None:
    assert resolve(written, 80) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(OutboundRefused, match="loopback"):
        Policy().vet(written, 80)


def test_the_allow_list_names_hosts_ports_and_networks() -> None:
    policy = Policy.parse(" hooks.lab.internal , 10.20.0.0/16,127.0.0.1:9000,[::1]:8080,")
    loop, v6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    assert policy.allows("hooks.lab.internal.", ipaddress.ip_address("10.9.9.9"), 443)
    assert policy.allows("HOOKS.lab.internal", ipaddress.ip_address("10.9.9.9"), 443)
    assert policy.allows("10.20.3.4", ipaddress.ip_address("10.20.3.4"), 1)
    assert not policy.allows("10.21.0.1", ipaddress.ip_address("10.21.0.1"), 1)
    assert policy.allows("2130706433", loop, 9000)  # by the address it resolves to
    assert not policy.allows("127.0.0.1", loop, 9001)
    assert policy.allows("localhost", v6, 8080) and not policy.allows("localhost", v6, 80)
    assert policy.allows("x", ipaddress.ip_address("::ffff:127.0.0.1"), 9000)
    # every address must pass: one allowed address does not carry a refused one
    with pytest.raises(OutboundRefused, match=r"other\.lab \(192\.168\.0\.1\) is a private"):
        policy.check("other.lab", 9000, [loop, ipaddress.ip_address("192.168.0.1")])


@pytest.mark.parametrize("bad", ["host:99999", "host:x", ":80", "[::1]:0"])
def test_a_bad_allow_entry_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError, match="LEGATO_OUTBOUND_ALLOW"):
        Policy.parse(bad)
    with pytest.raises(ValidationError, match="LEGATO_OUTBOUND_ALLOW"):
        Settings(outbound_allow=bad)


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "file:///etc/passwd", "http:///path", "http://0177.0.0.1/"]
)
def test_only_http_urls_with_a_host_are_sent_to(url: str) -> None:
    with pytest.raises(OutboundRefused):
        parse_url(url)


def test_masks_keep_scheme_host_and_port_only() -> None:
    assert mask_url("https://hooks.slack.com/services/T0/B0/xyz") == "https://hooks.slack.com/***"
    assert mask_url("https://user:pw@h.org:8443/?k=v") == "https://h.org:8443/***"
    assert mask_url("http://[::1]:80/x") == "http://[::1]:80/***"
    assert mask_url("https://h.org") == "https://h.org/"
    assert mask_url("/relative/secret") == "***"
    assert mask_channel("webhook: https://h.org/s3cret") == "webhook:https://h.org/***"
    assert mask_channel("slack:#lab") == "slack:#lab"
    assert mask_channel("email:qc@lab.org") == "email:qc@lab.org"
    said = "error for url 'https://h.org/s3cret?t=1' and http://x.org/a"
    assert mask_urls(said) == "error for url 'https://h.org/***' and http://x.org/***"
