"""Export a firm's audit trail as JSON Lines, for verification without trusting us.

Line 1 is a header (naming the chain's head when exported, and a dated export's dates); then
one line per entry in seq order, carrying its canonical bytes (rebuilt from the stored fields,
so a field changed in the database shows as a broken hash), prev_hash and hash; then the signed
checkpoints; last, a trailer that signs the SHA-256 of every byte before it with the platform
key, so no byte of the file can change unnoticed.
``tools/verify_audit.py`` checks such a file with the platform's public key (docs/audit.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import canonical, chain
from app.audit.chain import canonical_of
from app.audit.signing import SigningKey
from app.db.models import AuditCheckpoint, AuditEntry

FORMAT = "coverproof-audit-export"
_TABLE = AuditEntry.__table__


def _line(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"


async def _extent(
    session: AsyncSession,
    firm_id: uuid.UUID,
    head_seq: int,
    start: datetime | None,
    end: datetime | None,
) -> tuple[int, int]:
    """The first and last seq an export holds. Dated, from the first entry at or after
    ``start`` to the last before ``end``, with every entry between them by seq: one app
    server's clock may run a little behind another's, so times need not rise with seq, and a
    gap left by a time out of order would read offline as a deleted entry."""
    first, last = 1, head_seq
    in_chain = (_TABLE.c.firm_id == firm_id, _TABLE.c.seq <= head_seq)
    if start is not None:
        earliest = select(func.min(_TABLE.c.seq)).where(*in_chain, _TABLE.c.occurred_at >= start)
        first = await session.scalar(earliest) or head_seq + 1
    if end is not None:
        latest = select(func.max(_TABLE.c.seq)).where(*in_chain, _TABLE.c.occurred_at < end)
        last = await session.scalar(latest) or 0
    return first, last


async def _body(
    session: AsyncSession,
    firm_id: uuid.UUID,
    key: SigningKey,
    start: datetime | None,
    end: datetime | None,
) -> AsyncIterator[str]:
    # The checkpoints first, then the head, then the entries up to it (each statement sees
    # what has committed by its start): a checkpoint signed while the export streams is left
    # out, not reported offline as beyond the entries, while a tail cut off after a checkpoint
    # still shows, that checkpoint being beyond the head.
    # A revoked key's checkpoints vouch for nothing, and its public half is no longer
    # published: they are left out.
    trusted = AuditCheckpoint.key_id.not_in(sorted(key.revoked))
    signed = await session.execute(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.firm_id == firm_id, trusted)
        .order_by(AuditCheckpoint.seq)
    )
    checkpoints = list(signed.scalars())
    head = await chain.head(session, firm_id)
    head_seq = 0 if head is None else head.seq
    dated = start is not None or end is not None
    first, last = await _extent(session, firm_id, head_seq, start, end)
    yield _line(
        {
            "type": "header",
            "format": FORMAT,
            "version": 2,
            "firm_id": str(firm_id),
            "exported_at": canonical.timestamp(datetime.now(UTC)),
            "key_id": key.key_id,
            # A full export must start at seq 1 and end at the head, so entries deleted at
            # either end show offline; a dated one says which dates it was asked for.
            "scope": "dated" if dated else "full",
            "from": None if start is None else canonical.timestamp(start),
            "to": None if end is None else canonical.timestamp(end),
            "head_seq": head_seq,
            "head_hash": None if head is None else head.hash.hex(),
        }
    )
    query = select(_TABLE).where(_TABLE.c.firm_id == firm_id, _TABLE.c.seq.between(first, last))
    rows = await session.stream(query.order_by(_TABLE.c.seq).execution_options(yield_per=1000))
    async for row in rows:
        yield _line(
            {
                "type": "entry",
                "seq": row.seq,
                "prev_hash": row.prev_hash.hex(),
                "hash": row.hash.hex(),
                "canonical": canonical_of(row._mapping).decode(),
            }
        )
    # A full export carries every checkpoint, so a checkpoint beyond the last entry shows a
    # cut-off tail; a dated export carries those within its entries.
    for cp in checkpoints:
        if dated and not first <= cp.seq <= last:
            continue
        yield _line(
            {
                "type": "checkpoint",
                "id": str(cp.id),
                "firm_id": str(cp.firm_id),
                "seq": cp.seq,
                "head_hash": cp.head_hash.hex(),
                "signed_at": canonical.timestamp(cp.signed_at),
                "key_id": cp.key_id,
                "signature": base64.b64encode(cp.signature).decode(),
            }
        )


async def export_lines(
    session: AsyncSession,
    firm_id: uuid.UUID,
    key: SigningKey,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AsyncIterator[str]:
    """The export, line by line, streamed from a server-side cursor, ending with the signed
    trailer."""
    digest = hashlib.sha256()
    async for line in _body(session, firm_id, key, start, end):
        digest.update(line.encode())
        yield line
    value = digest.digest()
    yield _line(
        {
            "type": "signature",
            "sha256": value.hex(),
            "key_id": key.key_id,
            "signature": base64.b64encode(key.sign(value)).decode(),
        }
    )
