"""Fixtures: limiters on a real in-memory storage and on the real Redis at REDIS_URL.

Redis is never optional here: if it does not answer, the tests that use it fail and say how
to start it (``.ci/run`` does). Every test gets policies with fresh random names, so runs and
tests sharing one Redis never count into each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.ratelimit import Policy, RateLimiter, open_limiter

REDIS_URL = os.environ.get("COVERPROOF_TEST_REDIS_URL", "redis://127.0.0.1:6379")

OpenLimiter = Callable[[], Awaitable[RateLimiter]]
MakePolicy = Callable[[str], Policy]


@pytest.fixture
def make_policy() -> MakePolicy:
    """A policy with the given limit and a name no other test or run uses."""

    def make(limit: str) -> Policy:
        return Policy(f"test_{uuid.uuid4().hex[:16]}", limit)

    return make


@pytest.fixture
async def open_redis_limiter() -> AsyncIterator[OpenLimiter]:
    """Opens separate limiters on the shared Redis, as separate server processes would."""
    opened: list[RateLimiter] = []

    async def open_one() -> RateLimiter:
        limiter = open_limiter(REDIS_URL)
        opened.append(limiter)
        if not await limiter.check():
            pytest.fail(
                f"Redis does not answer at {REDIS_URL}; the rate-limit tests need a real one. "
                "Start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
                '--save "" --appendonly no (or set COVERPROOF_TEST_REDIS_URL).'
            )
        return limiter

    yield open_one
    for limiter in opened:
        await limiter.close()


@pytest.fixture
async def redis_limiter(open_redis_limiter: OpenLimiter) -> RateLimiter:
    return await open_redis_limiter()


@pytest.fixture
async def memory_limiter() -> AsyncIterator[RateLimiter]:
    limiter = open_limiter("memory://")
    yield limiter
    await limiter.close()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    """Each storage in turn, for behaviour that must not depend on where counts live."""
    fixture: RateLimiter = request.getfixturevalue(f"{request.param}_limiter")
    return fixture
