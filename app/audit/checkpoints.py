"""Signed checkpoints of a firm's chain head: made on demand (admins) and periodically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.signing import SigningKey, checkpoint_payload, verify_signature
from app.auth.actor import Actor, Role
from app.db import calls
from app.db.models import AuditCheckpoint
from app.db.tenant import tenant_transaction, transaction
from app.errors import AuditChainBroken, BadUserInput

log = logging.getLogger("coverproof.audit")


async def _sign_head(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey, created_by: str
) -> tuple[AuditCheckpoint | None, bool]:
    """The checkpoint of the firm's current head (None for an empty chain), and whether it was
    signed just now (a head already signed keeps its checkpoint). Only a chain that still
    extends the last checkpoint, itself validly signed, is signed: signing a rewritten or
    cut-off one would vouch for the rewrite."""
    head = await chain.locked_head(session, firm_id)  # it cannot move while it is signed
    query = select(AuditCheckpoint).where(AuditCheckpoint.firm_id == firm_id)
    last = await session.scalar(query.order_by(AuditCheckpoint.seq.desc()).limit(1))
    if last is not None:
        await _extends(session, firm_id, last, head, key)
        if last.seq == head.seq:
            return last, False
    if head is None:
        return None, False
    signed_at = datetime.now(UTC)
    checkpoint = AuditCheckpoint(
        id=uuid.uuid4(),
        firm_id=firm_id,
        seq=head.seq,
        head_hash=head.hash,
        signed_at=signed_at,
        key_id=key.key_id,
        signature=key.sign(checkpoint_payload(firm_id, head.seq, head.hash, signed_at)),
        created_by=created_by,
    )
    columns = AuditCheckpoint.__table__.c
    await session.execute(
        insert(AuditCheckpoint).values({c.key: getattr(checkpoint, c.key) for c in columns})
    )
    return checkpoint, True


async def _extends(
    session: AsyncSession, firm_id: uuid.UUID, last: AuditCheckpoint, head: Any, key: SigningKey
) -> None:
    """Raise AuditChainBroken unless ``last`` carries a valid signature (one of ours) and the
    chain still reaches its seq: its head is the entry it signed, or every entry after it
    links on from the hash it signed."""
    payload = checkpoint_payload(firm_id, last.seq, last.head_hash, last.signed_at)
    public = key.trusted.get(last.key_id)
    if public is None:
        raise AuditChainBroken(
            f"The checkpoint at seq {last.seq} names key {last.key_id}, not one of ours "
            "(after a rotation, list the earlier keys as retired)."
        )
    if not verify_signature(public, payload, last.signature):
        # A row anyone with the table could add: trusting it would sign over what it says.
        raise AuditChainBroken(f"The checkpoint at seq {last.seq} does not carry our signature.")
    if head is None or head.seq < last.seq:
        seq = 0 if head is None else head.seq
        raise AuditChainBroken(
            f"The audit trail ends at seq {seq}, before its checkpoint at seq {last.seq}."
        )
    if head.seq == last.seq and head.hash != last.head_hash:
        raise AuditChainBroken(f"The entry at seq {last.seq} is not the one its checkpoint signed.")
    since = chain.Head(last.seq, last.head_hash)
    verified = await chain.verify(session, firm_id, since=since)
    if not verified.ok:
        raise AuditChainBroken(
            f"The audit trail does not extend its checkpoint at seq {last.seq}: "
            f"seq {verified.failure_seq}: {verified.failure_reason}."
        )


async def create_checkpoint(
    session: AsyncSession, actor: Actor, key: SigningKey
) -> AuditCheckpoint:
    """Sign the firm's current chain head now (admins); the same head is signed once."""
    actor.require(Role.ADMIN)
    checkpoint, _ = await _sign_head(session, actor.firm_id, key, f"user:{actor.id}")
    if checkpoint is None:
        raise BadUserInput("The audit trail is empty; there is nothing to sign yet.")
    return checkpoint


async def list_checkpoints(session: AsyncSession, actor: Actor) -> list[AuditCheckpoint]:
    """The firm's checkpoints, newest first (admins)."""
    actor.require(Role.ADMIN)
    rows = await session.execute(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.firm_id == actor.firm_id)
        .order_by(AuditCheckpoint.seq.desc())
    )
    return list(rows.scalars())


async def checkpoint_due_firms(sessions: async_sessionmaker[AsyncSession], key: SigningKey) -> int:
    """Sign every firm whose chain moved since its last checkpoint; returns how many."""
    async with transaction(sessions) as session:
        heads = await calls.chain_heads(session)
    signed = 0
    for head in heads:
        if head.head_seq is not None and head.head_seq != head.checkpoint_seq:
            try:
                async with tenant_transaction(sessions, head.firm_id) as session:
                    _, created = await _sign_head(session, head.firm_id, key, "system")
            except AuditChainBroken as broken:
                log.error("audit chain of firm %s not signed: %s", head.firm_id, broken.message)
                continue
            signed += created
    return signed


async def run_periodically(
    sessions: async_sessionmaker[AsyncSession], key: SigningKey, minutes: int
) -> None:
    """The background checkpointer (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            signed = await checkpoint_due_firms(sessions, key)
        except Exception:
            log.exception("periodic audit checkpoints failed")
        else:
            log.info("signed %d audit checkpoint(s)", signed)
