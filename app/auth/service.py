"""Authentication services."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.actor import Actor
from app.db.models import Firm, User
from app.errors import NotFound


async def get_viewer(session: AsyncSession, actor: Actor) -> tuple[User, Firm]:
    """The signed-in user and their active firm."""
    user = await session.get(User, actor.id)
    firm = await session.get(Firm, actor.firm_id)
    if user is None or firm is None:
        raise NotFound()
    return user, firm
