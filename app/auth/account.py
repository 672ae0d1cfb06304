"""The signed-in user's own sessions and firms: sign out, list, revoke, switch firm."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain
from app.audit.actions import Action
from app.auth import sessions, tokens
from app.auth.actor import Actor
from app.db import calls
from app.db.models import Session, User
from app.db.tenant import bind_tenant
from app.errors import NotFound


async def sign_out(session: AsyncSession, actor: Actor) -> None:
    """End the current session (recorded once, should a copy of its cookie race this one)."""
    if actor.session_id is not None and await sessions.revoke(session, actor.id, actor.session_id):
        await chain.record(session, actor, Action.SIGNED_OUT, "session", actor.session_id)


async def end_replaced_session(session: AsyncSession, actor: Actor) -> None:
    """End the session a browser presented when it signed in again, in a transaction of the
    old session's own (its firm and user are bound here): the browser's cookie now names the
    new one, and a copy of the old must not go on working. Recorded as a sign-out in the old
    session's firm, with the address the sign-in came from (the one that presented the old
    cookie) and nothing else of it: it may be another user's, in another firm. A session
    already ended records nothing."""
    await bind_tenant(session, actor.firm_id, actor.id)
    if actor.session_id is not None and await sessions.revoke(session, actor.id, actor.session_id):
        details = {"replaced": True}
        await chain.record(
            session, actor, Action.SIGNED_OUT, "session", actor.session_id, details, as_member=False
        )


async def sign_out_everywhere(session: AsyncSession, actor: Actor) -> int:
    """End every session of the user, in every firm; returns how many were live. The firm's
    audit trail counts only its own: its readers may not learn of the user's other firms."""
    await tokens.spend_sign_in_links(session, actor.id)  # first: see service.reset_password
    firms = await sessions.revoke_all(session, actor.id)
    count = firms.count(actor.firm_id)
    # The account's remedy: a removal from this firm meanwhile must not undo its end of the
    # user's sessions in their other firms.
    await chain.record(
        session,
        actor,
        Action.SIGNED_OUT_EVERYWHERE,
        "user",
        actor.id,
        {"sessions": count},
        as_member=False,
    )
    return len(firms)


async def list_sessions(session: AsyncSession, actor: Actor, idle: timedelta) -> list[Session]:
    """The user's live sessions in this firm, most recently used first (a session in another
    of their firms is that firm's row: seen there, once switched to it)."""
    now = datetime.now(UTC)
    rows = await session.execute(
        select(Session)
        .where(
            Session.user_id == actor.id,
            Session.firm_id == actor.firm_id,
            Session.revoked_at.is_(None),
            Session.expires_at > now,
            Session.last_seen_at > now - idle,
        )
        .order_by(Session.last_seen_at.desc())
    )
    return list(rows.scalars())


async def revoke_session(session: AsyncSession, actor: Actor, session_id: uuid.UUID) -> None:
    """End one of the user's own sessions (another device)."""
    if not await sessions.revoke(session, actor.id, session_id):
        raise NotFound("Session not found.")
    await chain.record(session, actor, Action.SESSION_REVOKED, "session", session_id)


async def my_firms(session: AsyncSession, actor: Actor) -> list[Row[tuple[uuid.UUID, str, str]]]:
    """Every firm the user belongs to, with their role in each."""
    return await calls.my_firms(session)


async def switch_firm(
    session: AsyncSession,
    actor: Actor,
    firm_id: uuid.UUID,
    lifetime: timedelta,
    user_agent: str | None,
) -> str:
    """Re-issue the session for another firm the user belongs to; returns the new cookie."""
    if firm_id not in {row.firm_id for row in await calls.my_firms(session)}:
        raise NotFound("Firm not found.")
    # The new session ends when the one it replaces would have: switching (back and forth,
    # or to the same firm) must not keep a session alive past its lifetime.
    if actor.session_id is None:
        raise NotFound("Session not found.")  # a firm is switched from a session
    # The user's row first, as a reset and signing out everywhere take it before they end
    # every session: either waits for this switch, and then ends the session it makes too;
    # or this waits for it, and finds its session ended. Otherwise the new session, made
    # after their end of every session had looked, outlived it (a stolen cookie kept).
    held = select(User.id).where(User.id == actor.id).with_for_update(key_share=True)
    await session.execute(held)
    ends_by = await sessions.revoke(session, actor.id, actor.session_id)
    if ends_by is None:
        raise NotFound("Session not found.")  # ended meanwhile: nothing to carry its end over
    # Recorded in the firm left, naming the session ended: the firm switched to is not this
    # firm's business, and its readers may not learn which other firms the user belongs to.
    await chain.record(session, actor, Action.FIRM_SWITCHED, "session", actor.session_id)
    return await sessions.create(
        session, actor.id, firm_id, lifetime, actor.ip, user_agent, ends_by=ends_by
    )
