"""Signed checkpoints of a firm's chain head: made on demand (admins) and periodically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.actions import Action
from app.audit.signing import SigningKey, checkpoint_payload
from app.auth.actor import Actor, Role
from app.db import calls
from app.db.models import AuditCheckpoint
from app.db.tenant import checkpointer_transaction, tenant_transaction
from app.errors import AuditChainBroken, BadUserInput, field_error

log = logging.getLogger("coverproof.audit")

# The signed seqs one page of checkpoints lists at most (each with every key's checkpoint there).
MAX_CHECKPOINT_SEQS = 500


REVOKED_ONLY = (
    "Every checkpoint of this audit trail was signed by a revoked key, so none vouches for it: "
    "an operator re-anchors it (coverproof audit reanchor) once it has been checked against "
    "exports kept from before the key leaked."
)
REVOKED_SINCE = (
    "A revoked key signed this audit trail past its last checkpoint by a key still trusted "
    "(seq {seq}), so nothing vouches for the entries in between: an operator re-anchors it "
    "(coverproof audit reanchor) once it has been checked against exports kept from before "
    "the key leaked."
)


async def _sign_head(
    session: AsyncSession,
    firm_id: uuid.UUID,
    key: SigningKey,
    created_by: str,
    *,
    reanchor: bool = False,
    requested_by: Actor | None = None,
) -> tuple[AuditCheckpoint | None, bool]:
    """The checkpoint of the firm's current head (None for an empty chain), and whether it was
    signed just now (a head already signed keeps its checkpoint). Only a chain that still
    extends the last checkpoint, itself validly signed, is signed: signing a rewritten or
    cut-off one would vouch for the rewrite. With no such checkpoint, the whole chain is checked
    first; and a chain a revoked key signed past its last checkpoint of a trusted key (or at
    all, with none) is signed only as an operator's ``reanchor``: the entries only that key
    vouched for check out however whoever held it rewrote them. The entries since that
    checkpoint are checked before the firm's chain lock is taken, so its appends do not wait on
    that; under the lock, only what was appended meanwhile is. A new checkpoint ``requested_by``
    a member is recorded on the trail first (``audit.checkpoint_created``, naming it), so it
    signs the entry that says who asked for it."""
    last = await newest(session, firm_id, key)
    if not reanchor and await revoked_signed_since(session, firm_id, key, last):
        raise AuditChainBroken(REVOKED_ONLY if last is None else REVOKED_SINCE.format(seq=last.seq))
    checked: chain.Head | None
    if last is not None:
        since = _signed(last)
        current = await chain.head(session, firm_id)
        checked = await _extends(session, firm_id, last, since, current, key)
    else:
        checked = await _whole(session, firm_id, key)
    head = await chain.locked_head(session, firm_id)  # it cannot move while it is signed
    latest = await newest(session, firm_id, key)
    if last is not None and (latest is None or latest.seq < last.seq):
        raise AuditChainBroken(
            f"The checkpoint at seq {last.seq} was removed while the chain was being checked."
        )
    if latest is not None:
        if last is None or latest.id != last.id:  # signed meanwhile: check from that one
            checked = _signed(latest)
        assert checked is not None
        await _extends(session, firm_id, latest, checked, head, key)
        if head is not None and latest.seq == head.seq:
            return latest, False
    elif checked != head:  # changed since the whole chain was checked
        if head is None or (checked is not None and head.seq <= checked.seq):
            seq = 0 if head is None else head.seq
            raise AuditChainBroken(f"The audit trail changed as it was checked (head: seq {seq}).")
        await _whole(session, firm_id, key, checked)  # what was appended meanwhile
    if head is None:
        return None, False
    checkpoint_id = uuid.uuid4()
    if requested_by is not None:
        entry = await chain.record(
            session,
            requested_by,
            Action.AUDIT_CHECKPOINT_CREATED,
            "audit_checkpoint",
            checkpoint_id,
        )
        head = chain.Head(entry["seq"], entry["hash"])
    await _refuse_a_squatter(session, firm_id, head.seq, key)
    signed_at = datetime.now(UTC)
    checkpoint = AuditCheckpoint(
        id=checkpoint_id,
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


async def _refuse_a_squatter(
    session: AsyncSession, firm_id: uuid.UUID, seq: int, key: SigningKey
) -> None:
    """Raise AuditChainBroken if a row at ``seq`` already names this key: one we signed is
    ``newest`` (and signed once), so this one someone wrote, and a seq holds one checkpoint
    per key (0014): it holds the place of ours until an administrator removes it."""
    query = select(AuditCheckpoint.id).where(
        AuditCheckpoint.firm_id == firm_id,
        AuditCheckpoint.seq == seq,
        AuditCheckpoint.key_id == key.key_id,
    )
    squatter = await session.scalar(query)
    if squatter is not None:
        raise AuditChainBroken(
            f"Checkpoint {squatter} at seq {seq} names our key but does not carry its signature: "
            "someone wrote it, and it holds the place of ours until an administrator removes it."
        )


async def revoked_signed_since(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey, last: AuditCheckpoint | None
) -> bool:
    """Whether a revoked key signed one of the firm's checkpoints past ``last``, its newest of
    a key not revoked, and after it (any, for None): the entries up to it were vouched for by
    that key alone. One signed before ``last`` is settled by it: an operator's re-anchor, or
    (one its holder made up beyond the head) the signing it allowed. A row dated in the future,
    or, where the revoked key's public half is still listed, one it did not sign, was written by
    someone else and says nothing of what the key vouched for: were it counted, any role that
    may add a row would hold signing back for good. Asked of the revoked keys alone: "no
    checkpoint of ours, yet some checkpoint" read in two statements would take one another
    signer committed in between for a revoked key's."""
    if not key.revoked:
        return False
    query = select(AuditCheckpoint).where(
        AuditCheckpoint.firm_id == firm_id,
        AuditCheckpoint.key_id.in_(sorted(key.revoked)),
        AuditCheckpoint.signed_at <= func.now(),
    )
    if last is not None:
        query = query.where(
            AuditCheckpoint.seq > last.seq, AuditCheckpoint.signed_at > last.signed_at
        )
    public = key.revoked_keys
    for found in (await session.execute(query)).scalars():
        if found.key_id not in public or chain.signature_problem(found, public) is None:
            return True
    return False


_PAGE = 20


async def newest(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey
) -> AuditCheckpoint | None:
    """The firm's latest checkpoint that one of our keys (this one, or a retired one not
    revoked) signed, or None. A row naming another key, or one of ours without its signature,
    vouches for nothing: any role that may add a row could write one, and taken as the last it
    would set where signing resumes, or (refused) stop signing for good, leaving every later
    entry unanchored. Verification still names it (``chain.verify`` with keys)."""
    order = (AuditCheckpoint.seq, AuditCheckpoint.signed_at, AuditCheckpoint.id)
    query = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.firm_id == firm_id, AuditCheckpoint.key_id.in_(sorted(key.trusted)))
        .order_by(*(column.desc() for column in order))
        .limit(_PAGE)
    )
    page_query = query
    # Page by where the last page ended, not by offset: rows written to be skipped cost each
    # one read, not one a page for every page before.
    while page := list((await session.scalars(page_query)).all()):
        for found in page:
            if chain.signature_problem(found, key.trusted) is None:
                return found
        last = page[-1]
        page_query = query.where(tuple_(*order) < tuple_(last.seq, last.signed_at, last.id))
    return None


def _signed(checkpoint: AuditCheckpoint) -> chain.Head:
    return chain.Head(checkpoint.seq, checkpoint.head_hash)


async def _whole(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey, since: chain.Head | None = None
) -> chain.Head | None:
    """Raise AuditChainBroken unless the firm's chain verifies from its first entry (or from
    ``since``, an entry already checked), with the checkpoints of keys not revoked; its newest
    entry, None for an empty chain."""
    verified = await chain.verify(
        session, firm_id, since=since, revoked=key.revoked, signed_by=key.trusted
    )
    if not verified.ok:
        raise AuditChainBroken(
            f"The audit trail does not verify: seq {verified.failure_seq}: "
            f"{verified.failure_reason}."
        )
    return chain.Head(verified.head_seq, verified.head_hash) if verified.head_seq else None


async def _extends(
    session: AsyncSession,
    firm_id: uuid.UUID,
    last: AuditCheckpoint,
    since: chain.Head,
    head: chain.Head | None,
    key: SigningKey,
) -> chain.Head:
    """Raise AuditChainBroken unless the chain still reaches ``since`` (the entry ``last``
    signed, or one already checked to extend it) and every entry after it, up to ``head``,
    links on from there; the newest entry checked."""
    where = f"its checkpoint at seq {last.seq}" if since.seq == last.seq else f"seq {since.seq}"
    if head is None or head.seq < since.seq:
        seq = 0 if head is None else head.seq
        raise AuditChainBroken(f"The audit trail ends at seq {seq}, before {where}.")
    if head.seq == since.seq:
        if head.hash != since.hash:
            what = "its checkpoint signed" if since.seq == last.seq else "that was just checked"
            raise AuditChainBroken(f"The entry at seq {since.seq} is not the one {what}.")
        return since
    verified = await chain.verify(
        session, firm_id, since=since, revoked=key.revoked, signed_by=key.trusted
    )
    if not verified.ok:
        raise AuditChainBroken(
            f"The audit trail does not extend its checkpoint at seq {last.seq}: "
            f"seq {verified.failure_seq}: {verified.failure_reason}."
        )
    return chain.Head(verified.head_seq, verified.head_hash)


async def create_checkpoint(
    session: AsyncSession, actor: Actor, key: SigningKey
) -> AuditCheckpoint:
    """Sign the firm's current chain head now (admins); the same head is signed once."""
    actor.require(Role.ADMIN)
    checkpoint, _ = await _sign_head(
        session, actor.firm_id, key, f"user:{actor.id}", requested_by=actor
    )
    if checkpoint is None:
        raise BadUserInput("The audit trail is empty; there is nothing to sign yet.")
    return checkpoint


async def sign_head(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey
) -> tuple[AuditCheckpoint | None, bool]:
    """The platform's own signature of a firm's head, as the periodic checkpointer makes it:
    the checkpoint (None for an empty chain), and whether it was signed just now. Not
    recorded on the trail: each entry saying so would move the head it signed."""
    return await _sign_head(session, firm_id, key, "system")


async def reanchor(
    session: AsyncSession, firm_id: uuid.UUID, key: SigningKey
) -> AuditCheckpoint | None:
    """Sign the head of a firm's chain that a revoked key signed past its last checkpoint of a
    trusted key (or alone), once the chain verifies from that checkpoint (or from its first
    entry): an operator's act, after checking it against exports kept from before the leak
    (its links check out however whoever held the key rewrote it). None for an empty chain."""
    checkpoint, _ = await _sign_head(session, firm_id, key, "operator:reanchor", reanchor=True)
    return checkpoint


async def list_checkpoints(
    session: AsyncSession, actor: Actor, first: int, before_seq: int | None
) -> list[AuditCheckpoint]:
    """The firm's checkpoints, newest first (admins): every key's at each of its ``first``
    newest signed seqs below ``before_seq``, so a page ends between seqs, never within one.
    Unpaged, the list grew by one an hour for good (the periodic checkpointer), into answers
    of megabytes."""
    actor.require(Role.ADMIN)
    if not 1 <= first <= MAX_CHECKPOINT_SEQS:
        raise field_error("first", f"Ask for 1 to {MAX_CHECKPOINT_SEQS}.")
    mine = AuditCheckpoint.firm_id == actor.firm_id
    below = AuditCheckpoint.seq < before_seq if before_seq is not None else true()
    seqs = (
        select(AuditCheckpoint.seq)
        .where(mine, below)
        .group_by(AuditCheckpoint.seq)
        .order_by(AuditCheckpoint.seq.desc())
        .limit(first)
    )
    rows = await session.execute(
        select(AuditCheckpoint)
        .where(mine, AuditCheckpoint.seq.in_(seqs.scalar_subquery()))
        .order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.signed_at, AuditCheckpoint.id)
    )
    return list(rows.scalars())


async def checkpoint_due_firms(sessions: async_sessionmaker[AsyncSession], key: SigningKey) -> int:
    """Sign every firm whose chain moved since its last checkpoint; returns how many."""
    async with checkpointer_transaction(sessions) as session:
        heads = await calls.chain_heads(session, key.revoked)
    signed = 0
    for head in heads:
        if head.head_seq is not None and head.head_seq != head.checkpoint_seq:
            try:
                async with tenant_transaction(sessions, head.firm_id) as session:
                    _, created = await sign_head(session, head.firm_id, key)
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
