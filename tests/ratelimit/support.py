"""Helpers shared by the rate-limit tests."""

from __future__ import annotations

import asyncio

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
