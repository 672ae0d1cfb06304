"""Append to and verify the per-firm audit chain.

Entry n stores seq = n, prev_hash = hash of entry n-1 (32 zero bytes for the first), its canonical
bytes, and hash = SHA-256(prev_hash || canonical). Appends for one firm are serialised by a
transaction-scoped advisory lock, so concurrent transactions never fork the chain; a trigger in
the database re-checks every append against the head.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import EllipsisType
from typing import Any, NamedTuple, cast

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import canonical, witness
from app.audit.actions import Action
from app.audit.signing import checkpoint_payload, verify_signature
from app.auth.actor import Actor, ActorType, Role
from app.db import calls
from app.db.models import AuditCheckpoint, AuditEntry
from app.db.tenant import in_snapshot, on_commit
from app.errors import Forbidden, Unauthenticated

_TABLE = cast(Table, AuditEntry.__table__)
SORT = orjson.OPT_SORT_KEYS
# Built once: SQLAlchemy memoises a statement object's cache key, whereas an insert rebuilt
# with its values is traversed again on every append.
_APPEND = insert(_TABLE)


class Head(NamedTuple):
    seq: int
    hash: bytes


def _lock_key(firm_id: uuid.UUID) -> int:
    return int.from_bytes(firm_id.bytes[:8], "big", signed=True)


# Set in a session's info once its transaction has taken a firm's chain lock.
_HOLDS_LOCK = "coverproof.chain_locked"


def holds_lock(session: AsyncSession) -> bool:
    """Whether this session's transaction has taken a firm's chain lock (held until it ends)."""
    return bool(session.info.get(_HOLDS_LOCK))


async def locked_head(
    session: AsyncSession, firm_id: uuid.UUID, member: Actor | None = None
) -> Head | None:
    """The firm's chain head (seq, hash), or None, read after taking the firm's lock so it
    cannot move until the transaction ends. ``member``: a user acting as a member of the firm,
    refused if they no longer are one, or no longer hold the role their request was allowed
    with (removed or demoted while it ran: that change held this lock until it committed)."""
    session.info[_HOLDS_LOCK] = True
    acting = None if member is None else member.id
    found = await calls.locked_chain_head(session, firm_id, _lock_key(firm_id), acting)
    return _head_for(found, member)


def _head_for(found: calls.LockedHead, member: Actor | None) -> Head | None:
    """The head ``calls.locked_chain_head`` read, once ``member`` (if any) is found still to
    hold their role (0035)."""
    seq, digest, role = found
    if member is not None:
        if role is None:
            raise Unauthenticated()
        if Role(role).rank < member.role.rank:
            raise Forbidden("Your role in this firm changed while this ran: send it again.")
    return None if seq is None or digest is None else Head(seq, digest)


def _member(actor: Actor, as_member: bool) -> Actor | None:
    return actor if as_member and actor.type is ActorType.USER else None


async def lock_firm(session: AsyncSession, firm_id: uuid.UUID) -> None:
    """Take the firm's chain lock now (it is re-entrant within the transaction). Services that
    lock several rows of one firm take it first, so concurrent ones queue instead of
    deadlocking."""
    session.info[_HOLDS_LOCK] = True
    await calls.transaction_lock(session, _lock_key(firm_id))


def _entry(
    firm_id: uuid.UUID | None,
    head: Any,
    action: Action,
    actor_type: ActorType,
    actor_id: object | None,
    ip: str | None,
    target_type: str | None,
    target_id: object | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """The column values of the next entry after ``head`` (None for the first)."""
    seq, prev_hash = (head.seq + 1, head.hash) if head else (1, canonical.GENESIS)
    fields: dict[str, Any] = {
        "seq": seq,
        "occurred_at": datetime.now(UTC),
        "actor_type": actor_type.value,
        "actor_id": None if actor_id is None else str(actor_id),
        "action": action.value,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "details": details or {},
        "ip": ip,
    }
    body = canonical.encode(
        canonical.entry_body(firm_id=None if firm_id is None else str(firm_id), **fields)
    )
    return {
        "id": uuid.uuid4(),
        "firm_id": firm_id,
        **fields,
        "prev_hash": prev_hash,
        "hash": canonical.chain_hash(prev_hash, body),
        "canonical": body,
    }


async def record(
    session: AsyncSession,
    actor: Actor,
    action: Action,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
    *,
    as_member: bool = True,
) -> dict[str, Any]:
    """Append one entry to the actor's firm chain, inside the caller's transaction. A user
    records as a member of the firm (``as_member``), refused once removed; an entry about a
    user that is not their act as a member (a refused link of theirs, their removal of
    themselves) is recorded whatever their membership. A partner's key is refused once revoked
    (or expired): a revocation holds this lock until it commits, as a removal does."""
    firm_id = actor.firm_id
    head = await locked_head(session, firm_id, _member(actor, as_member))
    if actor.type is ActorType.API_KEY and not await calls.api_key_live(session, actor.id):
        raise Unauthenticated("The API key was revoked while this ran.")
    entry = _entry(
        firm_id, head, action, actor.type, actor.id, actor.ip, target_type, target_id, details
    )
    await session.execute(_APPEND, entry)
    _for_witness(session, firm_id, entry)
    return entry


# Set in a session's info: what its transaction appended to each chain, by chain name.
_APPENDED = "coverproof.appended"


def _for_witness(session: AsyncSession, firm_id: uuid.UUID | None, entry: dict[str, Any]) -> None:
    """Leave ``entry`` for the app's witness (``app.audit.witness``), told once it commits."""
    seen = session.info.get(witness.INFO)
    if seen is None:
        return
    told: dict[str, witness.Told] | None = session.info.get(_APPENDED)
    if told is None:
        told = session.info[_APPENDED] = {}
        on_commit(session, lambda: witness.tell(seen, told))
    chain = witness.chain_of(firm_id)
    first = told.get(chain) or witness.Told(entry["seq"], entry["prev_hash"], 0, b"")
    told[chain] = first._replace(seq=entry["seq"], hash=entry["hash"])


async def record_on(
    conn: asyncpg.Connection,
    actor: Actor,
    action: Action,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``record`` on a plain asyncpg connection whose transaction is bound to the actor's firm
    (the write lane's): the same lock, head, entry and insert."""
    firm_id = actor.firm_id
    member = _member(actor, True)
    acting = None if member is None else member.id
    found = await calls.lane_locked_chain_head(conn, firm_id, _lock_key(firm_id), acting)
    head = _head_for(found, member)
    if actor.type is ActorType.API_KEY and not await calls.lane_api_key_live(conn, actor.id):
        raise Unauthenticated("The API key was revoked while this ran.")
    entry = _entry(
        firm_id, head, action, actor.type, actor.id, actor.ip, target_type, target_id, details
    )
    await calls.insert_row(conn, _TABLE, entry)
    return entry


async def record_platform(
    session: AsyncSession,
    action: Action,
    *,
    actor_type: ActorType = ActorType.SYSTEM,
    actor_id: object | None = None,
    ip: str | None = None,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append to the platform chain, for events that belong to no firm (an unknown email)."""
    head = await calls.platform_chain_head(session)
    entry = _entry(None, head, action, actor_type, actor_id, ip, target_type, target_id, details)
    entry["details"] = canonical.encode(entry["details"]).decode()
    entry.pop("firm_id")
    await calls.platform_chain_append(session, entry)
    _for_witness(session, None, entry)


@dataclass(frozen=True)
class RevokedConflict:
    """A checkpoint naming a revoked key that disagrees with the chain. ``signed``: whether
    that key made its signature (the key was used to sign another history), or not (the row
    is not the key's: someone wrote it); None when the key's public half is not configured."""

    checkpoint_id: uuid.UUID
    seq: int
    key_id: str
    signed: bool | None


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: bytes
    checkpoints_checked: int = 0
    failure_seq: int | None = None
    failure_reason: str | None = None
    failure_checkpoint: uuid.UUID | None = None
    # Checkpoints naming a revoked key that disagree with the chain (another hash at their
    # seq, or a seq beyond its head): they vouch for nothing, but may say the key was used.
    revoked_conflicts: tuple[RevokedConflict, ...] = ()


def _body_of(row: Mapping[Any, Any], details: Any) -> dict[str, Any]:
    return canonical.entry_body(
        firm_id=None if row["firm_id"] is None else str(row["firm_id"]),
        seq=row["seq"],
        occurred_at=row["occurred_at"],
        actor_type=row["actor_type"],
        actor_id=row["actor_id"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        details=details,
        ip=row["ip"],
    )


def canonical_of(row: Mapping[Any, Any]) -> bytes:
    """An entry's canonical bytes rebuilt from its stored fields (what the product shows)."""
    return canonical.encode(_body_of(row, row["details"]))


def _fields_agree(row: asyncpg.Record, firm: str | None) -> bool:
    """Whether a streamed entry of ``firm``'s chain has stored fields (as
    ``calls.chain_entries`` gives them, with ``details`` as its JSON text and ``occurred_at`` as
    its canonical text) that are exactly what its canonical bytes say. By position: by name
    costs more, once per entry verified."""
    seq, at, actor_type, actor_id, action, target_type, target_id, details, ip = row[:9]
    if at is None:
        return False  # a moment canonical text cannot hold, even were the bytes to say null
    fields, body = (seq, firm, at, actor_type, actor_id, action, target_type, target_id), row[11]
    try:
        parsed = orjson.loads(details)
        # orjson reads an integer beyond 64 bits, or a long decimal, as a float: bytes forged
        # to hold that float would match. Canonical bytes never hold one, so then compare
        # exactly, below.
        if not canonical.holds_float(parsed):
            written = canonical.written_body(*fields, parsed, ip)
            if orjson.dumps(written, option=SORT) == body:
                return True  # the same bytes (the usual case): nothing can differ
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    # Exactly, as the bytes were made: ...890 and ...891 beyond 64 bits differ, and a float
    # (never in canonical bytes) is a difference.
    try:
        return bool(
            canonical.encode(canonical.written_body(*fields, json.loads(details), ip)) == body
        )
    except (ValueError, TypeError):
        return False


def _problem(
    row: asyncpg.Record, expected_seq: int, prev_hash: bytes, firm: str | None
) -> str | None:
    seq, (stored_prev, digest, body) = row[0], row[9:12]
    if seq != expected_seq:
        return f"seq {seq} found where {expected_seq} was expected (entry missing or moved)"
    if stored_prev != prev_hash:
        return "prev_hash does not match the previous entry's hash"
    if not _fields_agree(row, firm):
        return "stored fields differ from the entry's canonical bytes"
    if canonical.chain_hash(stored_prev, body) != digest:
        return "hash does not match SHA-256(prev_hash || canonical)"
    return None


def _checkpoint_problem(
    cp: Any, row: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey] | None
) -> str | None:
    if cp.head_hash != row["hash"]:
        return (
            f"checkpoint {cp.id} signed a different hash at seq {cp.seq}: the chain was rewritten"
        )
    if keys is None:
        return None
    problem = signature_problem(cp, keys)
    return None if problem is None else f"checkpoint {cp.id} at seq {cp.seq} {problem}"


def _conflict(cp: Any, revoked_keys: Mapping[str, Ed25519PublicKey]) -> RevokedConflict:
    public = revoked_keys.get(cp.key_id)
    signed = None
    if public is not None:
        payload = checkpoint_payload(cp.firm_id, cp.seq, cp.head_hash, cp.signed_at)
        signed = verify_signature(public, payload, cp.signature)
    return RevokedConflict(cp.id, cp.seq, cp.key_id, signed)


def signature_problem(cp: Any, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """What is wrong with a checkpoint's signature, given the keys we trust (by key id), as
    the end of a sentence about it; None if one of them made it."""
    public = keys.get(cp.key_id)
    if public is None:
        return f"names key {cp.key_id}, not one of ours"
    payload = checkpoint_payload(cp.firm_id, cp.seq, cp.head_hash, cp.signed_at)
    if not verify_signature(public, payload, cp.signature):
        return "does not carry a valid signature"
    return None


async def head(session: AsyncSession, firm_id: uuid.UUID) -> Head | None:
    """The firm's chain head as it stands, without the lock (it may move at once)."""
    query = (
        select(AuditEntry.seq, AuditEntry.hash)
        .where(AuditEntry.firm_id == firm_id)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    )
    found = (await session.execute(query)).one_or_none()
    return None if found is None else Head(found.seq, found.hash)


async def _entries(
    session: AsyncSession, firm_id: uuid.UUID | None, after: int | None
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """A chain's entries in order, in batches, streamed on the session's own connection (its
    transaction, so its tenant and RLS) without the ORM's per-row work: memory stays flat
    however long the chain is."""
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    # A cursor needs a transaction; the caller's is open (the checkpoints were read in it).
    assert raw is not None  # a checked-out connection always has its driver's
    async with contextlib.aclosing(calls.chain_entries(raw, firm_id, after)) as batches:
        async for batch in batches:
            yield batch


def _broken(
    checked: int,
    prev_hash: bytes,
    matched: int,
    reason: str,
    checkpoint: uuid.UUID | None,
    conflicts: list[RevokedConflict],
) -> Verification:
    """A verification that failed at the entry after seq ``checked``."""
    return Verification(
        False,
        checked,
        checked,
        prev_hash,
        matched,
        checked + 1,
        reason,
        checkpoint,
        tuple(conflicts),
    )


def _unlike(row: asyncpg.Record, required: Mapping[int, bytes]) -> str | None:
    """Why the entry differs from the one the witness was told of at its seq, if it does."""
    expected = required.get(row[0])
    if expected is not None and row[10] != expected:
        return "hash differs from the one written: the chain was rewritten from here"
    return None


def _cut(
    written: witness.Kept | None,
    checked: int,
    prev_hash: bytes,
    matched: int,
    conflicts: list[RevokedConflict],
) -> Verification | None:
    """The failure of a chain verified to seq ``checked`` that no longer holds what the
    witness was told of: its newest entry, or (``diverged``) an entry a commit since showed
    gone."""
    if written is None:
        return None
    newest = max((run.seq for run in written.runs), default=0)
    if newest > checked:
        reason = f"the chain ends at seq {checked} but seq {newest} was written"
        return _broken(checked, prev_hash, matched, reason, None, conflicts)
    if written.diverged is not None:
        reason = f"entries were cut off or rewritten from seq {written.diverged} or before"
        failed = Verification(False, checked, checked, prev_hash, matched, written.diverged)
        return replace(failed, failure_reason=reason, revoked_conflicts=tuple(conflicts))
    return None


async def witnessed(session: AsyncSession, firm_id: uuid.UUID | None) -> witness.Kept | None:
    """What the app's witness keeps of the firm's chain, if anything. Unreadable, the check is
    left out (logged), as with no witness: verification does not wait on Redis's repair."""
    seen: witness.Witness | None = session.info.get(witness.INFO)
    if seen is None:
        return None
    try:
        return await seen.newest(witness.chain_of(firm_id))
    except Exception:
        witness.log.warning("the audit witness could not be read", exc_info=True)
        return None


async def verify(
    session: AsyncSession,
    firm_id: uuid.UUID | None,
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    seen: Callable[[asyncpg.Record], None] | None = None,
    since: Head | None = None,
    revoked: Collection[str] = (),
    revoked_keys: Mapping[str, Ed25519PublicKey] | None = None,
    signed_by: Mapping[str, Ed25519PublicKey] | None = None,
    written: witness.Kept | EllipsisType | None = ...,
) -> Verification:
    """Recompute the firm's chain from its first entry, streaming rows through a server-side
    cursor so memory stays flat however long the chain is, and check that every signed
    checkpoint still matches it (a rewritten or cut-off chain fails, naming the checkpoint)
    and, given ``keys`` (by key id), is signed by the key it names. ``seen`` is given each
    entry once it has checked out (as ``calls.chain_entries`` streams it: ``details`` as its
    JSON text), so a caller can rely on what the chain vouches for. From ``since`` (a firm's
    entry already trusted: a signed checkpoint's seq and hash), only the entries after it are
    checked, the first against its hash. Checkpoints signed by a ``revoked`` key (by id) vouch
    for nothing, so they are neither counted nor held against the chain; those that disagree
    with it are named in ``revoked_conflicts``, as evidence of what the key was used for: with
    the public halves of revoked keys still configured (``revoked_keys``, by key id), each says
    whether that key made its signature. Given ``signed_by`` (signing's view), a checkpoint
    none of those keys signed vouches for nothing either, as a revoked key's. The chain is held
    to what the app's witness keeps of it (``app.audit.witness``): ``written``, read before a
    snapshot's transaction began; read here by default."""
    checked, prev_hash = (since.seq, since.hash) if since else (0, canonical.GENESIS)
    matched = 0
    query = select(AuditCheckpoint).where(
        AuditCheckpoint.firm_id == firm_id, AuditCheckpoint.seq > checked
    )
    # Every checkpoint at a seq is checked (one per key may sign it).
    checkpoints: dict[int, list[Any]] = {}
    disowned: dict[int, list[Any]] = {}
    for found in (await session.execute(query.order_by(AuditCheckpoint.id))).scalars():
        vouches = found.key_id not in revoked and (
            signed_by is None or signature_problem(found, signed_by) is None
        )
        (checkpoints if vouches else disowned).setdefault(found.seq, []).append(found)
    conflicts: list[RevokedConflict] = []
    revoked_keys = revoked_keys or {}
    firm = None if firm_id is None else str(firm_id)
    if isinstance(written, EllipsisType):
        # Read before the entries: any it names committed before it was told, so is streamed;
        # but not in a snapshot, which may have begun before (its caller reads it first).
        written = None if in_snapshot(session) else await witnessed(session, firm_id)
    required = {} if written is None else written.required()
    after = checked if since else None  # from the start: every row of the chain, whatever its seq
    async with contextlib.aclosing(_entries(session, firm_id, after)) as batches:
        async for batch in batches:
            for row in batch:
                problem = _problem(row, checked + 1, prev_hash, firm) or _unlike(row, required)
                signed = checkpoints.get(row[0]) if problem is None and checkpoints else None
                cp: Any = None
                if signed:
                    for cp in signed:
                        problem = _checkpoint_problem(cp, row, keys)
                        if problem:
                            break
                        matched += 1
                if problem:
                    failed = cp.id if cp else None
                    return _broken(checked, prev_hash, matched, problem, failed, conflicts)
                if disowned and row[0] in disowned:
                    conflicts += [
                        _conflict(c, revoked_keys)
                        for c in disowned[row[0]]
                        if c.head_hash != row[10]
                    ]
                checked, prev_hash = row[0], row[10]
                if seen is not None:
                    seen(row)
    conflicts += [
        _conflict(c, revoked_keys)
        for seq, cps in sorted(disowned.items())
        if seq > checked
        for c in cps
    ]
    beyond = [cps[0] for seq, cps in sorted(checkpoints.items()) if seq > checked]
    if beyond:
        cp = beyond[0]
        reason = f"the chain ends at seq {checked} but checkpoint {cp.id} signed seq {cp.seq}"
        return _broken(checked, prev_hash, matched, reason, cp.id, conflicts)
    return _cut(written, checked, prev_hash, matched, conflicts) or Verification(
        True, checked, checked, prev_hash, matched, revoked_conflicts=tuple(conflicts)
    )
