"""One request's counts over its runs: what an abandoned run counted, the next uses instead of
counting again; what it did not, and anything beyond, is counted as ever."""

from __future__ import annotations

import pytest

from app.errors import RateLimited
from app.ratelimit import RateLimiter
from app.ratelimit.request import RequestLimiter
from tests.ratelimit.conftest import MakePolicy
from tests.ratelimit.support import accepted


async def test_a_run_again_uses_what_the_abandoned_run_counted(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy, other = make_policy("3/minute"), make_policy("3/minute")
    request = RequestLimiter(limiter)
    await request.hit(policy, "k")
    await request.hit(policy, "k")
    request.abandon_run()
    await request.hit(policy, "k")
    await request.hit(policy, "k")  # the run again: both counted by the first run
    await request.hit(other, "k")  # not counted by it: counted now
    # One of the three left for anyone else: the request's two, not four.
    assert await accepted(limiter, policy, "k")
    assert not await accepted(limiter, policy, "k")
    assert [await accepted(limiter, other, "k") for _ in range(3)] == [True, True, False]


async def test_counts_carry_over_every_abandoned_run_and_beyond_them_count(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("4/minute")
    request = RequestLimiter(limiter)
    await request.hit(policy, "k")
    request.abandon_run()
    await request.hit(policy, "k")  # the first run's
    request.abandon_run()
    await request.hit(policy, "k")  # still the first run's, through the second
    await request.hit(policy, "k")  # a second hit this run: a new count
    assert [await accepted(limiter, policy, "k") for _ in range(3)] == [True, True, False]


async def test_room_counted_by_an_abandoned_run_is_room_though_the_window_is_full(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    """A run again is not refused for the count its own first run took: it is that count."""
    policy = make_policy("1/minute")
    request = RequestLimiter(limiter)
    await request.hit_all((policy, "k"))
    request.abandon_run()
    await request.check_room(policy, "k")
    await request.hit_all((policy, "k"))
    with pytest.raises(RateLimited):
        await request.hit(policy, "k")  # a second, which the first run never counted


async def test_a_finished_run_leaves_nothing_for_the_next_request(
    limiter: RateLimiter, make_policy: MakePolicy
) -> None:
    policy = make_policy("2/minute")
    first, second = RequestLimiter(limiter), RequestLimiter(limiter)
    await first.hit(policy, "k")
    await second.hit(policy, "k")
    with pytest.raises(RateLimited):
        await first.hit(policy, "k")  # never abandoned: nothing to use again
