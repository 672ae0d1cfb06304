"""The limiter on both storages: counting, retryAfter, key independence, concurrency."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import cast

import pytest
from limits.errors import StorageError

from app.auth.env import AuthEnv
from app.config import Settings
from app.errors import BadUserInput, RateLimited
from app.ratelimit import RateLimiter, open_limiter
from app.ratelimit.mailbox import mailbox
from app.ratelimit.policies import Policy
from tests.ratelimit.conftest import REDIS_URL, MakePolicy
from tests.ratelimit.support import accepted, burst, silent_redis


async def test_the_eleventh_hit_in_a_minute_is_refused_with_retry_after(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("10/minute")
    for _ in range(10):
        await limiter.hit(policy, "someone@example.test")

    with pytest.raises(RateLimited) as refused:
        await limiter.hit(policy, "someone@example.test")

    assert refused.value.code == "RATE_LIMITED"
    retry_after = refused.value.extensions["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60


async def test_keys_and_policies_count_independently(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    sign_in, mail = make_policy("2/minute"), make_policy("2/minute")
    for _ in range(2):
        await limiter.hit(sign_in, "a@example.test")

    assert not await accepted(limiter, sign_in, "a@example.test")
    assert await accepted(limiter, sign_in, "b@example.test")
    assert await accepted(limiter, mail, "a@example.test")


async def test_refused_hits_are_not_counted_and_the_window_slides(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("2/second")
    assert [await accepted(limiter, policy, "k") for _ in range(5)] == [True, True] + [False] * 3

    await asyncio.sleep(1.1)

    # Only the two accepted hits were stored, and both have left the window.
    assert [await accepted(limiter, policy, "k") for _ in range(3)] == [True, True, False]


async def test_a_cost_is_counted_all_or_none_and_room_is_checked_without_counting(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    """Three of five in one hit; three more do not fit and count nothing (two still do);
    checking for room counts nothing either."""
    policy = make_policy("5/minute")
    await limiter.hit(policy, "k", 3)
    with pytest.raises(RateLimited):
        await limiter.hit(policy, "k", 3)
    with pytest.raises(RateLimited):
        await limiter.check_room(policy, "k", 3)
    for _ in range(3):
        await limiter.check_room(policy, "k", 2)
    await limiter.hit(policy, "k", 2)
    assert not await accepted(limiter, policy, "k")
    # Room for several comes back only as the hits leave: a whole window, at most.
    with pytest.raises(RateLimited) as refused:
        await limiter.check_room(policy, "k", 2)
    assert refused.value.extensions["retryAfter"] == 60
    # More than the limit at once can never pass: refused as such, not as "try again".
    with pytest.raises(BadUserInput):
        await limiter.hit(policy, "other", 6)
    assert await accepted(limiter, policy, "other")


async def test_several_limits_are_counted_all_or_none(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    """A caller refused by its own limit counts nothing against the limit it shares."""
    own, shared = make_policy("2/minute"), make_policy("3/minute")
    for _ in range(2):
        await limiter.hit_all((shared, "address"), (own, "caller"))
    for _ in range(5):
        with pytest.raises(RateLimited):
            await limiter.hit_all((shared, "address"), (own, "caller"))
    await limiter.hit_all((shared, "address"), (own, "another caller"))
    assert not await accepted(limiter, shared, "address")


@pytest.mark.parametrize("method", ["limit_sign_in", "limit_mail"])
async def test_a_caller_at_its_own_limit_leaves_the_address_its_limit(
    limiter: RateLimiter, method: str
) -> None:
    """Sign-ins and mail are counted per address and caller, per address and per caller: a
    caller refused by its own limit does not count against the address's, which others need."""
    caller = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"  # Redis outlives runs
    env = AuthEnv(cast(Settings, None), "", b"", limiter, caller, None)
    shared = Policy.SIGN_IN_PER_EMAIL if method == "limit_sign_in" else Policy.MAIL_SEND_PER_EMAIL
    own = Policy.SIGN_IN_PER_IP if method == "limit_sign_in" else Policy.MAIL_SEND_PER_IP
    for n in range(int(own.item.amount)):
        await getattr(env, method)(f"{n}-{uuid.uuid4().hex}@example.test")
    victim = f"{uuid.uuid4().hex}@example.test"
    for _ in range(3):
        with pytest.raises(RateLimited):
            await getattr(env, method)(victim)
    for _ in range(int(shared.item.amount)):
        await limiter.hit(shared, victim)  # room for exactly the limit: nothing was counted


def _from_anywhere(limiter: RateLimiter) -> AuthEnv:
    """A caller at an address of its own (Redis outlives runs: never one used before)."""
    caller = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"
    return AuthEnv(cast(Settings, None), "", b"", limiter, caller, None)


async def test_an_addresss_mail_limit_counts_its_mailbox_however_spelled(
    limiter: RateLimiter,
) -> None:
    """A +tag or a capital reaches the same inbox: each spelling does not get a limit of its
    own. From a new caller each time, so only the address's limit can refuse."""
    local = uuid.uuid4().hex

    for n in range(int(Policy.MAIL_SEND_PER_EMAIL.item.amount)):
        await _from_anywhere(limiter).limit_mail(f"{local}+{n}@example.test")
    with pytest.raises(RateLimited):
        await _from_anywhere(limiter).limit_mail(f"{local.upper()}@EXAMPLE.test")


@pytest.mark.parametrize(
    "spelled",
    [
        "{local}@xn--bcher-kva.example",  # IDNA's ASCII form
        "{local}@b\u0075\u0308cher.example",  # ü decomposed (NFD)
        "{local}@\uff42\u00fccher.example",  # a fullwidth letter
        "{local}@B\u00dcCHER.example",  # capitals
        "{local}@b\u00fccher\u3002example",  # an ideographic full stop for the dot
    ],
)
async def test_a_domains_spellings_count_as_the_one_domain(
    limiter: RateLimiter, spelled: str
) -> None:
    """A mail server delivers to the domain DNS names (its IDNA form): each spelling of it had
    a limit of its own, so one inbox was sent the limit's worth of mail per spelling."""
    local = uuid.uuid4().hex

    for _ in range(int(Policy.MAIL_SEND_PER_EMAIL.item.amount)):
        await _from_anywhere(limiter).limit_mail(f"{local}@b\u00fccher.example")
    with pytest.raises(RateLimited):
        await _from_anywhere(limiter).limit_mail(spelled.format(local=local))


def test_a_domain_is_keyed_as_idna_2008_names_it() -> None:
    """IDNA 2008 (what registries and mail servers use) keeps ß and final sigma: straße.de is
    xn--strae-oqa.de, not strasse.de, another domain. Python's own codec (IDNA 2003) mapped
    them away, counting one inbox as two spellings and two inboxes as one."""
    assert mailbox("a@stra\u00dfe.de") == mailbox("a@xn--strae-oqa.de") == "a@xn--strae-oqa.de"
    assert mailbox("a@strasse.de") == "a@strasse.de"
    assert mailbox("a@\u03c2.gr") == "a@xn--3xa.gr"
    assert mailbox("a@example.com.") == "a@example.com"  # the root's dot
    for stop in "\u3002\uff0e\uff61":  # however written (IDNA maps each to a dot)
        assert mailbox(f"a@example.com{stop}") == "a@example.com"
    # A joiner IDNA 2008 refuses, IDNA 2003 (which some servers still use) drops.
    assert mailbox("a@exa\u200dmple.com") == "a@example.com"
    tails = (".\u200d", "\u3002\u200d", ".\u200c\u200d\u200d", ".\u1806", ".\u1806\u1806")
    for tail in tails:  # nothing, as IDNA 2003 reads it, after the root's dot
        assert mailbox(f"a@example.com{tail}") == "a@example.com"
    # One no IDNA encodes, mail cannot reach, and keyed as folded.
    assert mailbox("A@B..Example") == "a@b..example"


async def test_one_caller_spelling_a_mailbox_many_ways_gets_its_own_five(
    limiter: RateLimiter,
) -> None:
    """The per-caller share of an address is per mailbox: one caller sending to a+1@, a+2@, …
    had five of each, used up the mailbox's whole ceiling from one place, and its owner was
    refused a sign-in link from anywhere else."""
    stranger = _from_anywhere(limiter)
    local = uuid.uuid4().hex
    own = int(Policy.MAIL_SEND_PER_EMAIL_AND_IP.item.amount)
    for n in range(own):
        await stranger.limit_mail(f"{local}+{n}@example.test")
    with pytest.raises(RateLimited):
        await stranger.limit_mail(f"{local}+more@example.test")
    await _from_anywhere(limiter).limit_mail(f"{local}@example.test")  # its owner, elsewhere


async def test_the_window_slides_rather_than_resetting(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    """The security page promises sliding windows: each hit leaves the window on its own,
    its period after it was made. A fixed window would be emptied whole at its end and take
    two more here, letting a client double its rate across the boundary."""
    policy = make_policy("2 per 4 seconds")
    assert await accepted(limiter, policy, "k")
    await asyncio.sleep(2)
    assert await accepted(limiter, policy, "k")
    # The first hit has left the window (by 0.5 s); the second has not (for 1.5 s more).
    await asyncio.sleep(2.5)
    assert [await accepted(limiter, policy, "k") for _ in range(2)] == [True, False]


async def test_fifty_concurrent_hits_accept_exactly_the_limit(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("10/minute")

    assert await burst([limiter], policy, "burst@example.test", hits=50) == 10


async def test_unknown_storage_is_refused_without_echoing_the_uri() -> None:
    with pytest.raises(ValueError, match="COVERPROOF_RATE_LIMIT_STORAGE") as refused:
        open_limiter("memcached://user:hunter2@cache:11211")
    assert "hunter2" not in str(refused.value)

    with pytest.raises(ValueError, match="COVERPROOF_RATE_LIMIT_STORAGE"):
        open_limiter("127.0.0.1:6379")


async def test_an_unreachable_redis_raises_storage_error_rather_than_letting_through(
    make_policy: MakePolicy,
) -> None:
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    limiter = open_limiter("redis://127.0.0.1:1")
    try:
        assert not await limiter.check()
        with pytest.raises(StorageError):
            await limiter.hit(make_policy("10/minute"), "someone@example.test")
    finally:
        await limiter.close()


async def test_a_silent_redis_raises_storage_error_rather_than_holding_the_request(
    make_policy: MakePolicy,
) -> None:
    """A Redis that takes the connection and never answers fails the hit, as one that refuses
    it does, and the readiness check: it held them for ever."""
    async with silent_redis() as url:
        limiter = open_limiter(url)
        try:
            with pytest.raises(StorageError):
                # The bound only ends the test if it would hang; the limiter's own is 1.5 s.
                await asyncio.wait_for(limiter.hit(make_policy("10/minute"), "k"), 30)
            assert not await asyncio.wait_for(limiter.check(), 30)
        finally:
            await limiter.close()


async def test_deployments_sharing_a_redis_count_apart_under_their_prefixes(
    make_policy: MakePolicy,
) -> None:
    """Same Redis, same policy and key: one prefix counts together, another apart."""
    policy = make_policy("2/minute")
    staging = [open_limiter(REDIS_URL, prefix="staging-test") for _ in range(2)]
    production = open_limiter(REDIS_URL, prefix="production-test")
    try:
        for limiter in staging:
            await limiter.hit(policy, "a@example.test")
        assert not await accepted(staging[0], policy, "a@example.test")
        assert await accepted(production, policy, "a@example.test")
    finally:
        for limiter in [*staging, production]:
            await limiter.close()
