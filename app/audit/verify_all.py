"""Operators' view of the audit trail (owner role), for the CLI: verify and export chains."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Collection, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import checkpoints
from app.audit.chain import Verification, verify
from app.audit.export import export_lines
from app.audit.signing import SigningKey
from app.audit.witness import INFO, Witness, log, open_witness
from app.db.engine import create_engine, session_factory
from app.db.models import AuditCheckpoint, AuditEntry, Firm
from app.db.tenant import tenant_transaction, transaction
from app.errors import AuditChainBroken


class UnknownFirm(LookupError):
    """A command named a firm that does not exist (an empty answer would read as all clear)."""


async def _firm_ids(
    session: AsyncSession, firm_id: uuid.UUID | None, told: Collection[uuid.UUID] = ()
) -> list[uuid.UUID]:
    """Every firm's id in order, or just ``firm_id``'s; raises UnknownFirm for a firm not found.
    The firms, and every firm the audit log holds a chain of: a row-level policy the owner
    added on ``firms`` could hide a firm there (0027 says so of the checkpointer), and the
    command would report all clear without its chain; the log's own policies are sealed. And
    every firm whose chain the witness was ``told`` of: a firm deleted whole, with its chain,
    is a chain that ends before what was written."""
    firms = select(Firm.id.label("id"))
    chains = select(AuditEntry.firm_id.label("id")).where(AuditEntry.firm_id.is_not(None))
    if firm_id is not None:
        firms, chains = firms.where(Firm.id == firm_id), chains.where(AuditEntry.firm_id == firm_id)
    listed = union(firms, chains).subquery()
    query = select(listed.c.id).order_by(listed.c.id)
    found = set((await session.execute(query)).scalars())
    found |= {told_of for told_of in told if firm_id in (None, told_of)}
    firm_ids = sorted(found)
    if firm_id is not None and not firm_ids:
        raise UnknownFirm(f"no firm {firm_id}")
    return firm_ids


async def verify_firms(
    owner_url: str,
    firm_id: uuid.UUID | None = None,
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    platform: bool = False,
    revoked: Collection[str] = (),
    revoked_keys: Mapping[str, Ed25519PublicKey] | None = None,
    seen: Witness | None = None,
) -> list[tuple[uuid.UUID | None, Verification]]:
    """Each firm's verification in firm id order (and the platform chain's, as None), each held
    to what ``seen``, the app's witness, was told of it, if given; the owner lists firms (and
    the witness's), then reads each chain in that firm's tenant context. The owner's policies let
    it read every firm's rows there too: what keeps each chain to its firm is the queries'
    own firm filters (tests/audit/test_export.py holds the export's)."""
    engine = create_engine(owner_url, pool_size=2)
    sessions = session_factory(engine, None if seen is None else {INFO: seen})
    try:
        told = [] if seen is None else await _told_firms(seen)
        async with transaction(sessions) as session:
            firm_ids = await _firm_ids(session, firm_id, told)
        results: list[tuple[uuid.UUID | None, Verification]] = []
        for fid in firm_ids:
            async with tenant_transaction(sessions, fid) as session:
                verified = await verify(
                    session, fid, keys, revoked=revoked, revoked_keys=revoked_keys
                )
                results.append((fid, verified))
        if platform:
            async with transaction(sessions) as session:
                results.append((None, await verify(session, None)))
        return results
    finally:
        await engine.dispose()


async def export_firm(owner_url: str, firm_id: uuid.UUID, key: SigningKey) -> AsyncIterator[str]:
    """One firm's export, streamed, as the owner in that firm's tenant context (which, for
    the owner, restricts nothing: the export's queries filter by firm)."""
    engine = create_engine(owner_url, pool_size=1)
    try:
        async with tenant_transaction(session_factory(engine), firm_id) as session:
            await _firm_ids(session, firm_id)
            async for line in export_lines(session, firm_id, key):
                yield line
    finally:
        await engine.dispose()


async def reanchor_firms(
    owner_url: str, key: SigningKey, firm_id: uuid.UUID | None = None
) -> list[tuple[uuid.UUID, AuditCheckpoint | AuditChainBroken | None]]:
    """Re-anchor ``firm_id``'s chain, or every chain a revoked key signed past its last
    checkpoint of a trusted key: each firm's new checkpoint (None for an empty chain), or why
    it was not signed."""
    engine = create_engine(owner_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            firm_ids = await _firm_ids(session, firm_id)
        results: list[tuple[uuid.UUID, AuditCheckpoint | AuditChainBroken | None]] = []
        for fid in firm_ids:
            try:
                async with tenant_transaction(sessions, fid) as session:
                    if firm_id is None and not await _waits_for_operator(session, fid, key):
                        continue
                    results.append((fid, await checkpoints.reanchor(session, fid, key)))
            except AuditChainBroken as broken:
                results.append((fid, broken))
        return results
    finally:
        await engine.dispose()


async def _waits_for_operator(session: AsyncSession, firm_id: uuid.UUID, key: SigningKey) -> bool:
    """Whether a revoked key signed the firm's chain past its last checkpoint of a trusted key
    (or at all, with none), which the checkpointer then leaves unsigned."""
    last = await checkpoints.newest(session, firm_id, key)
    return await checkpoints.revoked_signed_since(session, firm_id, key, last)


async def _told_firms(seen: Witness) -> list[uuid.UUID]:
    """The firms whose chains the witness was told of; none if it cannot be read (logged, as
    verification leaves its check out then)."""
    try:
        names = await seen.chains()
    except Exception:
        log.warning("the audit witness could not be read", exc_info=True)
        return []
    firms = []
    for name in names:
        with contextlib.suppress(ValueError):  # the platform's
            firms.append(uuid.UUID(name))
    return firms


def shared_witness(storage_uri: str, prefix: str) -> Witness | None:
    """The servers' witness, for a command run apart from them: None where they keep it in
    their own process (``memory://``), out of this one's reach. ValueError for a URI the Redis
    client refuses, saying so without the URI."""
    if storage_uri.startswith("memory:"):
        return None
    try:
        return open_witness(storage_uri, prefix)
    except Exception:  # the client's message may print the URI, password and all
        message = "COVERPROOF_RATE_LIMIT_STORAGE cannot be read as a storage URI (not printed)."
        raise ValueError(message) from None
