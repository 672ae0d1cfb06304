"""Counterparties: the firm's appointed representatives, introducers, insurers and outsourcers.

Any member may read; admins create, change and archive. Every change is a chained audit entry
in the same transaction. RLS confines every statement here to the actor's firm, so another
firm's counterparty is simply not found. Cover status is derived on read from the latest
submitted PI cover declaration, never stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app import idempotency, pagination
from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, Role
from app.counterparties.cover import (
    COVERS_ALL,
    PERIOD_END,
    PERIOD_START,
    ConfirmedPolicy,
    CoverStatus,
    cover_from,
    policy_of,
)
from app.counterparties.schemas import CounterpartyCreate, CounterpartyUpdate
from app.db.models import Counterparty, Declaration
from app.errors import BadUserInput, NotFound, field_error

MAX_PAGE = 100
MAX_SEARCH = 200
PI_COVER_KEY = "pi_cover"
TARGET = "counterparty"


async def get_counterparty(
    session: AsyncSession, actor: Actor, counterparty_id: uuid.UUID
) -> Counterparty:
    """One of the firm's counterparties, archived or not (RLS hides every other firm's)."""
    counterparty = await session.get(Counterparty, counterparty_id)
    if counterparty is None:
        raise NotFound("Counterparty not found.")
    return counterparty


async def _locked(session: AsyncSession, counterparty_id: uuid.UUID) -> Counterparty:
    # Row lock: two concurrent changes to one counterparty apply (and are audited) in turn; read
    # afresh, or a copy this request loaded earlier would audit stale values as "from".
    query = (
        select(Counterparty)
        .where(Counterparty.id == counterparty_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    counterparty = (await session.execute(query)).scalar_one_or_none()
    if counterparty is None:
        raise NotFound("Counterparty not found.")
    return counterparty


async def create_counterparty(
    session: AsyncSession, actor: Actor, data: CounterpartyCreate
) -> Counterparty:
    """Add a counterparty (admins) and record ``counterparty.created`` with its details. A retry
    with the same idempotency key returns the first one and writes nothing."""
    actor.require(Role.ADMIN)
    first = await idempotency.replay(
        session, actor, data.idempotency_key, "createCounterparty", data
    )
    if first is not None:
        return await get_counterparty(session, actor, uuid.UUID(first["id"]))
    now = datetime.now(UTC)
    values = data.model_dump(mode="json", exclude={"idempotency_key"})
    counterparty = Counterparty(
        id=uuid.uuid4(),
        firm_id=actor.firm_id,
        created_at=now,
        updated_at=now,
        archived_at=None,
        **values,
    )
    session.add(counterparty)
    await session.flush()
    await chain.record(session, actor, Action.COUNTERPARTY_CREATED, TARGET, counterparty.id, values)
    result = {"id": str(counterparty.id)}
    await idempotency.remember(
        session, actor, data.idempotency_key, "createCounterparty", data, result
    )
    return counterparty


async def update_counterparty(
    session: AsyncSession, actor: Actor, counterparty_id: uuid.UUID, update: CounterpartyUpdate
) -> Counterparty:
    """Change the fields the caller sent (admins) and record ``counterparty.updated`` with each
    changed field's old and new value; a request that changes nothing records nothing."""
    actor.require(Role.ADMIN)
    counterparty = await _locked(session, counterparty_id)
    sent = update.model_dump(mode="json", include=update.model_fields_set)
    changes: dict[str, Any] = {}
    for field in sorted(sent):
        old, new = getattr(counterparty, field), sent[field]
        if old != new:
            changes[field] = {"from": old, "to": new}
            setattr(counterparty, field, new)
    if changes:
        counterparty.updated_at = datetime.now(UTC)
        await session.flush()
        await chain.record(
            session,
            actor,
            Action.COUNTERPARTY_UPDATED,
            TARGET,
            counterparty.id,
            {"changes": changes},
        )
    return counterparty


async def archive_counterparty(
    session: AsyncSession, actor: Actor, counterparty_id: uuid.UUID
) -> Counterparty:
    """Hide a counterparty from the default list (admins); its history stays. Archiving one
    that is already archived is refused, so the trail holds one archive entry per archive."""
    actor.require(Role.ADMIN)
    counterparty = await _locked(session, counterparty_id)
    if counterparty.archived_at is not None:
        raise BadUserInput("This counterparty is already archived.")
    now = datetime.now(UTC)
    counterparty.archived_at = now
    counterparty.updated_at = now
    await session.flush()
    await chain.record(
        session,
        actor,
        Action.COUNTERPARTY_ARCHIVED,
        TARGET,
        counterparty.id,
        {"name": counterparty.name},
    )
    return counterparty


def encode_cursor(counterparty: Counterparty) -> str:
    """An opaque position in the list: the (name, id) the list is ordered by."""
    return pagination.encode(counterparty.name, counterparty.id)


async def list_counterparties(
    session: AsyncSession,
    actor: Actor,
    *,
    search: str | None = None,
    include_archived: bool = False,
    first: int = 20,
    after: str | None = None,
) -> tuple[list[Counterparty], bool]:
    """A page of the firm's counterparties ordered by name (case-insensitively, then id), and
    whether more follow. ``search`` matches name, FRN or contact email, ignoring case."""
    if not 1 <= first <= MAX_PAGE:
        raise field_error("first", f"Ask for 1 to {MAX_PAGE} counterparties at a time.")
    sort_key = func.lower(Counterparty.name)
    query = select(Counterparty).order_by(sort_key, Counterparty.id)
    if not include_archived:
        query = query.where(Counterparty.archived_at.is_(None))
    text = (search or "").strip()
    if len(text) > MAX_SEARCH or "\x00" in text:
        raise field_error("search", f"Search for at most {MAX_SEARCH} characters, without NUL.")
    if text:
        pattern = pagination.like(text)
        query = query.where(
            or_(
                Counterparty.name.ilike(pattern, escape="\\"),
                Counterparty.frn.ilike(pattern, escape="\\"),
                Counterparty.contact_email.ilike(pattern, escape="\\"),
            )
        )
    if after is not None:
        name, ident = pagination.decode(after)
        # lower() on both sides in SQL, so the cursor compares exactly as the ORDER BY sorts.
        query = query.where(tuple_(sort_key, Counterparty.id) > tuple_(func.lower(name), ident))
    rows = list((await session.execute(query.limit(first + 1))).scalars())
    return rows[:first], len(rows) > first


async def cover_statuses(
    session: AsyncSession,
    actor: Actor,
    counterparty_ids: list[uuid.UUID],
    today: date,
    window_days: int,
) -> dict[uuid.UUID, CoverStatus]:
    """Each counterparty's cover status on ``today``, from the policies its submitted PI cover
    declarations confirm, newest first (``cover.cover_from``), in one statement for all of them
    (a page's DataLoader batch). A counterparty with no such declaration, or one not visible to
    the actor, is unknown."""
    policies: dict[uuid.UUID, list[ConfirmedPolicy]] = {ident: [] for ident in counterparty_ids}
    if counterparty_ids:
        keys = (PERIOD_START, PERIOD_END, COVERS_ALL)
        query = select(Declaration.counterparty_id, *(Declaration.answers[key] for key in keys))
        query = query.where(*_confirming(counterparty_ids)).order_by(
            Declaration.submitted_at.desc().nulls_last(), Declaration.id.desc()
        )
        for counterparty_id, *values in (await session.execute(query)).all():
            policy = policy_of(dict(zip(keys, values, strict=True)))
            if policy is not None:
                policies[counterparty_id].append(policy)
    return {ident: cover_from(policies[ident], today, window_days) for ident in counterparty_ids}


def _confirming(counterparty_ids: list[uuid.UUID]) -> tuple[Any, ...]:
    """The submitted PI cover declarations of ``counterparty_ids``, their cover read from."""
    return (
        Declaration.counterparty_id.in_(counterparty_ids),
        Declaration.status == "submitted",
        Declaration.template_snapshot["key"].astext == PI_COVER_KEY,
    )


async def cover_confirmations(
    session: AsyncSession, counterparty_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The ids of the declarations ``cover_statuses`` reads ``counterparty_ids``' cover from: a
    pack checks each against its receipt before it prints the cover they give, reading them a
    few at a time (every one of them, whatever its date, may be where the cover comes from)."""
    if not counterparty_ids:
        return []
    query = select(Declaration.id).where(*_confirming(counterparty_ids)).order_by(Declaration.id)
    return list((await session.execute(query)).scalars())


async def counterparties_by_ids(
    session: AsyncSession, actor: Actor, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Counterparty]:
    """The visible counterparties among ``ids``, in one query (for DataLoaders)."""
    rows = await session.execute(select(Counterparty).where(Counterparty.id.in_(ids)))
    return {counterparty.id: counterparty for counterparty in rows.scalars()}
