"""Several server processes share one Redis, so they share one count per key."""

from __future__ import annotations

import coredis

from app.ratelimit import RateLimiter
from app.ratelimit.limiter import key_digest
from tests.ratelimit.conftest import REDIS_URL, MakePolicy, OpenLimiter
from tests.ratelimit.support import burst


async def test_two_limiters_on_one_redis_accept_exactly_the_limit_between_them(
    open_redis_limiter: OpenLimiter, make_policy: MakePolicy
) -> None:
    first, second = await open_redis_limiter(), await open_redis_limiter()
    assert first.storage is not second.storage
    policy = make_policy("10/minute")

    assert await burst([first, second], policy, "shared@example.test", hits=50) == 10


async def test_keys_in_redis_are_namespaced_and_never_hold_the_email(
    redis_limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("10/minute")
    email = "private.person@example.test"
    await redis_limiter.hit(policy, email)

    client: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    try:
        keys = await client.keys(f"coverproof:{policy.name}/*")
    finally:
        client.connection_pool.disconnect()

    assert [key.decode() for key in keys] == [
        f"coverproof:{policy.name}/{key_digest(email)}/10/1/minute"
    ]
    assert len(key_digest(email)) == 32
    assert email not in keys.pop().decode()
