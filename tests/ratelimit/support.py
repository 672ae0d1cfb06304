"""Helpers shared by the rate-limit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import RateLimited
from app.ratelimit import Policy, RateLimiter


async def accepted(limiter: RateLimiter, policy: Policy, key: str) -> bool:
    """One hit: True if counted, False if refused with RATE_LIMITED."""
    try:
        await limiter.hit(policy, key)
    except RateLimited:
        return False
    return True


async def burst(limiters: list[RateLimiter], policy: Policy, key: str, hits: int) -> int:
    """``hits`` concurrent hits spread round-robin over ``limiters``; how many were accepted."""
    results = await asyncio.gather(
        *(accepted(limiters[i % len(limiters)], policy, key) for i in range(hits))
    )
    return sum(results)


@asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """The URL of a server on loopback that accepts connections and never answers: a Redis
    stalled, or behind a link that lost its way back."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with server:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}"
