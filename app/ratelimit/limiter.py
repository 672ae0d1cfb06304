"""The rate limiter: one ``limits`` async storage and the moving-window strategy.

Moving window rather than the sliding-window counter: it counts every hit exactly (a burst that
straddles a window boundary cannot get up to twice the limit through) and knows when the oldest
counted hit expires, so ``retryAfter`` is the real wait. It keeps one timestamp per counted hit,
at most ``limit`` per key, which is small for the limits in ``policies``.

Keys never hold an email address or IP in clear: the caller's key is hashed, and the stored key
is ``coverproof:<policy name>/<sha256 prefix>/<amount>/<multiples>/<granularity>`` (the tail is
the library's, so changing a limit starts a fresh counter).
"""

from __future__ import annotations

import hashlib
import math
import time

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.coredis import CoredisBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.errors import BadUserInput, RateLimited
from app.ratelimit.memory import MemoryWindows
from app.ratelimit.policies import Policy

KEY_PREFIX = "coverproof"

# Our setting's schemes mapped to the library's async ones; anything else is a configuration
# mistake, better refused at start-up than discovered at the first sign-in.
_ASYNC_SCHEMES = {
    "memory": "async+memory",
    "redis": "async+redis",
    "rediss": "async+rediss",
    "redis+unix": "async+redis+unix",
}


# How long a Redis command, or a connection to Redis, may take before it fails (coredis tries
# a command three times, so a silent Redis fails a hit in about 1.5 s): without a bound a Redis
# that accepts connections and never answers held every request for ever, failing neither
# open (the per-address ceiling) nor closed (sign-in and mail).
REDIS_TIMEOUT_SECONDS = 0.5


def key_digest(key: str) -> str:
    """The stored form of a caller's key: the first 32 hex characters of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RateLimiter:
    """Counts hits per (policy, key) in one storage, shared by every process that uses it."""

    def __init__(self, storage: Storage, scale: int = 1) -> None:
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        # Load tests multiply every limit (never production: Settings refuses it there), so the
        # limits are still counted, at their full cost, without stopping the benchmark.
        self._scale = scale
        self._scaled: dict[str, RateLimitItem] = {}

    def _item(self, policy: Policy) -> RateLimitItem:
        if self._scale == 1:
            return policy.item
        item = self._scaled.get(policy.name)
        if item is None:
            base = policy.item
            item = type(base)(base.amount * self._scale, base.multiples, namespace=base.namespace)
            self._scaled[policy.name] = item
        return item

    async def hit(self, policy: Policy, key: str, cost: int = 1) -> None:
        """Count ``cost`` operations (one, by default) for ``key`` under ``policy``, all or none.

        Raises ``RateLimited(retryAfter=seconds)`` when the window has no room for them (the
        refused call is not counted), and ``limits.errors.StorageError`` when the storage cannot
        answer.
        """
        digest, item = key_digest(key), self._item(policy)
        if await self._strategy.hit(item, digest, cost=cost):
            return
        await self._refuse(policy, item, digest, cost)

    async def check_room(self, policy: Policy, key: str, cost: int = 1) -> None:
        """``hit``'s refusal, without counting anything: for a caller that must know that
        several limits have room before it counts against any of them."""
        digest, item = key_digest(key), self._item(policy)
        if not await self._strategy.test(item, digest, cost=cost):
            await self._refuse(policy, item, digest, cost)

    async def hit_all(self, *limits: tuple[Policy, str]) -> None:
        """Count one operation against each (policy, key), or, refused by any, against none: a
        caller refused by its own limit must not use up a limit it shares with others (an
        address's, which its owner needs). Two requests racing for the last room may both
        count some of their limits."""
        for policy, key in limits:
            await self.check_room(policy, key)
        for policy, key in limits:
            await self.hit(policy, key)

    async def _refuse(self, policy: Policy, item: RateLimitItem, digest: str, cost: int) -> None:
        if cost > item.amount:
            raise BadUserInput(
                f"That is more at once than the limit of {item.amount} allows; send fewer."
            )
        if cost > 1:
            # Room for several waits for as many of the window's hits to leave it, which the
            # window's stats (its oldest hit) do not say; all of them have left after one window.
            raise RateLimited(retryAfter=policy.window_seconds)
        stats = await self._strategy.get_window_stats(item, digest)
        # Whole seconds, rounded up so a client that waits exactly that long gets through; at
        # least 1 because "retry after 0" invites a tight loop.
        wait = math.ceil(stats.reset_time - time.time())
        raise RateLimited(retryAfter=min(max(wait, 1), policy.window_seconds))

    async def check(self) -> bool:
        """Whether the storage answers (a Redis PING); for readiness checks."""
        return await self.storage.check()

    async def close(self) -> None:
        """Release the storage's connections; the in-memory storage holds none."""
        if isinstance(self.storage, RedisStorage) and isinstance(
            self.storage.bridge, CoredisBridge
        ):
            self.storage.bridge.get_connection().connection_pool.disconnect()
        elif isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            # The storage's background expiry task would otherwise outlive the event loop.
            self.storage.timer.cancel()


def open_limiter(storage_uri: str, scale: int = 1, prefix: str = KEY_PREFIX) -> RateLimiter:
    """A limiter on ``memory://`` (one process) or ``redis://host:port[/db]`` (shared).

    ``rediss://`` and ``redis+unix://`` work too. Redis is connected lazily: call ``check()``
    to find out at start-up whether it answers.
    """
    scheme, separator, rest = storage_uri.partition("://")
    if not separator or scheme not in _ASYNC_SCHEMES:
        # Name only the scheme: the URI may carry a password.
        raise ValueError(
            f"COVERPROOF_RATE_LIMIT_STORAGE must be memory:// or redis://host:port[/db], "
            f"not a {scheme or 'scheme-less'} URI."
        )
    if scheme == "memory":
        return RateLimiter(MemoryWindows(wrap_exceptions=True), scale)
    uri = f"{_ASYNC_SCHEMES[scheme]}://{rest}"
    storage = storage_from_string(
        uri,
        wrap_exceptions=True,
        key_prefix=prefix,
        connect_timeout=REDIS_TIMEOUT_SECONDS,
        stream_timeout=REDIS_TIMEOUT_SECONDS,
    )
    if not isinstance(storage, Storage):  # pragma: no cover - the async+ schemes guarantee it
        raise TypeError(f"expected an async storage, got {type(storage).__name__}")
    return RateLimiter(storage, scale)
