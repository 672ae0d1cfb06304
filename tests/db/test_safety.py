"""The server refuses to start on a role that could bypass row-level security."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.safety import (
    AUDIT_WRITES,
    UnsafeDatabase,
    check_runtime_role,
    runtime_problems,
)
from app.main import create_app
from tests.conftest import Database, make_settings, started


async def test_the_app_role_passes(app_engine: AsyncEngine) -> None:
    await check_runtime_role(app_engine)


async def test_a_superuser_is_refused(superuser_engine: AsyncEngine) -> None:
    with pytest.raises(UnsafeDatabase, match="superuser"):
        await check_runtime_role(superuser_engine)


async def test_the_table_owner_is_refused(owner_engine: AsyncEngine) -> None:
    with pytest.raises(UnsafeDatabase, match="owns"):
        await check_runtime_role(owner_engine)


async def test_the_server_does_not_start_as_superuser(database: Database, tmp_path: object) -> None:
    app = create_app(make_settings(database, tmp_path, database_url=database.superuser_url))  # type: ignore[arg-type]
    with pytest.raises(UnsafeDatabase, match="Refusing to start"):
        async for _ in started(app):
            pass


@pytest.mark.parametrize("role", ["coverproof_owner", "coverproof_app"])
async def test_the_audit_trail_is_changeable_by_no_role_of_ours(
    owner_engine: AsyncEngine, role: str
) -> None:
    async with owner_engine.connect() as conn:
        assert (await conn.execute(AUDIT_WRITES, {"role": role})).scalars().all() == []


async def test_an_owner_that_may_change_the_audit_trail_is_refused(
    superuser_engine: AsyncEngine,
) -> None:
    """Even through a role it inherits from, as a managed provider's admin role may. (Granted
    in a transaction that is rolled back: roles are the whole cluster's.)"""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("grant pg_write_all_data to coverproof_owner"))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert problems[-1] == (
        "coverproof_owner may change the audit trail: audit_checkpoints DELETE, "
        "audit_checkpoints UPDATE, audit_log DELETE, audit_log UPDATE"
    )


async def test_a_column_grant_counts_as_a_way_to_change_the_audit_trail(
    superuser_engine: AsyncEngine,
) -> None:
    """UPDATE on one column is UPDATE enough. (Granted in a transaction rolled back.)"""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("grant update (action) on audit_log to coverproof_app"))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert "coverproof_app may change the audit trail: audit_log UPDATE" in problems


async def test_an_owner_of_the_database_is_refused(superuser_engine: AsyncEngine) -> None:
    """It could drop the database, audit trail and all. (Given in a transaction rolled back.)"""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text(f'alter database "{name}" owner to coverproof_owner'))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert "coverproof_owner owns the database (it could drop it, audit trail and all)" in problems


@pytest.mark.parametrize(
    ("attributes", "refusal"),
    [
        ("bypassrls", "the database role has BYPASSRLS"),
        ("in role coverproof_owner", "the database role is a member of coverproof_owner"),
    ],
)
async def test_a_role_that_bypasses_rls_or_inherits_the_owner_is_refused(
    superuser_engine: AsyncEngine, attributes: str, refusal: str
) -> None:
    """Neither is a superuser nor owns a table, and either would read every firm's rows. (Made
    in a transaction that is rolled back: roles are the whole cluster's.)"""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text(f"create role coverproof_probe {attributes}"))
        await conn.execute(text("set local role coverproof_probe"))
        problems = await runtime_problems(conn)
        await tx.rollback()
    assert refusal in problems
    assert not any("superuser" in p or "owns" in p for p in problems), problems
