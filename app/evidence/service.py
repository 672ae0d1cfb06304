"""Evidence packs: generate and retry (members and up); read, list and download (viewers).

A pack is made within one request and its one transaction: the row is written (pending), the
content is collected (in a read-only snapshot transaction of its own, so that every part of
the pack shows one moment), the PDF is rendered off the event loop and stored, and the row
becomes ready, recorded by ``evidence_pack.requested`` and ``evidence_pack.generated`` (with
the PDF's SHA-256, size and page count). Since the request's transaction is only ever
committed whole, no other request sees a pending pack.

A collect (a response that no longer matches its hash), render or storage failure must
survive the request, so it is not raised: the row becomes failed with a reason,
``evidence_pack.failed`` is recorded, nothing is left in storage, and the failed pack is
returned as an ordinary result that commits. Scope problems are raised before rendering and
roll everything back. A stored PDF whose row is then rolled back (the request fails after it,
or PostgreSQL refuses its commit) is deleted again (``on_rollback``); one whose commit's outcome
is unknown is left to the sweep (app/evidence/sweep.py). RLS confines every statement here to
the actor's firm: another firm's pack is simply not found, whatever its id.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import idempotency, pagination
from app.audit import chain
from app.audit.actions import Action
from app.audit.signing import SigningKey
from app.auth.actor import Actor, ActorType, Role
from app.db import calls
from app.db.models import EvidencePack
from app.db.tenant import on_rollback, snapshot_transaction
from app.errors import BadUserInput, NotFound, RateLimited, field_error
from app.evidence import download, sweep
from app.evidence.collect import collect
from app.evidence.render import RenderError, TooLarge, render
from app.evidence.schemas import PackCreate
from app.evidence.signature import pack_signer
from app.evidence.storage import Storage, StorageError
from app.ratelimit.policies import Policy
from app.ratelimit.request import Limits

log = logging.getLogger("coverproof.evidence")

MAX_PAGE = 100
# A duplicate of a pack being made is refused for this long (most packs take seconds).
BEING_MADE_RETRY_SECONDS = 10
TARGET = "evidence_pack"


class PackFileAltered(StorageError):
    """The stored file no longer hashes to the SHA-256 recorded when it was made."""


@dataclass(frozen=True)
class EvidenceEnv:
    """What pack services need beyond the session and actor."""

    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    signing_key: SigningKey
    secret_key: str
    public_url: str
    cover_window_days: int
    limiter: Limits


async def get_pack(session: AsyncSession, actor: Actor, pack_id: uuid.UUID) -> EvidencePack:
    """One of the firm's packs (RLS hides every other firm's)."""
    actor.require(Role.VIEWER)
    pack = await session.get(EvidencePack, pack_id)
    if pack is None:
        raise NotFound("Evidence pack not found.")
    return pack


def encode_cursor(pack: EvidencePack) -> str:
    return pagination.encode(pack.created_at.isoformat(), pack.id)


async def list_packs(
    session: AsyncSession, actor: Actor, first: int, after: str | None
) -> tuple[list[EvidencePack], bool]:
    """A page of the firm's packs, newest first, and whether more follow."""
    actor.require(Role.VIEWER)
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} evidence packs at a time.")
    query = select(EvidencePack).order_by(EvidencePack.created_at.desc(), EvidencePack.id.desc())
    if after is not None:
        created, ident = pagination.decode_time(after)
        query = query.where(
            tuple_(EvidencePack.created_at, EvidencePack.id) < tuple_(created, ident)
        )
    rows = list((await session.execute(query.limit(first + 1))).scalars())
    return rows[:first], len(rows) > first


# The advisory-lock space of packs being retried ("PRTY"; by key: ``idempotency.hold``).
_RETRIED = 0x50525459


def _short(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big", signed=True)


async def _not_being_made(session: AsyncSession, space: int, key: int) -> None:
    """Hold the lock of a pack being made until the transaction ends, or refuse at once if
    another request holds it: waiting, a duplicate (the same idempotency key, the same failed
    pack retried) held a connection of the pool for the whole render, before the limits on
    packs under way applied, and a few of them took the pool from every firm's requests."""
    if not await calls.try_pair_lock(session, space, key):
        message = "This evidence pack is being made; ask again shortly."
        raise RateLimited(message, retryAfter=BEING_MADE_RETRY_SECONDS)


async def generate_pack(
    session: AsyncSession, actor: Actor, env: EvidenceEnv, data: PackCreate
) -> EvidencePack:
    """Make a pack for ``data``'s scope (members and up); returns it ready or failed. A retry
    with the same idempotency key returns the first pack and makes nothing more."""
    actor.require(Role.MEMBER)
    key, operation = data.idempotency_key, "generateEvidencePack"
    first = await idempotency.replay(session, actor, key, operation, data, lock=False)
    if first is not None:
        return await get_pack(session, actor, uuid.UUID(first["id"]))
    if key is not None:
        await idempotency.hold(session, actor, key)
    pack = EvidencePack(
        id=uuid.uuid4(),
        firm_id=actor.firm_id,
        title=data.title,
        scope=data.scope(),
        status="pending",
        created_by=actor.id if actor.type is ActorType.USER else None,
        created_at=datetime.now(UTC),
    )
    try:
        async with session.begin_nested():
            session.add(pack)
            await session.flush()
            await idempotency.remember(session, actor, key, operation, data, {"id": str(pack.id)})
    except IntegrityError:
        # A concurrent attempt with this key committed after this one looked for it, before
        # it took the key's lock (the firm's lock is not taken for a render): answer with its
        # pack.
        first = await idempotency.replay(session, actor, key, operation, data, lock=False)
        if first is None:
            raise
        return await get_pack(session, actor, uuid.UUID(first["id"]))
    return await _produce(session, actor, env, pack, data, retry=False)


async def retry_pack(
    session: AsyncSession, actor: Actor, env: EvidenceEnv, pack_id: uuid.UUID
) -> EvidencePack:
    """Make a failed pack again, from the same scope (members and up)."""
    actor.require(Role.MEMBER)
    # Looked up (under RLS) before its lock is tried, and the lock keyed by the firm too: tried
    # first, another firm's id being retried was refused as being made, where any other id was
    # not found, and told whoever sent it whose pack it was, and that it was being made.
    if await session.scalar(select(EvidencePack.id).where(EvidencePack.id == pack_id)) is None:
        raise NotFound("Evidence pack not found.")
    await _not_being_made(session, _RETRIED, _short(actor.firm_id.bytes + pack_id.bytes))
    query = (
        select(EvidencePack)
        .where(EvidencePack.id == pack_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)  # a copy loaded earlier may be stale
    )
    pack = (await session.execute(query)).scalar_one_or_none()
    if pack is None:
        raise NotFound("Evidence pack not found.")
    if pack.status != "failed":
        raise BadUserInput(f"Only a failed pack can be retried; this one is {pack.status}.")
    pack.status, pack.failure_reason, pack.completed_at = "pending", None, None
    await session.flush()
    data = PackCreate.from_scope(pack.title, pack.scope)
    return await _produce(session, actor, env, pack, data, retry=True)


async def _produce(
    session: AsyncSession,
    actor: Actor,
    env: EvidenceEnv,
    pack: EvidencePack,
    data: PackCreate,
    *,
    retry: bool,
) -> EvidencePack:
    # Every audit append takes the firm's chain lock until commit. Rendering takes seconds, so
    # nothing is appended before it: the firm's other requests are never held up by a render.
    # The content is read in one snapshot of the firm, so the pack shows one moment throughout
    # (a response submitted while it is read is in every part of it or in none).
    if chain.holds_lock(session):
        # A mutation before it in the operation appended to the chain, whose lock is held
        # until the commit: rendering now would hold every other write of the firm for it.
        message = "Make an evidence pack in an operation of its own, or before its other fields."
        raise BadUserInput(message)
    if env.storage.admitted.locked():
        raise RateLimited("Evidence packs are being made; try again in a minute.", retryAfter=60)
    if env.storage.firm_busy(actor.firm_id):
        message = "Another evidence pack of your firm is being made; try again in a minute."
        raise RateLimited(message, retryAfter=60)
    async with env.storage.admit(actor.firm_id) as place:
        # Collecting verifies the firm's whole chain, as verifyAuditChain does: counted with
        # it, per caller, before it starts (a pack of an empty period cost nothing else, and a
        # member, who may not verify the chain, read it as often as mutations allowed).
        whole_chain_reader = f"{actor.type.value}:{actor.id}"
        await env.limiter.hit(Policy.WHOLE_CHAIN_READS_PER_CALLER, whole_chain_reader)
        # Read before the snapshot begins, which sees each entry it was told of (chain.verify).
        written = await chain.witnessed(session, actor.firm_id)
        try:
            async with snapshot_transaction(env.sessions, actor.firm_id, actor.id) as snapshot:
                content = await collect(
                    snapshot, actor, pack.id, data, env.signing_key, env.cover_window_days, written
                )
        except RenderError as error:  # content the pack must not present, or too much of it
            # Past the content limit is the render's refusal, wherever it is counted.
            stage = "render" if isinstance(error, TooLarge) else "collect"
            return await _fail(session, actor, pack, str(error), stage, retry)
        try:
            slots = env.storage.render_slots
            signer = pack_signer(env.signing_key)
            rendered = await render(slots, content, signer, place.hold())
        except RenderError as error:
            return await _fail(session, actor, pack, str(error), "render", retry)
        key = env.storage.new_key(actor.firm_id, pack.id)
        await sweep.storing(session, pack.id)  # until this transaction ends, however long
        try:
            version = await env.storage.put(key, rendered.pdf, rendered.sha256)
        except StorageError as error:
            return await _fail(session, actor, pack, str(error), "store", retry)
    # Lost with the row if the request's transaction is rolled back: this one failing below,
    # the request's other mutation failing, or its commit refused.
    on_rollback(session, lambda: env.storage.delete(key, version))
    pack.status, pack.storage_key, pack.completed_at = "ready", key, datetime.now(UTC)
    pack.storage_version = version
    pack.sha256, pack.size_bytes = rendered.sha256, len(rendered.pdf)
    pack.page_count = rendered.page_count
    await session.flush()
    await _requested(session, actor, pack, retry)
    details = {
        "sha256": rendered.sha256.hex(),
        "size_bytes": len(rendered.pdf),
        "page_count": rendered.page_count,
        "declarations": len(content.declarations),
        "storage": env.storage.kind,
    }
    await chain.record(session, actor, Action.EVIDENCE_PACK_GENERATED, TARGET, pack.id, details)
    return pack


async def _requested(session: AsyncSession, actor: Actor, pack: EvidencePack, retry: bool) -> None:
    details = {"title": pack.title, "scope": pack.scope, "retry": retry}
    await chain.record(session, actor, Action.EVIDENCE_PACK_REQUESTED, TARGET, pack.id, details)


async def _fail(
    session: AsyncSession,
    actor: Actor,
    pack: EvidencePack,
    reason: str,
    stage: str,
    retry: bool,
) -> EvidencePack:
    pack.status, pack.failure_reason = "failed", reason[:1000]
    pack.storage_key, pack.sha256, pack.size_bytes, pack.page_count = None, None, None, None
    pack.storage_version = None
    pack.completed_at = datetime.now(UTC)
    await session.flush()
    await _requested(session, actor, pack, retry)
    details = {"reason": pack.failure_reason, "stage": stage}
    await chain.record(session, actor, Action.EVIDENCE_PACK_FAILED, TARGET, pack.id, details)
    return pack


async def download_url(
    session: AsyncSession, actor: Actor, env: EvidenceEnv, pack_id: uuid.UUID
) -> str | None:
    """Where to download a ready pack for the next five minutes (viewers), or None while it
    is not ready: a signed link to the app's own route, whatever the store. The route serves
    the file only to a session or key of the pack's firm, checks it against its recorded
    SHA-256, and records each download as it serves it. (A presigned object-storage URL would
    be a bearer link anyone holding it could use, unchecked, and its audit entry would record
    the link's issue, not a download.)"""
    pack = await get_pack(session, actor, pack_id)
    if pack.status != "ready" or pack.storage_key is None:
        return None
    return download.link(env.public_url, env.secret_key, actor.firm_id, pack.id)


async def read_download(
    session: AsyncSession, actor: Actor, storage: Storage, pack_id: uuid.UUID
) -> tuple[EvidencePack, bytes]:
    """A ready pack's bytes for the download route, checked against the SHA-256 recorded when
    it was made (an altered file is refused and logged, never served). Read before anything
    takes the firm's chain lock (``record_download``): every write of the firm would wait for
    the store."""
    pack = await get_pack(session, actor, pack_id)
    if pack.status != "ready" or pack.storage_key is None or pack.sha256 is None:
        raise NotFound("Evidence pack not found.")
    data = await storage.read(pack.storage_key, pack.storage_version)
    if hashlib.sha256(data).digest() != pack.sha256:
        log.error("evidence pack %s: the stored file differs from its recorded SHA-256", pack.id)
        raise PackFileAltered("The stored pack does not match its recorded SHA-256.")
    return pack, data


async def record_download(session: AsyncSession, actor: Actor, pack: EvidencePack) -> None:
    """Audit a download ``read_download`` read."""
    assert pack.sha256 is not None  # a ready pack's
    details = {"via": "signed_link", "sha256": pack.sha256.hex()}
    await chain.record(session, actor, Action.EVIDENCE_PACK_DOWNLOADED, TARGET, pack.id, details)
