"""Where finished evidence-pack PDFs live, and what every store promises: a local folder
(app/evidence/local_storage.py, the default) or S3-compatible object storage, Cloudflare R2 or
AWS S3 (app/evidence/s3_storage.py); app/evidence/stores.py opens the configured one.

Keys are firm-scoped and unguessable: ``[<prefix>/]<firm id>/<pack id>-<128 random bits>.pdf``.
A key is only ever read back from the pack's own row (under RLS), never from a request. An
upload either completes or leaves nothing behind: a failed ``put`` deletes whatever part of the
object may exist before it raises ``StorageError``.

The storage object also holds the render slots (a semaphore of ``pack_render_concurrency``)
and the packs admitted at once (twice that: those rendering and as many waiting; fewer if the
database pool is small, as each pack in progress holds two of its connections), of which one
firm may hold one fewer than the render slots (at least one): with two slots or more, another
firm's pack always finds one to render in, rather than wait out a minute-long render of every
one of the first firm's. It lives as long as the app, which is what bounds concurrent renders
across requests.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

CONTENT_TYPE = "application/pdf"
SUFFIX = re.compile(r"^[0-9a-f-]{36}-[A-Za-z0-9_-]{22}\.pdf$")


class StorageError(Exception):
    """Storing, reading or deleting an object failed; the message is safe to show the firm."""


def random_name(pack_id: uuid.UUID) -> str:
    return f"{pack_id}-{secrets.token_urlsafe(16)}.pdf"


class FirmPlace:
    """A firm's place while one of its packs is made, given up when its last holder lets go:
    the block that admitted the pack and any render's thread that holds it. A thread cannot be
    stopped, so a cancelled request's render still counts against its firm until it ends."""

    def __init__(self, leave: Callable[[], None]) -> None:
        self._leave = leave
        self._holders = 1

    def hold(self) -> Callable[[], None]:
        """One more holder: call what this returns, once, to let go."""
        self._holders += 1
        return self.let_go

    def let_go(self) -> None:
        if not self._holders:
            raise RuntimeError("let go of a firm's place more often than it was held")
        self._holders -= 1
        if not self._holders:
            self._leave()


class Storage(ABC):
    """The interface both stores implement."""

    kind: str

    def __init__(self, render_concurrency: int, pool_size: int = 10) -> None:
        self.render_slots = asyncio.Semaphore(max(1, render_concurrency))
        # A pack's request holds its database connection while it waits for a slot: beyond
        # these, a request is refused at once rather than queued, so that packs never take the
        # pool's connections from every firm's other requests.
        # Each holds two connections (the request's, and its snapshot's while it is read):
        # two of the pool's always stay for everything else.
        self.admitted = asyncio.Semaphore(
            max(1, min(2 * max(1, render_concurrency), (pool_size - 2) // 2))
        )
        self.per_firm = max(1, render_concurrency - 1)
        self._firms: Counter[uuid.UUID] = Counter()

    def firm_busy(self, firm_id: uuid.UUID) -> bool:
        """Whether the firm already has as many packs in progress here as one firm may."""
        return self._firms[firm_id] >= self.per_firm

    @asynccontextmanager
    async def admit(self, firm_id: uuid.UUID) -> AsyncIterator[FirmPlace]:
        """Hold one of the admitted places, and one of the firm's, while a pack is made. The
        firm's is held on by a render's thread given it (``FirmPlace.hold``) until it ends."""
        self._firms[firm_id] += 1
        place = FirmPlace(lambda: self._leave(firm_id))
        try:
            async with self.admitted:
                yield place
        finally:
            place.let_go()

    def _leave(self, firm_id: uuid.UUID) -> None:
        self._firms[firm_id] -= 1
        if not self._firms[firm_id]:
            del self._firms[firm_id]

    @abstractmethod
    async def open(self) -> None:
        """Acquire what the store needs for the app's lifetime."""

    @abstractmethod
    async def close(self) -> None:
        """Release it."""

    @abstractmethod
    def new_key(self, firm_id: uuid.UUID, pack_id: uuid.UUID) -> str:
        """A fresh, unguessable key under the firm's own prefix."""

    @abstractmethod
    async def put(self, key: str, data: bytes, sha256: bytes) -> str | None:
        """Store ``data`` at ``key``, all or nothing; raise StorageError on failure. The
        version the store made of it, if it keeps versions."""

    @abstractmethod
    async def read(self, key: str, version: str | None = None) -> bytes:
        """The stored bytes (of ``version``, given one); raise StorageError if they cannot be
        read."""

    @abstractmethod
    async def delete(self, key: str, version: str | None = None) -> None:
        """Remove ``key`` if it exists, and ``version`` of it (as ``put`` named it) for good
        where the store keeps versions; raise StorageError on failure."""

    async def purge(self, key: str) -> None:
        """Remove every copy of ``key``, each version of it included where the store keeps
        versions (an object no pack names: no firm's record); raise StorageError on failure."""
        await self.delete(key)

    @abstractmethod
    def written_before(
        self, moment: datetime, *, dry_run: bool = False
    ) -> AsyncIterator[tuple[uuid.UUID, list[str]]]:
        """The keys of the objects last written before ``moment``, a firm at a time (for the
        sweep of objects no pack names), with those only older versions of are left of, where
        the store keeps versions; raise StorageError if they cannot be listed. A store may
        remove what no key names on the way (a dead writer's leftovers), unless ``dry_run``."""


def is_firm_folder(folder: str) -> bool:
    try:
        return str(uuid.UUID(folder)) == folder
    except ValueError:
        return False


def firm_of(folder: str, name: str) -> uuid.UUID | None:
    """The firm whose folder holds the object ``name``, if both are as ``new_key`` makes them;
    None for anything else, which is never a pack's."""
    try:
        firm, pack = uuid.UUID(folder), uuid.UUID(name[:36])
    except ValueError:
        return None
    ours = str(firm) == folder and str(pack) == name[:36] and SUFFIX.match(name)
    return firm if ours else None


def pack_of(key: str) -> uuid.UUID:
    """The id of the pack whose PDF is stored at ``key`` (one ``new_key`` made)."""
    return uuid.UUID(key.rpartition("/")[2][:36])
