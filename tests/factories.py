"""Test data made directly in the database as coverproof_owner, which FORCE RLS subjects to
the same tenant policies: every firm's rows are written inside that firm's tenant context."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth import sessions
from app.auth.actor import Role
from app.db.models import Firm, Membership, User
from app.db.tenant import tenant_transaction


@dataclass(frozen=True)
class Member:
    firm_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    role: Role
    cookie: str

    @property
    def headers(self) -> dict[str, str]:
        return {"cookie": f"{sessions.COOKIE_NAME}={self.cookie}"}


class Members:
    def __init__(self, owner_sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = owner_sessions

    async def create(
        self,
        role: Role = Role.OWNER,
        *,
        firm_id: uuid.UUID | None = None,
        verified: bool = True,
        name: str = "Acme Advisers Ltd",
        lifetime: timedelta = timedelta(hours=12),
    ) -> Member:
        """A user, (a firm,) a membership and a live session; returns the cookie value."""
        new_firm = firm_id is None
        firm_id = firm_id or uuid.uuid4()
        user_id = uuid.uuid4()
        email = f"{user_id.hex[:12]}@example.test"
        now = datetime.now(UTC)
        async with tenant_transaction(self.sessions, firm_id, user_id) as session:
            if new_firm:
                await session.execute(
                    insert(Firm).values(id=firm_id, name=name, frn="123456", created_at=now)
                )
            await session.execute(
                insert(User).values(
                    id=user_id,
                    email=email,
                    email_verified_at=now if verified else None,
                    created_at=now,
                )
            )
            await session.execute(
                insert(Membership).values(
                    firm_id=firm_id, user_id=user_id, role=role.value, created_at=now
                )
            )
            cookie = await sessions.create(session, user_id, firm_id, lifetime)
        return Member(firm_id, user_id, email, role, cookie)


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    member: Member | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """POST one operation as a browser app would; returns the decoded JSON body."""
    headers = {**(member.headers if member else {}), **kwargs.pop("headers", {})}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers, **kwargs
    )
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# Backends of this test run's database only: another run on the same server (a second
# checkout's tests) waits for locks of its own, and seen here it would end the wait too soon.
_WAITING = text(
    "select count(*) from pg_locks l join pg_stat_activity a using (pid) "
    "where not l.granted and a.datname = current_database()"
)


async def until_lock_waited(superuser: AsyncEngine) -> None:
    """Until some backend waits for a lock (the request under test, on a row a test holds)."""
    await until_locks_waited(superuser, 1)


async def until_locks_waited(superuser: AsyncEngine, waits: int) -> None:
    """Until backends wait for ``waits`` locks in all."""
    for _ in range(200):
        async with superuser.connect() as conn:
            if await conn.scalar(_WAITING) >= waits:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {waits} waits for a lock came")


async def tables_holding(engine: AsyncEngine, value: str) -> list[str]:
    """The tables with a row that holds ``value`` anywhere in its text, searching every table
    of every schema but PostgreSQL's own (as superuser, so RLS hides none). A ``bytea`` column
    reads as hex in a row's text, so the value's hex is looked for too."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "select format('%I.%I', table_schema, table_name) "
                    "from information_schema.tables where table_type = 'BASE TABLE' "
                    "and table_schema not in ('pg_catalog', 'information_schema')"
                )
            )
        ).scalars()
        holding = []
        for table in tables:  # names from the catalogue, quoted by format()
            found = await conn.scalar(
                text(f"select count(*) from {table} r where r::text like :p or r::text like :hex"),
                {"p": f"%{value}%", "hex": f"%{value.encode().hex()}%"},
            )
            if found:
                holding.append(table)
    return holding


async def user_and_firm(engine: AsyncEngine, email: str) -> tuple[str, str]:
    """The user with this address and their (one) firm, as the database holds them."""
    async with engine.connect() as conn:
        user_id, firm_id = (
            await conn.execute(
                text(
                    "select u.id::text, m.firm_id::text from users u "
                    "join memberships m on m.user_id = u.id where u.email = :e"
                ),
                {"e": email},
            )
        ).one()
    return user_id, firm_id
