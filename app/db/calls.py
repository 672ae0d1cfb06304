"""The raw SQL the app sends outside the ORM: database functions and locks, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_SESSION_LOOKUP = text(
    "select session_id, user_id, firm_id, role, email_verified "
    "from auth_session_lookup(:token_hash, :idle_seconds)"
)
_XACT_LOCK = text("select pg_advisory_xact_lock(:key)")


async def session_lookup(
    session: AsyncSession, token_hash: bytes, idle_seconds: int
) -> Row[Any] | None:
    """Call the SECURITY DEFINER lookup that resolves a cookie hash before the tenant is known."""
    result = await session.execute(
        _SESSION_LOOKUP, {"token_hash": token_hash, "idle_seconds": idle_seconds}
    )
    return result.one_or_none()


async def transaction_lock(session: AsyncSession, key: int) -> None:
    """Take a transaction-scoped advisory lock; it is released at commit or rollback."""
    await session.execute(_XACT_LOCK, {"key": key})


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("select 1"))
