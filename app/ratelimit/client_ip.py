"""The client's IP address, as far as it can be trusted.

The socket peer is the client unless the peer is one of our own proxies (``trusted_proxies``:
single addresses or CIDR networks). Only then is ``X-Forwarded-For`` read, from the right, since
each proxy appends the address it saw: the right-most entry that is not one of our proxies is
the first hop we did not add ourselves. Anything left of it is whatever the client chose to send.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from app.ratelimit.asgi import Scope

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(trusted_proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # Parsed once per distinct setting, not per request; a bad entry is a configuration error.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted_proxies)


def _parse(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare and count them as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(scope: Scope) -> list[str]:
    # Several X-Forwarded-For lines are one list, in order (RFC 9110 field combination).
    entries: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            entries.extend(value.decode("latin-1").split(","))
    return entries


def _forwarded_client(entries: list[str], networks: tuple[IPNetwork, ...]) -> IPAddress | None:
    """The right-most forwarded address that is not a trusted proxy, or None.

    Walks from the right and stops at the client: entries further left were written by the
    client and are never parsed, so garbage there cannot push it into the proxy's bucket.
    """
    innermost: IPAddress | None = None
    for entry in reversed(entries):
        address = _parse(entry)
        if address is None:
            # Our own proxies wrote a value we cannot read: the chain cannot be walked further.
            return None
        if not any(address in network for network in networks):
            return address
        innermost = address
    # Every hop is ours: the request began inside our own network, at the left-most hop.
    return innermost


# Where a request's answer is kept in its scope: the middleware, a lane and the context each ask.
_MEMO = "coverproof.client_ip"


def client_ip(scope: Scope, trusted_proxies: Sequence[str]) -> str | None:
    """The client's address for rate limiting and logs; None when the server has no peer.

    A peer that is not an IP (a Unix socket, a test client's name) is returned as it is, and
    its X-Forwarded-For is never read.
    """
    proxies = tuple(trusted_proxies)
    memo = scope.get(_MEMO)
    if memo is not None and memo[0] == proxies:
        return memo[1]  # type: ignore[no-any-return]
    found = _client_ip(scope, proxies)
    scope[_MEMO] = (proxies, found)
    return found


def _client_ip(scope: Scope, trusted_proxies: tuple[str, ...]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    peer_text = str(client[0])
    peer = _parse(peer_text)
    if peer is None:
        return peer_text
    networks = _networks(trusted_proxies)
    if not any(peer in network for network in networks):
        return str(peer)
    forwarded = _forwarded_client(_forwarded_for(scope), networks)
    return str(forwarded if forwarded is not None else peer)


def ip_bucket(ip: str) -> str:
    """The unit per-IP limits count: the address itself, or its /64 for IPv6.

    One IPv6 subscriber is usually given a whole /64, so counting single addresses would let
    one client rotate through billions of them.
    """
    address = _parse(ip)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address) if address is not None else ip
