"""The audit trail as a product: browse, verify and export the caller's firm chain (admins)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.audit.actions import Action
from app.audit.export import export_lines
from app.audit.signing import SigningKey
from app.auth.actor import Actor, ActorType, Role
from app.db.models import ApiKey, AuditEntry, Declaration, User
from app.errors import BadUserInput, field_error

MAX_PAGE = 100
MAX_EXPORT_LINES = 200_000
# The export is built in the request's memory, and an entry may be some 20 kB (a counterparty's
# notes, before and after): bounded in bytes too. Longer trails go through the CLI, streamed.
MAX_EXPORT_BYTES = 64 * 2**20
# Longer than any name, id or address an entry holds: a filter past it can match nothing.
MAX_FILTER = 400


@dataclass(frozen=True)
class EntryFilter:
    action: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


async def list_entries(
    session: AsyncSession, actor: Actor, filters: EntryFilter, first: int, before_seq: int | None
) -> tuple[list[AuditEntry], bool]:
    """A page of the firm's entries, newest first, and whether older ones follow."""
    actor.require(Role.ADMIN)
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE}.")
    query = select(AuditEntry).where(AuditEntry.firm_id == actor.firm_id)
    for name, column, value in (
        ("action", AuditEntry.action, filters.action),
        ("actorId", AuditEntry.actor_id, filters.actor_id),
        ("targetType", AuditEntry.target_type, filters.target_type),
        ("targetId", AuditEntry.target_id, filters.target_id),
    ):
        if value is None:
            continue
        if len(value) > MAX_FILTER:
            raise field_error(f"filter.{name}", f"Send at most {MAX_FILTER} characters.")
        query = query.where(column == value)
    if filters.start is not None:
        query = query.where(AuditEntry.occurred_at >= filters.start)
    if filters.end is not None:
        query = query.where(AuditEntry.occurred_at < filters.end)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    rows = list(
        (await session.execute(query.order_by(AuditEntry.seq.desc()).limit(first + 1))).scalars()
    )
    return rows[:first], len(rows) > first


async def actor_names(
    session: AsyncSession, actor: Actor, entries: list[AuditEntry]
) -> dict[tuple[str, str], str]:
    """Display names for the entries' actors, in a query per kind: users (by email), recipients
    (by name) and partner API keys (by name and public prefix, revoked ones too). An actor no
    longer visible (a removed member) keeps only its id."""
    ids: dict[str, set[uuid.UUID]] = {
        ActorType.USER: set(),
        ActorType.RECIPIENT: set(),
        ActorType.API_KEY: set(),
    }
    for entry in entries:
        if entry.actor_type in ids and entry.actor_id:
            ids[entry.actor_type].add(uuid.UUID(entry.actor_id))
    names: dict[tuple[str, str], str] = {}
    if ids[ActorType.USER]:
        users = await session.execute(
            select(User.id, User.email).where(User.id.in_(ids[ActorType.USER]))
        )
        names.update({(ActorType.USER, str(i)): email for i, email in users.all()})
    if ids[ActorType.RECIPIENT]:
        recipients = await session.execute(
            select(Declaration.id, Declaration.recipient_name).where(
                Declaration.id.in_(ids[ActorType.RECIPIENT])
            )
        )
        names.update({(ActorType.RECIPIENT, str(i)): name for i, name in recipients.all()})
    if ids[ActorType.API_KEY]:
        keys = await session.execute(
            select(ApiKey.id, ApiKey.name, ApiKey.display_prefix).where(
                ApiKey.id.in_(ids[ActorType.API_KEY])
            )
        )
        names.update(
            {(ActorType.API_KEY, str(i)): f"{name} ({prefix})" for i, name, prefix in keys.all()}
        )
    return names


async def verify_chain(session: AsyncSession, actor: Actor, key: SigningKey) -> chain.Verification:
    """Verify the firm's chain from its first entry, and every signed checkpoint (admins)."""
    actor.require(Role.ADMIN)
    return await chain.verify(
        session, actor.firm_id, key.trusted, revoked=key.revoked, revoked_keys=key.revoked_keys
    )


async def export_log(
    session: AsyncSession,
    actor: Actor,
    key: SigningKey,
    start: datetime | None,
    end: datetime | None,
) -> str:
    """The firm's trail as JSON Lines (admins); very long trails go through the CLI. The export
    is recorded (``audit.exported``), after it and so outside it, with its dates, the head it
    reaches and its SHA-256 (the signed digest), so the trail says who took which export."""
    actor.require(Role.ADMIN)
    lines, size = [], 0
    async for line in export_lines(session, actor.firm_id, key, start, end):
        lines.append(line)
        size += len(line)
        if len(lines) > MAX_EXPORT_LINES or size > MAX_EXPORT_BYTES:
            raise BadUserInput("Too large for one request; narrow the dates or use the CLI.")
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    details = {
        "from": header["from"],
        "to": header["to"],
        "head_seq": header["head_seq"],
        "sha256": trailer["sha256"],
    }
    await chain.record(session, actor, Action.AUDIT_EXPORTED, details=details)
    return "".join(lines)
