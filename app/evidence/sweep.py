"""Deleting stored pack PDFs that no pack names.

A pack's PDF is stored before its request's transaction commits. If the request then fails,
the transaction's undo deletes it (``on_rollback`` in app/db/tenant.py); only a process that
dies in between leaves one behind: the firm's declarations, in storage, that no pack shows and
nothing else would ever delete. Nothing of it is on the firm's record either (its pack row and
audit entries were never committed), so deleting it is logged, not audited.

The sweep deletes each such object once it is older than ``GRACE``, far longer than a pack's
transaction stays open after its upload. It reads which keys the firm's packs name inside that
firm's tenant transaction, as any request would (a key sits under its firm's prefix, so only
that firm's rows can name it).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import EvidencePack, Firm
from app.db.tenant import tenant_transaction
from app.evidence.storage import Storage

log = logging.getLogger("coverproof.evidence")

GRACE = timedelta(hours=1)


async def sweep(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, before: datetime | None = None
) -> int:
    """Delete every stored pack PDF last written before ``before`` (an hour ago by default)
    that no pack names; how many were deleted."""
    cutoff = before or datetime.now(UTC) - GRACE
    deleted = 0
    async for firm_id, keys in storage.written_before(cutoff):
        async with tenant_transaction(sessions, firm_id) as session:
            # Seen only in its own tenant: were the binding ever wrong, no pack would be seen
            # either, and every one of its PDFs would look like an orphan.
            if await session.scalar(select(Firm.id).where(Firm.id == firm_id)) is None:
                log.error("stored pack PDFs under %s, a firm not found, left alone", firm_id)
                continue
            named = set(
                await session.scalars(
                    select(EvidencePack.storage_key).where(EvidencePack.storage_key.in_(keys))
                )
            )
        orphans = [key for key in keys if key not in named]
        for key in orphans:
            await storage.delete(key)
        if orphans:
            log.warning(
                "deleted %d stored pack PDF(s) of firm %s that no pack names", len(orphans), firm_id
            )
        deleted += len(orphans)
    return deleted


async def run_periodically(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, minutes: int
) -> None:
    """The background sweep (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            await sweep(sessions, storage)
        except Exception:
            log.exception("sweeping stored pack PDFs failed")
