"""The in-process storage (``memory://``): limits' own, with its moving window kept differently.

limits' ``MemoryStorage`` keeps a key's window as a list, newest first, and adds each hit at
its front, so a hit costs time in proportion to the hits still in the window; and it sweeps
expired hits in a task that hands every key to a worker thread, one after another, started
again after almost every hit. Under load that was a tenth of a write's cost, most of it in
threads contending for the GIL with the event loop.

Here a key's window is a list of hit times, oldest first: a hit is appended, the hits still in
the window are found by bisection, and the expired ones are cut off once they are at least
half the list, so each hit costs O(log n) and each expired hit is removed once. Nothing here
awaits, so each call runs whole on the event loop and needs no lock. Keys no longer counted are
dropped by a sweep at most once a minute. The counting rules are limits' own: a hit is refused
when the window already holds more than ``limit - amount`` hits no older than ``expiry``
seconds, and a refused hit is not kept. Only the moving window is replaced; limits' other
strategies use the inherited storage as before.
"""

from __future__ import annotations

import bisect
import time

from limits.aio.storage import MemoryStorage

SWEEP_SECONDS = 60.0


class _Window:
    __slots__ = ("expiry", "hits")

    def __init__(self, expiry: int) -> None:
        self.expiry = expiry
        self.hits: list[float] = []  # oldest first

    def first_live(self, now: float) -> int:
        """The index of the oldest hit still in the window (``len(hits)`` if none is)."""
        hits = self.hits
        first = bisect.bisect_left(hits, now - self.expiry)
        if first and 2 * first >= len(hits):
            del hits[:first]
            return 0
        return first

    def add(self, now: float, amount: int) -> None:
        # Kept in order should the clock step back: such a hit counts as of the newest.
        at = max(now, self.hits[-1]) if self.hits else now
        self.hits.extend([at] * amount)


class MemoryWindows(MemoryStorage):
    """limits' in-process storage, with O(log n) moving-window hits and no sweeping threads."""

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.windows: dict[str, _Window] = {}
        self._next_sweep = time.time() + SWEEP_SECONDS

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Count ``amount`` hits under ``key`` if the window has room for them all."""
        if amount > limit:
            return False
        now = time.time()
        self._sweep(now)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = _Window(expiry)
        window.expiry = expiry
        first = window.first_live(now)  # before len(): it may cut the list
        if len(window.hits) - first + amount > limit:
            return False
        window.add(now, amount)
        return True

    async def get_moving_window(
        self,
        key: str,
        limit: int,  # noqa: ARG002 (the interface's; the window holds no more than it anyway)
        expiry: int,
    ) -> tuple[float, int]:
        """(the time of the oldest hit in the window, the number of hits in it)."""
        now = time.time()
        window = self.windows.get(key)
        if window is None:
            return now, 0
        window.expiry = expiry
        first = window.first_live(now)
        if first == len(window.hits):
            return now, 0
        return window.hits[first], len(window.hits) - first

    async def clear(self, key: str) -> None:
        self.windows.pop(key, None)
        await super().clear(key)

    async def reset(self) -> int | None:
        counted = len(self.windows)
        self.windows.clear()
        return max(counted, await super().reset() or 0)

    def _sweep(self, now: float) -> None:
        """Drop the keys whose every hit has expired (at most once a minute)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        idle = [k for k, w in self.windows.items() if not w.hits or w.hits[-1] < now - w.expiry]
        for key in idle:
            del self.windows[key]
