"""The in-process storage's moving window (``app/ratelimit/memory.py``), on a clock the tests
move: limits' counting rules, a window bounded by its limit, idle keys dropped, and no
background sweep (the library's hands every key to a worker thread)."""

from __future__ import annotations

import pytest

from app.errors import RateLimited
from app.ratelimit import memory, open_limiter
from app.ratelimit.memory import MemoryWindows
from tests.ratelimit.conftest import MakePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(memory.time, "time", moved)
    return moved


async def test_a_window_counts_its_limit_then_frees_one_hit_as_each_expires(
    clock: Clock,
) -> None:
    storage = MemoryWindows()
    for _ in range(3):
        clock.now += 1
        assert await storage.acquire_entry("k", 3, 60)
    clock.now += 1
    assert not await storage.acquire_entry("k", 3, 60)
    assert await storage.get_moving_window("k", 3, 60) == (1_000_001.0, 3)

    clock.now = 1_000_001.0 + 60  # the first hit is exactly 60 s old: still counted
    assert not await storage.acquire_entry("k", 3, 60)
    clock.now += 0.5  # now it has left the window, and only it
    assert await storage.acquire_entry("k", 3, 60)
    kept = len(storage.windows["k"].hits)
    assert not await storage.acquire_entry("k", 3, 60)
    assert len(storage.windows["k"].hits) == kept  # refused hits are not kept
    assert await storage.get_moving_window("k", 3, 60) == (1_000_002.0, 3)


async def test_a_window_holds_at_most_twice_its_limit(clock: Clock) -> None:
    """Expired hits are cut off once they are half the list: memory stays bounded by the
    limit, however long a key is used."""
    storage = MemoryWindows()
    longest = 0
    for _ in range(2_000):
        clock.now += 0.25
        await storage.acquire_entry("k", 10, 10)
        longest = max(longest, len(storage.windows["k"].hits))
    assert longest <= 2 * 10 + 1
    assert (await storage.get_moving_window("k", 10, 10))[1] == 10


async def test_several_hits_at_once_are_all_counted_or_none(clock: Clock) -> None:
    storage = MemoryWindows()
    assert not await storage.acquire_entry("k", 3, 60, amount=4)
    assert await storage.acquire_entry("k", 3, 60, amount=2)
    assert not await storage.acquire_entry("k", 3, 60, amount=2)
    assert await storage.get_moving_window("k", 3, 60) == (clock.now, 2)
    assert await storage.acquire_entry("k", 3, 60)


async def test_retry_after_is_the_wait_until_the_oldest_hit_leaves(
    clock: Clock, make_policy: MakePolicy
) -> None:
    limiter = open_limiter("memory://")
    policy = make_policy("2/minute")
    await limiter.hit(policy, "k")
    clock.now += 20
    await limiter.hit(policy, "k")
    clock.now += 5
    with pytest.raises(RateLimited) as refused:
        await limiter.hit(policy, "k")
    assert refused.value.extensions["retryAfter"] == 35
    await limiter.close()


async def test_keys_whose_hits_all_expired_are_dropped_within_a_minute(clock: Clock) -> None:
    storage = MemoryWindows()
    for n in range(100):
        assert await storage.acquire_entry(f"idle-{n}", 5, 10)
    assert await storage.acquire_entry("busy", 5, 120)
    clock.now += memory.SWEEP_SECONDS + 1
    assert await storage.acquire_entry("new", 5, 10)
    assert set(storage.windows) == {"busy", "new"}


async def test_nothing_is_swept_in_the_background(clock: Clock, make_policy: MakePolicy) -> None:
    limiter = open_limiter("memory://")
    assert isinstance(limiter.storage, MemoryWindows)
    policy = make_policy("1000/minute")
    for n in range(200):
        await limiter.hit(policy, f"caller-{n % 20}")
    assert limiter.storage.timer is None  # limits' sweep task (a thread per key) never started
    assert limiter.storage.events == {}
    assert len(limiter.storage.windows) == 20


async def test_clear_and_reset_forget_the_windows(clock: Clock) -> None:
    storage = MemoryWindows()
    assert await storage.acquire_entry("a", 1, 60)
    assert await storage.acquire_entry("b", 1, 60)
    await storage.clear("a")
    assert await storage.acquire_entry("a", 1, 60)
    assert not await storage.acquire_entry("b", 1, 60)
    assert await storage.reset() == 2
    assert await storage.acquire_entry("b", 1, 60)
