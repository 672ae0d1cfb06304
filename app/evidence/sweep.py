"""Deleting stored pack PDFs that no pack names.

A pack's PDF is stored before its request's transaction commits. If PostgreSQL rolls that
transaction back, its undo deletes the PDF (``on_rollback`` in app/db/tenant.py). A PDF is left
behind, the firm's declarations in storage that no pack shows and nothing else would delete,
when the process dies before its rollback, when that undo fails, and when the commit's outcome
is unknown (the undo is then not run: the commit may have gone through). Nothing of such a PDF
is on the firm's record (its pack row and audit entries were never committed), so deleting it
is logged, not audited.

A pack's transaction holds its storing lock from before its PDF is stored until it ends,
however long that is; the sweep passes over a PDF whose lock is held, and otherwise deletes it
once it is older than ``GRACE`` and, read after taking that lock, no pack names it. It reads
which keys the packs name inside the firm's own tenant transaction, as any request would (a key
sits under its firm's prefix, so only that firm's rows can name it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import calls
from app.db.models import EvidencePack, Firm
from app.db.tenant import tenant_transaction
from app.evidence.storage import Storage, pack_of

log = logging.getLogger("coverproof.evidence")

GRACE = timedelta(hours=1)
# Keys judged in one transaction: each may hold a lock until it ends, and PostgreSQL's lock
# table is shared by every transaction (a backlog of orphans must not fill it).
BATCH = 200
# The advisory-lock space of packs being stored ("PACK"), apart from the chain locks.
_STORING = 0x5041434B
_NAMED = select(EvidencePack.storage_key).where(
    EvidencePack.storage_key == any_(bindparam("keys", type_=ARRAY(String)))
)
_ISOLATION = text("select current_setting('transaction_isolation')")


def _lock_key(pack_id: uuid.UUID) -> int:
    return int.from_bytes(pack_id.bytes[:4], "big", signed=True)


async def storing(session: AsyncSession, pack_id: uuid.UUID) -> None:
    """Hold the pack's storing lock until the transaction ends; taken before its PDF is stored,
    so that the sweep never judges a PDF whose pack may still be committed."""
    await calls.pair_lock(session, _STORING, _lock_key(pack_id))


async def _unnamed(session: AsyncSession, keys: Sequence[str]) -> list[str]:
    named = set(await session.scalars(_NAMED, {"keys": list(keys)}))
    return [key for key in keys if key not in named]


async def _sweep_batch(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    firm_id: uuid.UUID,
    keys: list[str],
    dry_run: bool,
) -> list[str]:
    async with tenant_transaction(sessions, firm_id) as session:
        # Seen only in its own tenant: were the binding ever wrong, no pack would be seen
        # either, and every one of its PDFs would look like an orphan.
        if await session.scalar(select(Firm.id).where(Firm.id == firm_id)) is None:
            log.error("stored pack PDFs under %s, a firm not found, left alone", firm_id)
            return []
        # The second read below must see what committed since the first: each statement's own
        # snapshot, which a database defaulting to a stricter isolation would not give.
        if await session.scalar(_ISOLATION) != "read committed":
            log.error("stored pack PDFs not swept: transactions are not read committed")
            return []
        idle = [
            key
            for key in await _unnamed(session, keys)
            if await calls.try_pair_lock(session, _STORING, _lock_key(pack_of(key)))
        ]
        # Read again under the locks: a pack committed since the first read is named now.
        orphans = await _unnamed(session, idle)
        for key in [] if dry_run else orphans:
            await storage.purge(key)
    if orphans and not dry_run:
        log.warning(
            "deleted %d stored pack PDF(s) of firm %s that no pack names", len(orphans), firm_id
        )
    return orphans


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    before: datetime | None = None,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Delete every stored pack PDF last written before ``before`` (an hour ago by default)
    that no pack names (with ``dry_run``, only find them); their keys. A firm whose PDFs
    cannot be judged is logged and the others are still swept."""
    cutoff = before or datetime.now(UTC) - GRACE
    orphans: list[str] = []
    async for firm_id, keys in storage.written_before(cutoff, dry_run=dry_run):
        try:
            for start in range(0, len(keys), BATCH):
                batch = keys[start : start + BATCH]
                orphans += await _sweep_batch(sessions, storage, firm_id, batch, dry_run)
        except Exception:
            log.exception("stored pack PDFs of firm %s not swept", firm_id)
    return orphans


async def run_periodically(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, minutes: int
) -> None:
    """The background sweep (cancelled at shutdown). The first waits a random part of the
    interval, so that processes restarted more often than that still sweep, at staggered
    times."""
    delay = 1 + secrets.randbelow(minutes * 60)
    while True:
        await asyncio.sleep(delay)
        delay = minutes * 60
        try:
            await sweep(sessions, storage)
        except Exception:
            log.exception("sweeping stored pack PDFs failed")
