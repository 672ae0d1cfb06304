"""One request's counts against the shared limits, over every run of it.

A request can run more than once: the write or read lane hands it over to the normal path, and
a run PostgreSQL ends to break a deadlock runs again. What an abandoned run counted (its key's
request, its mutation, a mail, a sign-in, a link's once-an-hour refusal record) was counted for
this request, and its next run does the same work again: that run uses those counts instead of
counting again. Otherwise a deadlock cost a member two of their mutations, could refuse a
rerun RATE_LIMITED though nothing was sent, and kept a link's refusal off the trail for the hour
(its mark spent by a run whose record was never made).
"""

from __future__ import annotations

from collections import Counter

from app.ratelimit.limiter import RateLimiter
from app.ratelimit.policies import Policy


class RequestLimiter:
    """The shared limiter, as one request counts against it (``RateLimiter``'s interface)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._banked: Counter[tuple[str, str]] = Counter()  # counted by abandoned runs
        self._run: Counter[tuple[str, str]] = Counter()  # counted for the run going on

    async def hit(self, policy: Policy, key: str, cost: int = 1) -> None:
        """``RateLimiter.hit``, unless an abandoned run of this request counted it."""
        slot = (policy.name, key)
        if self._banked[slot] >= cost:
            self._banked[slot] -= cost
        else:
            await self.limiter.hit(policy, key, cost)
        self._run[slot] += cost

    async def check_room(self, policy: Policy, key: str, cost: int = 1) -> None:
        """``RateLimiter.check_room``: what an abandoned run counted has room already."""
        if self._banked[(policy.name, key)] < cost:
            await self.limiter.check_room(policy, key, cost)

    async def hit_all(self, *limits: tuple[Policy, str]) -> None:
        """``RateLimiter.hit_all``: one of each, or, refused by any, none."""
        for policy, key in limits:
            await self.check_room(policy, key)
        for policy, key in limits:
            await self.hit(policy, key)

    def abandon_run(self) -> None:
        """The run going on is abandoned, nothing of it kept: the next run uses its counts."""
        self._banked.update(self._run)
        self._run = Counter()


# What a flow counts against: the shared limiter, or a request's view of it.
Limits = RateLimiter | RequestLimiter
