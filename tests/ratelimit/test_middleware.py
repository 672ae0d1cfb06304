"""The per-IP HTTP ceiling, through a real Starlette app and an HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app.ratelimit import RateLimiter, open_limiter
from app.ratelimit.middleware import IpCeiling
from tests.ratelimit.support import silent_redis

PER_MINUTE = 5


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def make_app(limiter: RateLimiter | None, trusted_proxies: Sequence[str] = ()) -> Starlette:
    return Starlette(
        routes=[
            Route("/graphql", ok, methods=["GET", "POST"]),
            Route("/healthz", ok),
            Route("/readyz", ok),
        ],
        middleware=[
            Middleware(
                IpCeiling,
                limiter=lambda: limiter,
                per_minute=PER_MINUTE,
                trusted_proxies=trusted_proxies,
            )
        ],
    )


def client(app: Starlette, peer: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def test_over_the_ceiling_answers_429_with_retry_after(memory_limiter: RateLimiter) -> None:
    async with client(make_app(memory_limiter)) as http:
        for _ in range(PER_MINUTE):
            assert (await http.post("/graphql")).status_code == 200
        refused = await http.post("/graphql")

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.json() == {
        "errors": [
            {
                "message": "Too many requests.",
                "extensions": {"code": "RATE_LIMITED", "retryAfter": retry_after},
            }
        ]
    }


async def test_probes_are_never_limited(memory_limiter: RateLimiter) -> None:
    async with client(make_app(memory_limiter)) as http:
        for _ in range(PER_MINUTE + 1):
            await http.get("/graphql")
        assert (await http.get("/graphql")).status_code == 429
        for _ in range(3 * PER_MINUTE):
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200


async def test_each_client_ip_has_its_own_ceiling(memory_limiter: RateLimiter) -> None:
    app = make_app(memory_limiter)
    async with client(app, "203.0.113.7") as first, client(app, "203.0.113.8") as second:
        for _ in range(PER_MINUTE):
            await first.get("/graphql")
        assert (await first.get("/graphql")).status_code == 429
        assert (await second.get("/graphql")).status_code == 200


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    memory_limiter: RateLimiter,
) -> None:
    app = make_app(memory_limiter, trusted_proxies=["10.0.0.0/8"])
    async with client(app, peer="10.0.0.5") as proxy:
        for _ in range(PER_MINUTE):
            await proxy.get("/graphql", headers={"x-forwarded-for": "203.0.113.7"})
        limited = await proxy.get("/graphql", headers={"x-forwarded-for": "203.0.113.7"})
        other = await proxy.get("/graphql", headers={"x-forwarded-for": "203.0.113.8"})

    assert (limited.status_code, other.status_code) == (429, 200)


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape(
    memory_limiter: RateLimiter,
) -> None:
    app = make_app(memory_limiter, trusted_proxies=["10.0.0.0/8"])
    async with client(app, peer="203.0.113.7") as http:
        statuses = [
            (await http.get("/graphql", headers={"x-forwarded-for": f"198.51.100.{i}"})).status_code
            for i in range(PER_MINUTE + 1)
        ]

    assert statuses == [200] * PER_MINUTE + [429]


async def test_without_a_limiter_yet_requests_pass() -> None:
    async with client(make_app(None)) as http:
        for _ in range(3 * PER_MINUTE):
            assert (await http.get("/graphql")).status_code == 200


async def test_an_unreachable_storage_lets_requests_through() -> None:
    # The ceiling fails open: a Redis outage must not take the API down (port 1: refused).
    limiter = open_limiter("redis://127.0.0.1:1")
    try:
        async with client(make_app(limiter)) as http:
            for _ in range(PER_MINUTE + 1):
                assert (await http.get("/graphql")).status_code == 200
    finally:
        await limiter.close()


async def test_a_silent_storage_lets_requests_through() -> None:
    """Nor does a Redis that never answers: each request waits for the limiter's timeout."""
    async with silent_redis() as url:
        limiter = open_limiter(url)
        try:
            async with client(make_app(limiter)) as http:
                answer = await asyncio.wait_for(http.get("/graphql"), 30)
                assert answer.status_code == 200
        finally:
            await limiter.close()


def test_a_ceiling_below_one_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="COVERPROOF_IP_REQUESTS_PER_MINUTE"):
        IpCeiling(ok_app, limiter=lambda: None, per_minute=0, trusted_proxies=[])


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never called")
