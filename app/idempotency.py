"""Idempotent creates: a client may send an ``idempotencyKey`` with a mutation that creates
things; a retry with the same key (after a timeout, when it cannot know whether the first
attempt committed) returns the first result and writes nothing more.

The key is scoped to the firm and the actor. Checking and remembering run under the firm's
chain lock, which every write of the firm takes anyway, so two concurrent retries cannot both
create.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.auth.actor import Actor
from app.db.models import IdempotencyKey
from app.errors import BadUserInput

Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


async def replay(
    session: AsyncSession, actor: Actor, key: str | None, operation: str, *, lock: bool = True
) -> dict[str, Any] | None:
    """The first result remembered under ``key`` for this operation, or None (first attempt).
    ``lock=False`` for long operations (a PDF render) that must not hold the firm's lock: a
    concurrent duplicate then fails on the key's primary key instead of waiting."""
    if key is None:
        return None
    if lock:
        await chain.lock_firm(session, actor.firm_id)
    row = (
        await session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.firm_id == actor.firm_id,
                IdempotencyKey.actor_id == str(actor.id),
                IdempotencyKey.key == key,
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.operation != operation:
        raise BadUserInput(
            fields=[
                {
                    "field": "idempotencyKey",
                    "message": "This key was used for another kind of request.",
                }
            ]
        )
    return row.result


async def remember(
    session: AsyncSession, actor: Actor, key: str | None, operation: str, result: dict[str, Any]
) -> None:
    """Keep the result of a first attempt, in the same transaction as what it created."""
    if key is None:
        return
    await session.execute(
        insert(IdempotencyKey).values(
            firm_id=actor.firm_id,
            actor_id=str(actor.id),
            key=key,
            operation=operation,
            result=result,
            created_at=datetime.now(UTC),
        )
    )
