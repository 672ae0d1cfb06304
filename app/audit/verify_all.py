"""Verify every firm's chain as an operator (owner role), for the CLI."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.audit.chain import Verification, verify
from app.db.engine import create_engine, session_factory
from app.db.models import Firm
from app.db.tenant import tenant_transaction, transaction


async def verify_firms(
    owner_url: str, firm_id: uuid.UUID | None = None
) -> list[tuple[uuid.UUID, Verification]]:
    """Each firm's verification, in firm id order; the owner lists firms, then reads each chain
    inside that firm's tenant context like any other reader."""
    engine = create_engine(owner_url, pool_size=2)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            firm_ids = (await session.execute(select(Firm.id).order_by(Firm.id))).scalars().all()
        if firm_id is not None:
            firm_ids = [f for f in firm_ids if f == firm_id]
        results = []
        for fid in firm_ids:
            async with tenant_transaction(sessions, fid) as session:
                results.append((fid, await verify(session, fid)))
        return results
    finally:
        await engine.dispose()
