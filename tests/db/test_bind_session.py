"""``auth_bind_session``: one call resolves a cookie and binds its firm, for that transaction
only, and binds nothing for a session that is not live."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

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


@pytest.mark.parametrize(
    "change",
    [
        "update sessions set expires_at = now() - interval '1 second' where user_id = :u",
        "delete from memberships where user_id = :u",  # removed from the session's firm
    ],
)
async def test_an_expired_session_or_a_removed_member_binds_nothing(
    conn: asyncpg.Connection, members: Members, superuser_engine: AsyncEngine, change: str
) -> None:
    member = await members.create()
    async with conn.transaction():
        assert await calls.bind_session(conn, token_hash(member.cookie), IDLE) is not None
    async with superuser_engine.begin() as su:
        await su.execute(text(change), {"u": member.user_id})
    async with conn.transaction():
        assert await calls.bind_session(conn, token_hash(member.cookie), IDLE) is None
        assert tuple(await conn.fetchrow(TENANT)) in {("", ""), (None, None)}
        assert await conn.fetchval("select count(*) from firms") == 0


KEY = (
    "insert into api_keys (id, firm_id, name, secret_hash, display_prefix, scopes, "
    "last_used_at, expires_at, revoked_at) values (:id, :firm, 'k', :hash, 'cp_', "
    "array['declarations:read'], :used, :expires, :revoked)"
)


MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("used", "expires", "revoked", "binds"),
    [
        (-MINUTE, None, None, True),
        (-MINUTE, MINUTE, None, True),
        (None, None, None, False),  # never used: its first use is the normal path's to audit
        (-MINUTE, -MINUTE, None, False),  # expired
        (-MINUTE, None, -MINUTE, False),  # revoked
    ],
)
async def test_api_key_bind_binds_a_live_used_key_for_the_transaction_only(
    conn: asyncpg.Connection,
    members: Members,
    superuser_engine: AsyncEngine,
    used: timedelta | None,
    expires: timedelta | None,
    revoked: timedelta | None,
    binds: bool,
) -> None:
    member, other = await members.create(), await members.create()
    secret, key_id, now = secrets.token_bytes(32), uuid.uuid4(), datetime.now(UTC)
    at = {
        k: None if v is None else now + v
        for k, v in zip(("used", "expires", "revoked"), (used, expires, revoked), strict=True)
    }
    async with superuser_engine.begin() as su:
        await su.execute(
            text(KEY),
            {"id": key_id, "firm": member.firm_id, "hash": hashlib.sha256(secret).digest(), **at},
        )
    async with conn.transaction():
        bound = await calls.bind_api_key(conn, hashlib.sha256(secret).digest())
        firms = [row["id"] for row in await conn.fetch("select id from firms")]
        if binds:
            assert bound is not None
            assert (bound["key_id"], bound["firm_id"]) == (key_id, member.firm_id)
            assert tuple(await conn.fetchrow(TENANT)) == (str(member.firm_id), str(key_id))
            assert firms == [member.firm_id]  # RLS, as the app role: not the other firm
            assert other.firm_id not in firms
        else:
            assert bound is None
            assert firms == []
    assert tuple(await conn.fetchrow(TENANT)) in {("", ""), (None, None)}
    assert await conn.fetchval("select count(*) from firms") == 0
