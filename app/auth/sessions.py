"""Server-side sessions behind the ``__Host-cp_session`` cookie.

The cookie carries 256 random bits; the database stores only their SHA-256, so a copy of the
database cannot be replayed as a cookie. The lookup runs before the firm is known, through the
narrow SECURITY DEFINER function ``auth_session_lookup`` that returns ids and the role only.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.actor import Role
from app.db import calls
from app.db.models import Session
from app.errors import NotFound

COOKIE_NAME = "__Host-cp_session"
_NOT_A_MEMBER = "42501"  # insufficient_privilege, as auth_start_session refuses a non-member


@dataclass(frozen=True)
class SessionIdentity:
    session_id: uuid.UUID
    user_id: uuid.UUID
    firm_id: uuid.UUID
    role: Role
    email_verified: bool


MAX_TOKEN_CHARS = 100


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def lookup(session: AsyncSession, token: str, idle: timedelta) -> SessionIdentity | None:
    """The live session for a cookie value: not revoked, not expired, not idle, still a member."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await calls.session_lookup(session, token_hash(token), int(idle.total_seconds()))
    if row is None:
        return None
    return SessionIdentity(
        row.session_id, row.user_id, row.firm_id, Role(row.role), row.email_verified
    )


async def create(
    session: AsyncSession,
    user_id: uuid.UUID,
    firm_id: uuid.UUID,
    lifetime: timedelta,
    ip: str | None = None,
    user_agent: str | None = None,
    ends_by: datetime | None = None,
) -> str:
    """Store a new session for the bound user, in a firm they belong to (the bound one, or
    another they are switching to), and return the cookie value, which is never stored. It
    lasts ``lifetime``, and no longer than ``ends_by`` (the session it replaces, on a switch)."""
    token = new_token()
    expires_at = datetime.now(UTC) + lifetime
    values = {
        "id": uuid.uuid4(),
        "token_hash": token_hash(token),
        "user_id": user_id,
        "firm_id": firm_id,
        "expires_at": expires_at if ends_by is None else min(expires_at, ends_by),
        "ip": ip,
        "user_agent": (user_agent or "")[:512] or None,
    }
    try:
        await calls.start_session(session, values)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _NOT_A_MEMBER:
            # Removed from the firm since the caller checked (a race): not our fault.
            raise NotFound("Firm not found.") from None
        raise
    return token


async def revoke_all(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Revoke every live session of the bound user, in every firm (through the one function
    that may cross firms: RLS shows a user only their sessions in the bound firm); the firm of
    each session revoked."""
    return await calls.end_my_sessions(session, user_id)


async def revoke_in_firm(session: AsyncSession, user_id: uuid.UUID, firm_id: uuid.UUID) -> int:
    """Revoke the user's live sessions in one firm (RLS: only the actor's own); how many."""
    result = await session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.firm_id == firm_id, Session.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def revoke(
    session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> datetime | None:
    """Revoke one of the user's sessions; when it would have ended (a switch carries that over
    to the session replacing it), or None when there is no such live session."""
    ended: datetime | None = await session.scalar(
        update(Session)
        .where(Session.id == session_id, Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(Session.expires_at)
    )
    return ended
