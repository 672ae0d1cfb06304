"""``auth_bind_session``: one call resolves a cookie and binds its firm, for that transaction
only, and binds nothing for a session that is not live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.sessions import token_hash
from app.db import calls
from tests.conftest import Database
from tests.factories import Members

IDLE = int(timedelta(minutes=30).total_seconds())
TENANT = "select current_setting('app.firm_id', true), current_setting('app.actor_id', true)"


@pytest.fixture
async def conn(database: Database) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database.app_url)  # the unprivileged app role
    yield connection
    await connection.close()


async def test_a_live_session_binds_its_firm_and_user_for_the_transaction_only(
    conn: asyncpg.Connection, members: Members
) -> None:
    member = await members.create()
    other = await members.create()
    async with conn.transaction():
        identity = await calls.bind_session(conn, token_hash(member.cookie), IDLE)
        assert identity is not None
        assert (identity["firm_id"], identity["user_id"]) == (member.firm_id, member.user_id)
        assert tuple(await conn.fetchrow(TENANT)) == (str(member.firm_id), str(member.user_id))
        firms = await conn.fetch("select id from firms")
        assert [row["id"] for row in firms] == [member.firm_id]  # RLS, as the app role
        assert other.firm_id not in {row["id"] for row in firms}
    assert tuple(await conn.fetchrow(TENANT)) in {("", ""), (None, None)}
    assert await conn.fetchval("select count(*) from firms") == 0


async def test_a_dead_session_binds_nothing(
    conn: asyncpg.Connection, members: Members, superuser_engine: AsyncEngine
) -> None:
    member = await members.create()
    async with superuser_engine.begin() as su:
        await su.execute(
            text("update sessions set revoked_at = now() where user_id = :u"),
            {"u": member.user_id},
        )
    for cookie in (member.cookie, "not-a-session"):
        async with conn.transaction():
            assert await calls.bind_session(conn, token_hash(cookie), IDLE) is None
            assert tuple(await conn.fetchrow(TENANT)) in {("", ""), (None, None)}
            assert await conn.fetchval("select count(*) from firms") == 0


async def test_an_idle_session_binds_nothing(
    conn: asyncpg.Connection, members: Members, superuser_engine: AsyncEngine
) -> None:
    member = await members.create()
    async with superuser_engine.begin() as su:
        await su.execute(
            text(
                "update sessions set last_seen_at = now() - interval '31 minutes' "
                "where user_id = :u"
            ),
            {"u": member.user_id},
        )
    async with conn.transaction():
        assert await calls.bind_session(conn, token_hash(member.cookie), IDLE) is None
        assert await conn.fetchval("select count(*) from firms") == 0
