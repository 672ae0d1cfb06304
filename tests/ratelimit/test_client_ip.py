"""Which address counts as the client's: the socket peer, unless a trusted proxy forwarded it."""

from __future__ import annotations

import pytest
from starlette.types import Scope

from app.ratelimit.client_ip import client_ip, ip_bucket

PROXY = "10.0.0.5"
CLIENT = "203.0.113.7"


def scope(peer: str | None, *forwarded_for: str) -> Scope:
    return {
        "type": "http",
        "client": (peer, 50000) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded_for],
    }


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    spoofed = scope(CLIENT, "198.51.100.1")

    assert client_ip(spoofed, []) == CLIENT
    assert client_ip(spoofed, [PROXY]) == CLIENT


def test_a_request_is_worked_out_once_for_the_proxies_it_was_asked_about() -> None:
    # Kept in the scope for the request's later askers, but never for another setting.
    forwarded = scope(PROXY, CLIENT)

    assert client_ip(forwarded, []) == PROXY
    assert client_ip(forwarded, [PROXY]) == CLIENT
    forwarded["client"] = ("198.51.100.9", 50000)  # never in a real scope: shows it is kept
    assert client_ip(forwarded, [PROXY]) == CLIENT
    assert client_ip(forwarded, []) == "198.51.100.9"


@pytest.mark.parametrize("trusted", [[PROXY], ["10.0.0.0/8"], ["192.0.2.1", "10.0.0.0/24"]])
def test_a_trusted_proxy_forwards_the_client(trusted: list[str]) -> None:
    assert client_ip(scope(PROXY, CLIENT), trusted) == CLIENT


def test_a_chain_of_proxies_yields_the_right_most_untrusted_hop() -> None:
    # The client claimed 198.51.100.1; our edge saw CLIENT; an inner proxy saw the edge.
    chained = scope(PROXY, "198.51.100.1, 203.0.113.7, 10.0.0.9")

    assert client_ip(chained, ["10.0.0.0/24"]) == CLIENT


def test_several_forwarded_for_lines_are_one_list() -> None:
    assert client_ip(scope(PROXY, "198.51.100.1", f"{CLIENT}, 10.0.0.9"), ["10.0.0.0/8"]) == CLIENT


@pytest.mark.parametrize(
    "header", ["not-an-ip", "", "203.0.113.7:443", "203.0.113.7, ,", "999.1.1.1", "\u00e9"]
)
def test_a_malformed_hop_from_our_proxies_falls_back_to_the_peer(header: str) -> None:
    assert client_ip(scope(PROXY, header), [PROXY]) == PROXY


def test_garbage_written_by_the_client_left_of_its_address_is_ignored() -> None:
    # Otherwise a client could move itself into the proxy's shared bucket at will.
    assert client_ip(scope(PROXY, f"garbage, {CLIENT}"), [PROXY]) == CLIENT


def test_a_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert client_ip(scope(PROXY), [PROXY]) == PROXY


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_ip(scope(PROXY, "10.0.0.7, 10.0.0.8"), ["10.0.0.0/8"]) == "10.0.0.7"


def test_ipv4_mapped_and_ipv6_peers_are_normalised_and_matched() -> None:
    assert client_ip(scope("::ffff:10.0.0.5", CLIENT), [PROXY]) == CLIENT
    assert client_ip(scope("2001:DB8::1"), []) == "2001:db8::1"
    assert client_ip(scope("2001:db8::1", "2001:db8:ffff::2"), ["2001:db8::/64"]) == (
        "2001:db8:ffff::2"
    )


def test_no_peer_or_a_peer_that_is_not_an_ip() -> None:
    assert client_ip(scope(None, CLIENT), [PROXY]) is None
    assert client_ip(scope("testclient", CLIENT), ["0.0.0.0/0"]) == "testclient"


def test_ipv6_clients_are_counted_per_64() -> None:
    assert ip_bucket("2001:db8::1") == ip_bucket("2001:db8::ffff:1") == "2001:db8::/64"
    assert ip_bucket("2001:db8:0:1::1") != ip_bucket("2001:db8::1")
    assert ip_bucket(CLIENT) == CLIENT
    assert ip_bucket("testclient") == "testclient"
