"""Tenant isolation enforced by PostgreSQL itself, as the real unprivileged app role."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.actor import Role
from app.db.engine import create_engine, session_factory
from app.db.safety import UNPOLICED_TABLES
from app.db.tenant import (
    TenantAlreadyBound,
    bind_tenant,
    mail_sender_transaction,
    tenant_transaction,
    transaction,
)
from app.mail.outbox import enqueue
from tests.factories import Members

APP = Path(__file__).resolve().parents[2] / "app"
FIRM_TABLES = ["firms", "memberships", "sessions", "audit_log", "users"]


async def test_every_firm_table_is_forced_under_rls(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        assert (await conn.execute(UNPOLICED_TABLES)).scalars().all() == []
        tables = (
            (
                await conn.execute(
                    text(
                        "select c.relname from pg_class c "
                        "join pg_attribute a on a.attrelid = c.oid "
                        "where a.attname = 'firm_id' and c.relkind = 'r' "
                        "and c.relnamespace = 'public'::regnamespace"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert {"memberships", "sessions", "audit_log"} <= set(tables)


async def test_the_catalog_check_catches_a_table_that_forgets(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("create table forgetful (id int, firm_id uuid)"))
        assert (await conn.execute(UNPOLICED_TABLES)).scalars().all() == ["forgetful"]
        await tx.rollback()


@pytest.mark.parametrize("table", ["mail_outbox", "users", "sessions", "auth_tokens"])
async def test_the_catalog_check_covers_tables_without_a_firm_id(
    owner_engine: AsyncEngine, table: str
) -> None:
    """People's rows (users, their sessions and sign-in tokens, the mail sent to them) carry
    no firm_id, and are policed all the same."""
    async with owner_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text(f"alter table {table} no force row level security"))
        assert (await conn.execute(UNPOLICED_TABLES)).scalars().all() == [table]
        await tx.rollback()


async def test_another_tools_tables_are_not_ours_to_police(superuser_engine: AsyncEngine) -> None:
    """A table some other tool made in the schema (PostGIS's spatial_ref_sys, say) does not
    stop the server, unless it holds a firm_id."""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("create table their_lookup (id int)"))
        await conn.execute(text("create table their_firm_copy (firm_id uuid)"))
        assert (await conn.execute(UNPOLICED_TABLES)).scalars().all() == ["their_firm_copy"]
        await tx.rollback()


async def test_only_tables_of_no_one_are_left_unpoliced(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        unforced = await conn.execute(
            text(
                "select relname from pg_class where relnamespace = 'public'::regnamespace "
                "and relkind in ('r', 'p') and not relforcerowsecurity order by 1"
            )
        )
        assert unforced.scalars().all() == ["alembic_version", "trusted_documents"]


async def test_queued_mail_is_seen_by_the_sender_alone(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """An outbox row names a recipient and, in its subject, the firm: no tenant (not even the
    firm that queued it) and no transaction without one reads or changes it."""
    a = await members.create()
    b = await members.create()
    to = f"{uuid.uuid4().hex[:12]}@example.test"
    async with tenant_transaction(app_sessions, a.firm_id, a.user_id) as session:
        await enqueue(
            session, b"k" * 32, to=to, subject="Firm A asks you", text="t", html="<p>h</p>"
        )
    count = text("select count(*) from mail_outbox where to_address = :to")
    mark = text("update mail_outbox set subject = 'Changed' where to_address = :to")
    for firm, user in [(a.firm_id, a.user_id), (b.firm_id, b.user_id), (None, None)]:
        async with tenant_transaction(app_sessions, firm, user) as session:
            assert (await session.execute(count, {"to": to})).scalar_one() == 0
            assert (await session.execute(mark, {"to": to})).rowcount == 0  # type: ignore[attr-defined]
    async with mail_sender_transaction(app_sessions) as session:
        assert (await session.execute(count, {"to": to})).scalar_one() == 1
        for table in FIRM_TABLES:  # and the sender sees no firm's rows
            rows = (await session.execute(text(f"select count(*) from {table}"))).scalar_one()
            assert rows == 0, table
    async with superuser_engine.connect() as conn:
        subject = text("select subject from mail_outbox where to_address = :to")
        assert (await conn.execute(subject, {"to": to})).scalar_one() == "Firm A asks you"


async def test_without_a_tenant_every_table_is_empty_and_unwritable(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    await members.create()
    async with transaction(app_sessions) as session:
        for table in FIRM_TABLES:
            count = (await session.execute(text(f"select count(*) from {table}"))).scalar_one()
            assert count == 0, table
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with transaction(app_sessions) as session:
            await session.execute(
                text("insert into firms (id, name) values (:id, 'Sneaky Ltd')"),
                {"id": uuid.uuid4()},
            )


async def test_tenant_a_sees_and_writes_nothing_of_firm_b(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    a = await members.create()
    b = await members.create()
    await members.create(Role.VIEWER, firm_id=b.firm_id)
    async with tenant_transaction(app_sessions, a.firm_id, a.user_id) as session:
        for table, column in [("firms", "id"), ("memberships", "firm_id"), ("sessions", "firm_id")]:
            rows = await session.execute(
                text(f"select count(*) from {table} where {column} = :b"), {"b": b.firm_id}
            )
            assert rows.scalar_one() == 0, table
        users = await session.execute(text("select id from users"))
        assert set(users.scalars().all()) == {a.user_id}
        updated = await session.execute(
            text("update firms set name = 'Taken over' where id = :b"), {"b": b.firm_id}
        )
        assert updated.rowcount == 0  # type: ignore[attr-defined]
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with tenant_transaction(app_sessions, a.firm_id, a.user_id) as session:
            await session.execute(
                text("insert into memberships (firm_id, user_id, role) values (:b, :u, 'owner')"),
                {"b": b.firm_id, "u": a.user_id},
            )


async def test_the_tenant_dies_with_the_transaction_on_a_pooled_connection(
    database: object, members: Members
) -> None:
    a = await members.create()
    engine = create_engine(database.app_url, pool_size=1)  # type: ignore[attr-defined]
    sessions = session_factory(engine)
    try:
        async with tenant_transaction(sessions, a.firm_id, a.user_id) as session:
            pid = (await session.execute(text("select pg_backend_pid()"))).scalar_one()
            assert (await session.execute(text("select count(*) from firms"))).scalar_one() == 1
        async with transaction(sessions) as session:
            assert (await session.execute(text("select pg_backend_pid()"))).scalar_one() == pid
            setting = await session.execute(text("select current_setting('app.firm_id', true)"))
            assert setting.scalar_one() in ("", None)
            assert (await session.execute(text("select count(*) from firms"))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_a_transaction_binds_one_tenant_only(
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    firm = uuid.uuid4()
    async with tenant_transaction(app_sessions, firm) as session:
        await bind_tenant(session, firm, None)  # the same tenant again: allowed
        with pytest.raises(TenantAlreadyBound):
            await bind_tenant(session, uuid.uuid4(), None)


async def test_the_app_role_is_unprivileged_and_cannot_truncate(app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        role = (
            await conn.execute(
                text(
                    "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles "
                    "where rolname = current_user"
                )
            )
        ).one()
        assert tuple(role) == (False, False, False, False)
        truncatable = await conn.execute(
            text(
                "select relname from pg_class where relnamespace = 'public'::regnamespace "
                "and relkind = 'r' and has_table_privilege(current_user, oid, 'TRUNCATE')"
            )
        )
        assert truncatable.scalars().all() == []
        with pytest.raises(DBAPIError, match="permission denied"):
            await conn.execute(text("truncate firms"))


async def test_definer_functions_pin_search_path_and_views_run_as_invoker(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        unpinned = await conn.execute(
            text(
                "select proname from pg_proc where prosecdef "
                "and pronamespace = 'public'::regnamespace and not exists "
                "(select 1 from unnest(coalesce(proconfig, '{}')) c where c like 'search_path=%')"
            )
        )
        assert unpinned.scalars().all() == []
        definers = await conn.execute(
            text(
                "select count(*) from pg_proc "
                "where prosecdef and pronamespace = 'public'::regnamespace"
            )
        )
        assert definers.scalar_one() >= 1
        owner_views = await conn.execute(
            text(
                "select c.relname from pg_class c where c.relkind = 'v' "
                "and c.relnamespace = 'public'::regnamespace "
                "and not coalesce('security_invoker=true' = any(c.reloptions), false)"
            )
        )
        assert owner_views.scalars().all() == []


async def test_the_app_role_may_call_no_definer_function_the_app_does_not_call(
    owner_engine: AsyncEngine,
) -> None:
    """Each function that runs as the owner and the app role may call is a way past RLS: one
    left behind when the app stopped calling it (as 0022 found auth_note_failed_sign_in) is
    such a way that no code needs and no test exercises any more. Called means by the app's
    code, or by a function the app role may call (api_key_bind calls api_key_peek)."""
    async with owner_engine.connect() as conn:
        callable_ = (
            await conn.execute(
                text(
                    "select proname, prosecdef, prosrc from pg_proc "
                    "where pronamespace = 'public'::regnamespace "
                    "and prorettype <> 'trigger'::regtype "
                    "and has_function_privilege('coverproof_app', oid, 'execute')"
                )
            )
        ).all()
    definers = {name for name, definer, _ in callable_ if definer}
    callers = [path.read_text() for path in APP.rglob("*.py")] + [body for *_, body in callable_]
    assert len(definers) >= 10, definers  # the lookups before a firm is known, the locks, ...
    uncalled = [n for n in definers if not any(re.search(rf"\b{n}\(", c) for c in callers)]
    assert sorted(uncalled) == []


async def test_only_an_admin_ends_sessions_and_only_of_a_removed_member_of_their_firm(
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """auth_end_member_sessions runs as the owner, past the rule that a session is its user's:
    it must end nothing but the sessions, in the bound firm, of a user removed from it, and only
    for that firm's admin or owner."""
    owner = await members.create(Role.OWNER)
    plain = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    current = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    elsewhere = await members.create(Role.OWNER)
    end = text("select auth_end_member_sessions(:u)")

    async def live(user_id: uuid.UUID) -> int:
        async with superuser_engine.connect() as conn:
            found = await conn.execute(
                text("select count(*) from sessions where user_id = :u and revoked_at is null"),
                {"u": user_id},
            )
            return int(found.scalar_one())

    for firm_id, actor_id, refusal in [
        (None, None, "only a firm's admin"),  # no firm bound
        (owner.firm_id, plain.user_id, "only a firm's admin"),
        (owner.firm_id, owner.user_id, "only once they are removed"),  # still a member
    ]:
        with pytest.raises(DBAPIError, match=refusal):
            async with tenant_transaction(app_sessions, firm_id, actor_id) as session:
                await session.execute(end, {"u": current.user_id})
    # Another firm's owner: no member of theirs, so allowed, and it ends nothing of this firm's.
    async with tenant_transaction(app_sessions, elsewhere.firm_id, elsewhere.user_id) as session:
        assert (await session.execute(end, {"u": current.user_id})).scalar_one() == 0
    assert await live(current.user_id) == 1

    async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
        await session.execute(
            text("delete from memberships where firm_id = :f and user_id = :u"),
            {"f": owner.firm_id, "u": current.user_id},
        )
        assert (await session.execute(end, {"u": current.user_id})).scalar_one() == 1
    assert await live(current.user_id) == 0
    assert await live(plain.user_id) == 1


async def test_sign_in_failures_are_the_owners_functions_alone_and_pruned_when_quiet(
    app_engine: AsyncEngine, superuser_engine: AsyncEngine
) -> None:
    """The table keys failed sign-ins by address (registered or not): the app role may not read
    it (only count through the functions), and rows a month quiet go as failures arrive."""
    quiet, fresh = uuid.uuid4().bytes * 2, uuid.uuid4().bytes * 2
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "insert into sign_in_failures (address_key, failures, last_failed_at) "
                "values (:a, 5, now() - interval '31 days')"
            ),
            {"a": quiet},
        )
    with pytest.raises(DBAPIError, match="permission denied"):
        async with app_engine.begin() as conn:
            await conn.execute(text("select count(*) from sign_in_failures"))
    async with app_engine.begin() as conn:
        await conn.execute(
            text("select auth_note_failed_sign_in_by_address(:a, 100)"), {"a": fresh}
        )
    async with superuser_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select address_key, failures from sign_in_failures where address_key in (:q, :f)"
            ),
            {"q": quiet, "f": fresh},
        )
        assert {bytes(k): n for k, n in rows.all()} == {fresh: 1}
