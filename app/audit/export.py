"""Export a firm's audit trail as JSON Lines, for verification without trusting us.

Line 1 is a header; then one line per entry in seq order, carrying its canonical bytes (rebuilt
from the stored fields, so a field changed in the database shows as a broken hash), prev_hash
and hash; then the signed checkpoints; last, a trailer that signs the SHA-256 of every byte
before it with the platform key, so no byte of the file can change unnoticed.
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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import canonical
from app.audit.chain import canonical_of
from app.audit.signing import SigningKey
from app.db.models import AuditCheckpoint, AuditEntry

FORMAT = "coverproof-audit-export"
_TABLE = AuditEntry.__table__


def _line(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"


async def _body(
    session: AsyncSession,
    firm_id: uuid.UUID,
    key_id: str,
    start: datetime | None,
    end: datetime | None,
) -> AsyncIterator[str]:
    yield _line(
        {
            "type": "header",
            "format": FORMAT,
            "version": 1,
            "firm_id": str(firm_id),
            "exported_at": canonical.timestamp(datetime.now(UTC)),
            "key_id": key_id,
            # A full export must start at seq 1, so deleted leading entries show offline.
            "scope": "full" if start is None and end is None else "dated",
        }
    )
    query = select(_TABLE).where(_TABLE.c.firm_id == firm_id)
    if start is not None:
        query = query.where(_TABLE.c.occurred_at >= start)
    if end is not None:
        query = query.where(_TABLE.c.occurred_at < end)
    rows = await session.stream(query.order_by(_TABLE.c.seq).execution_options(yield_per=1000))
    first = last = None
    async for row in rows:
        first = row.seq if first is None else first
        last = row.seq
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
    wanted = select(AuditCheckpoint).where(AuditCheckpoint.firm_id == firm_id)
    if start is not None or end is not None:
        if first is None:
            return
        wanted = wanted.where(AuditCheckpoint.seq >= first, AuditCheckpoint.seq <= last)
    checkpoints = await session.execute(wanted.order_by(AuditCheckpoint.seq))
    for cp in checkpoints.scalars():
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
    async for line in _body(session, firm_id, key.key_id, start, end):
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
