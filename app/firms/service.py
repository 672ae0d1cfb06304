"""Firm services: read and change the caller's own firm."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.db.models import Firm
from app.errors import NotFound
from app.firms.schemas import FirmUpdate


async def get_firm(session: AsyncSession, actor: Actor) -> Firm:
    """The actor's firm; RLS makes every other firm invisible here anyway."""
    firm = await session.get(Firm, actor.firm_id)
    if firm is None:
        raise NotFound("Firm not found.")
    return firm


async def update_firm(session: AsyncSession, actor: Actor, update: FirmUpdate) -> Firm:
    """Change the firm's details (owners and admins) and record ``firm.updated`` with each
    changed field's old and new value."""
    actor.require(Role.ADMIN)
    # Locked first: concurrent renames queue here, so each records the name it really changed.
    locked = await session.execute(
        select(Firm)
        .where(Firm.id == actor.firm_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    firm = locked.scalar_one_or_none()
    if firm is None:
        raise NotFound("Firm not found.")
    changes = {}
    for field in sorted(update.model_fields_set):
        old, new = getattr(firm, field), getattr(update, field)
        if old != new:
            changes[field] = {"from": old, "to": new}
            setattr(firm, field, new)
    await session.flush()
    if changes:  # nothing changed, nothing to record (the trail is kept for ever)
        details = {"changes": changes}
        await chain.record(session, actor, Action.FIRM_UPDATED, "firm", firm.id, details)
    return firm
