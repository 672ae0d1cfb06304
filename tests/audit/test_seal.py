"""The seal (app/db/seal.py): coverproof_owner owns the audit tables, yet can change neither
them nor what guards them; and the server refuses to start on a database that is not sealed,
or whose audit tables changed since."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.audit import chain, checkpoints
from app.audit.actions import Action
from app.audit.signing import SigningKey
from app.auth.actor import Actor, ActorType, Role
from app.cli import main
from app.config import ConfigError
from app.db import bootstrap, seal
from app.db.engine import create_lane_pool, session_factory
from app.db.safety import SEALED_AS_NOW, runtime_problems
from app.db.tenant import tenant_transaction
from tests.conftest import Database, drop_database
from tests.factories import Members

# What the owner of a table may otherwise do to it, each enough to change or drop entries, or
# to let a later command do so unchecked.
ATTEMPTS: dict[str, list[str]] = {
    "disable the trigger refusing updates": [
        "alter table audit_log disable trigger audit_log_no_update_delete"
    ],
    "disable every trigger of the checkpoints": [
        "alter table audit_checkpoints disable trigger user"
    ],
    "grant itself update and delete": ["grant update, delete on audit_log to coverproof_owner"],
    "grant the app role truncate": ["grant truncate on audit_checkpoints to coverproof_app"],
    "grant itself update on one column": ["grant update (action) on audit_log to coverproof_owner"],
    "change how the append check runs": [
        "alter function audit_log_check_append() set search_path = public, pg_catalog"
    ],
    "grant itself update on every table": [
        "grant update on all tables in schema public to coverproof_owner"
    ],
    "replace the function refusing changes": [
        "create or replace function audit_log_forbid_change() returns trigger "
        "language plpgsql as $$ begin return old; end $$"
    ],
    "replace the append check": [
        "create or replace function audit_log_check_append() returns trigger "
        "language plpgsql as $$ begin return new; end $$"
    ],
    "drop a trigger": ["drop trigger audit_log_no_truncate on audit_log"],
    "add a trigger of its own": [
        "create function rewrite_entry() returns trigger language plpgsql as "
        "$$ begin new.action := 'rewritten'; return new; end $$",
        "create trigger a_rewrite before insert on audit_log "
        "for each row execute function rewrite_entry()",
    ],
    "rewrite a column in place": [
        "alter table audit_log alter column action type text using 'rewritten'"
    ],
    "rename the table away": ["alter table audit_log rename to audit_log_old"],
    "turn appends into nothing": ["create rule quiet as on insert to audit_log do instead nothing"],
    "a child table whose rows read as entries": [
        "create table audit_log_more () inherits (audit_log)"
    ],
    "a policy of its own": [
        "create policy everything on audit_log for all to coverproof_owner using (true)"
    ],
    "stop forcing row security": ["alter table audit_log no force row level security"],
    "drop the checkpoints": ["drop table audit_checkpoints cascade"],
    "a unique index refusing appends": [
        "create unique index refuse_more on audit_log ((firm_id is null)) where seq > 1000000000"
    ],
    "replace how the app reads a chain's head": [
        "alter function audit_locked_head(uuid, bigint) set search_path = public, pg_catalog"
    ],
    "an overload of an audit function": [
        "create function audit_locked_head(p_firm_id uuid) returns int language sql "
        "as $$ select 1 $$"
    ],
    # What a query naming no schema could take for a built-in, in the app's session or the
    # administrator's.
    "an operator in public": [
        "create function text_eq_varchar(text, varchar) returns boolean language sql "
        "as $$ select $1 = $2::text $$",
        "create operator public.= (leftarg = text, rightarg = varchar, function = text_eq_varchar)",
    ],
    "a view named as a catalog's": [
        "create view public.pg_roles as select * from pg_catalog.pg_roles where false"
    ],
    "a domain named as a built-in type": ["create domain public.jsonb as text"],
    "a function named as a built-in": [
        "create function public.convert_from(b bytea, enc text) returns text language sql "
        "as $$ select 'shadowed' $$"
    ],
}


async def _sealed_as_now(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(SEALED_AS_NOW))


@pytest.mark.parametrize("statements", ATTEMPTS.values(), ids=ATTEMPTS.keys())
async def test_the_owner_cannot_change_the_audit_tables_or_what_guards_them(
    owner_engine: AsyncEngine, superuser_engine: AsyncEngine, statements: list[str]
) -> None:
    """Each attempt fails on its last statement, naming the seal, and leaves the tables as
    sealed. (Rolled back all the same: had one got through, the next test would not know.)"""
    async with owner_engine.connect() as conn:
        tx = await conn.begin()
        try:
            for statement in statements[:-1]:
                await conn.execute(text(statement))
            with pytest.raises(DBAPIError, match="The audit trail is sealed: coverproof_owner"):
                await conn.execute(text(statements[-1]))
        finally:
            await tx.rollback()
    assert await _sealed_as_now(superuser_engine)


async def test_no_role_of_ours_may_make_a_temporary_table(
    owner_engine: AsyncEngine, app_engine: AsyncEngine
) -> None:
    """A temporary table is found before any schema's: code of the owner's making, run in the
    app's session (a function the app calls is the owner's), could make one named audit_log
    for the app to read and append to in place of the log."""
    for engine in (owner_engine, app_engine):
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="permission denied to create temporary tables"):
                await conn.execute(text("create temp view audit_log as select 1 as seq"))


async def test_the_seals_digest_reads_the_catalog_not_a_copy_in_pg_temp(
    superuser_engine: AsyncEngine,
) -> None:
    """In a session that may make temporary tables (an administrator's), one named pg_class is
    found before pg_catalog's unless the search path puts pg_temp last: a copy of pg_class made
    before a grant would hide the grant from the digest. (Rolled back.)"""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("create temp table pg_class as select * from pg_catalog.pg_class"))
        await conn.execute(text("grant update on audit_log to coverproof_owner"))
        assert not await conn.scalar(SEALED_AS_NOW)
        await tx.rollback()


async def test_the_owner_cannot_make_a_schema_the_app_would_search_first(
    database: Database, owner_engine: AsyncEngine, app_engine: AsyncEngine
) -> None:
    """A schema named after the app's role comes first in PostgreSQL's default search path;
    the database is not the owner's to make one in, and the app searches public alone."""
    async with owner_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="permission denied for database"):
            await conn.execute(text("create schema coverproof_app"))
    async with app_engine.connect() as conn:
        assert await conn.scalar(text("select current_setting('search_path')")) == "public"
    pool = await create_lane_pool(database.app_url, 1)
    try:
        assert await pool.fetchval("select current_setting('search_path')") == "public"
    finally:
        await pool.close()


async def test_the_owner_may_still_change_everything_else(owner_engine: AsyncEngine) -> None:
    """A migration that leaves the audit tables alone runs sealed: tables, functions and
    indexes of its own."""
    async with owner_engine.connect() as conn:
        tx = await conn.begin()
        try:
            await conn.execute(text("create table sealed_probe (id int primary key)"))
            await conn.execute(text("alter table sealed_probe add column note text"))
            await conn.execute(text("create index sealed_probe_note on sealed_probe (note)"))
            await conn.execute(text("drop table sealed_probe"))
        finally:
            await tx.rollback()


async def _problems_after(superuser_engine: AsyncEngine, statement: str) -> list[str]:
    """What the start-up check finds once a superuser has run ``statement`` (rolled back)."""
    async with superuser_engine.connect() as conn, conn.begin() as tx:
        assert not [p for p in await runtime_problems(conn) if "seal" in p or "public" in p]
        await conn.execute(text(statement))
        problems = await runtime_problems(conn)
        await tx.rollback()
    return problems


async def test_the_server_refuses_an_unsealed_database(superuser_engine: AsyncEngine) -> None:
    problems = await _problems_after(superuser_engine, "drop event trigger coverproof_audit_seal")
    not_sealed = (
        "the audit trail is not sealed (migrate, then `coverproof db seal` as an administrator)"
    )
    assert not_sealed in problems


async def test_the_server_refuses_audit_tables_changed_since_they_were_sealed(
    superuser_engine: AsyncEngine,
) -> None:
    """A superuser passes the seal (as the event trigger's owner may: either could drop it);
    what it changed is still found at the next start."""
    change = "alter table audit_log disable trigger audit_log_no_truncate"
    problems = await _problems_after(superuser_engine, change)
    assert "the audit tables changed since they were sealed" in problems


async def test_an_administrator_changes_an_audit_table_and_seals_it_as_changed(
    database: Database,
    owner_engine: AsyncEngine,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A change to the audit tables is the administrator's, in its own session; ``coverproof
    db seal`` then takes them as changed, and ``coverproof migrate`` (as the owner, sealed
    after) keeps them so. The owner's same change is refused."""
    change = "alter table audit_checkpoints alter column key_id set default 'sealed-test'"
    async with owner_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="The audit trail is sealed"):
            await conn.execute(text(change))
    monkeypatch.setenv("COVERPROOF_SEAL_DATABASE_URL", database.superuser_url)
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    async with superuser_engine.begin() as conn:
        await conn.execute(text(change))
    try:
        assert not await _sealed_as_now(superuser_engine)
        assert await asyncio.to_thread(main, ["db", "seal"]) == 0
        assert await asyncio.to_thread(main, ["migrate"]) == 0  # at head: sealed again
        assert capsys.readouterr().out.split() == ["sealed", "migrated"]
        assert await _sealed_as_now(superuser_engine)
    finally:  # the session's database, as the other tests expect it
        async with superuser_engine.begin() as conn:
            drop = "alter table audit_checkpoints alter column key_id drop default"
            await conn.execute(text(drop))
        assert await asyncio.to_thread(main, ["db", "seal"]) == 0
    async with superuser_engine.connect() as conn:
        assert not [p for p in await runtime_problems(conn) if "seal" in p]


async def test_the_append_check_calls_nothing_in_public(superuser_engine: AsyncEngine) -> None:
    """An overload in public that fits the append check's call better than pg_catalog's own
    (convert_from(bytea, text) against (bytea, name)) is not what the check calls (0026). Only
    a superuser can make one now (the seal refuses the owner); made here, the owner's append
    still goes through. (Rolled back.)"""
    sessions = session_factory(superuser_engine)
    async with sessions() as session:
        await session.execute(
            text(
                "create function public.convert_from(b bytea, enc text) returns text "
                "language plpgsql as $$ begin raise exception 'public''s function ran'; end $$"
            )
        )
        await session.execute(text("set local role coverproof_owner"))
        await chain.record_platform(session, Action.SIGN_UP_DUPLICATE)
        await session.rollback()


async def test_migrations_never_run_in_a_privileged_session(
    superuser_url: str, owner_engine: AsyncEngine
) -> None:
    """Code of the owner's making runs in whatever session meets it (here a policy on the
    migrations' own version table): were migrations run in a superuser's session, taking the
    owner's role, that code could take the superuser's back. They run logged in as the owner."""
    hook = [
        "create function no_superuser_here() returns boolean language plpgsql as $$ begin "
        "if (select rolsuper from pg_roles where rolname = session_user) then "
        "raise exception 'owner code ran in a superuser session'; end if; return true; end $$",
        "alter table alembic_version enable row level security",
        "alter table alembic_version force row level security",
        "create policy hooked on alembic_version using (no_superuser_here()) with check (true)",
    ]
    async with owner_engine.begin() as conn:
        name = await conn.scalar(text("select current_database()"))
        for statement in hook:
            await conn.execute(text(statement))
    try:
        await asyncio.to_thread(bootstrap.provision, superuser_url, name)
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text("drop policy hooked on alembic_version"))
            await conn.execute(text("alter table alembic_version no force row level security"))
            await conn.execute(text("alter table alembic_version disable row level security"))
            await conn.execute(text("drop function no_superuser_here()"))


@pytest.mark.parametrize("planted", ["view", "policy", "index"])
async def test_sealing_runs_nothing_of_the_owners_as_the_administrator(
    superuser_url: str, owner_engine: AsyncEngine, planted: str
) -> None:
    """The version table is the owner's: read in the administrator's session, a view over it
    calling a function of the owner's, a policy on it, or an index whose expression the
    planner folds would run that function as the administrator (here a superuser, whom
    nothing then stops). Sealing reads it logged in as the owner, so the function runs as the
    owner, and the database is sealed."""
    async with owner_engine.connect() as conn:
        name = await conn.scalar(text("select current_database()"))
    hook = (
        "create function no_superuser_here() returns text language plpgsql immutable as $$ "
        "begin if (select rolsuper from pg_roles where rolname = current_user) then "
        "raise exception 'owner code ran in a superuser session'; end if; return ''; end $$"
    )
    plant = {
        "view": [
            "alter table alembic_version rename to alembic_version_kept",
            "create view alembic_version as select version_num || no_superuser_here() "
            "as version_num from alembic_version_kept",
        ],
        "policy": [
            "alter table alembic_version enable row level security",
            "create policy hooked on alembic_version using (no_superuser_here() = '')",
        ],
        "index": ["create index hooked on alembic_version ((version_num || no_superuser_here()))"],
    }[planted]
    undo = {
        "view": [
            "drop view alembic_version",
            "alter table alembic_version_kept rename to alembic_version",
        ],
        "policy": [
            "drop policy hooked on alembic_version",
            "alter table alembic_version disable row level security",
        ],
        "index": ["drop index hooked"],
    }[planted]
    async with owner_engine.begin() as conn:
        for statement in [hook, *plant]:
            await conn.execute(text(statement))
    try:
        await asyncio.to_thread(bootstrap.provision, superuser_url, name)
    finally:
        async with owner_engine.begin() as conn:
            for statement in [*undo, "drop function no_superuser_here()"]:
                await conn.execute(text(statement))


def test_sealing_a_managed_database_needs_an_administrators_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", "postgresql://coverproof_app@127.0.0.1/x")
    monkeypatch.delenv("COVERPROOF_SEAL_DATABASE_URL", raising=False)
    assert main(["db", "seal"]) == 2
    assert "COVERPROOF_SEAL_DATABASE_URL" in capsys.readouterr().err


async def test_provisioning_again_takes_the_database_from_the_owner_and_seals_it(
    superuser_url: str, database: Database, superuser_engine: AsyncEngine
) -> None:
    """A database made when coverproof_owner owned it (every one before the seal) is the
    administrator's after provisioning runs again, and sealed; the server would start on it."""
    owns = "coverproof_owner owns the database (it could drop it, audit trail and all)"
    async with superuser_engine.begin() as conn:
        before = await runtime_problems(conn)  # as a superuser: of its own, only
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text(f'alter database "{name}" owner to coverproof_owner'))
    async with superuser_engine.begin() as conn:  # as the owner could have, then
        await conn.execute(text("set local role coverproof_owner"))
        await conn.execute(text(f'grant create on database "{name}" to public'))
    try:
        async with superuser_engine.connect() as conn:
            assert await runtime_problems(conn) == [
                *before,
                "coverproof_owner may create temporary tables",  # a database's owner may
                "coverproof_owner may create schemas",
                "coverproof_app may create schemas",  # the grant, which outlives its ownership
                owns,
            ]
        await asyncio.to_thread(bootstrap.provision, superuser_url, name)
        async with superuser_engine.connect() as conn:
            assert await runtime_problems(conn) == before
    finally:  # the session's database, as the other tests expect it, whatever failed
        async with superuser_engine.begin() as conn:
            await conn.execute(text(f'alter database "{name}" owner to current_user'))


async def test_provisioning_refuses_to_seal_over_tables_changed_since(
    superuser_url: str, superuser_engine: AsyncEngine
) -> None:
    """Every start of the embedded server migrates and seals again; were that to take the
    tables as it found them, a change made meanwhile (by a superuser) would be sealed in
    unseen. It is refused before anything runs, until the administrator seals on purpose."""
    change = "alter table audit_checkpoints alter column key_id set default 'changed'"
    async with superuser_engine.begin() as conn:
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text(change))
    try:
        with pytest.raises(seal.Changed, match="changed since they were sealed"):
            await asyncio.to_thread(bootstrap.provision, superuser_url, name)
        assert not await _sealed_as_now(superuser_engine)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("alter table audit_checkpoints alter column key_id drop default")
            )
    assert await _sealed_as_now(superuser_engine)
    await asyncio.to_thread(bootstrap.provision, superuser_url, name)


async def test_the_server_refuses_public_holding_what_could_stand_in_for_a_built_in(
    superuser_engine: AsyncEngine,
) -> None:
    """Made by a superuser (the seal refuses the owner), found at the next start."""
    shadow = (
        "create function public.convert_from(b bytea, enc text) returns text "
        "language sql as $$ select 'shadowed' $$"
    )
    problems = await _problems_after(superuser_engine, shadow)
    assert (
        "public holds what could stand in for a built-in: public.convert_from(bytea,text)"
        in problems
    )


async def test_the_seal_checks_whose_its_objects_are_before_it_uses_them(
    superuser_url: str, superuser_engine: AsyncEngine, database: Database
) -> None:
    """A seal function the owner made (in a database once its own) would run in the
    administrator's session the moment the seal is checked, before migrating, or sealed
    again: both refuse it first, from the catalogs alone."""
    steal = "alter function coverproof_seal.audit_state() owner to coverproof_owner"
    async with superuser_engine.begin() as conn:
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text(steal))
    try:
        with pytest.raises(seal.Changed, match=r"someone else's: coverproof_seal.audit_state\(\)"):
            await seal.unchanged_at(superuser_url, name)
        migrated = await bootstrap.migrated(database.owner_url)
        with pytest.raises(seal.Changed, match=r"someone else's: coverproof_seal.audit_state\(\)"):
            await seal.at(superuser_url, name, head=bootstrap.head_revision(), migrated=migrated)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("alter function coverproof_seal.audit_state() owner to current_user")
            )


async def test_sealing_refuses_an_owners_url_to_another_database(
    superuser_url: str, superuser_engine: AsyncEngine, database: Database
) -> None:
    """The version is read as the owner, in the database its URL names: sealing another (a
    mistyped administrator's URL) would leave the owner's unsealed and the other unmigratable."""
    other = f"seal_other_{uuid.uuid4().hex[:8]}"
    async with superuser_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'create database "{other}"'))
    try:
        migrated = await bootstrap.migrated(database.owner_url)
        with pytest.raises(seal.Changed, match="name different databases"):
            await seal.at(superuser_url, other, head=bootstrap.head_revision(), migrated=migrated)
    finally:
        async with superuser_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'drop database "{other}" with (force)'))


async def test_the_seal_is_refused_over_objects_of_its_own_someone_else_owns(
    superuser_url: str, superuser_engine: AsyncEngine, database: Database
) -> None:
    """A seal schema or function made earlier by the owner (while the database was its own)
    would keep its owner through ``create or replace``, who could rewrite the guard: sealing
    refuses, and so does the start-up check."""
    steal = "alter function coverproof_seal.guard() owner to coverproof_owner"
    problems = await _problems_after(superuser_engine, steal)
    assert "the seal's own objects are someone else's: coverproof_seal.guard()" in problems
    async with superuser_engine.begin() as conn:
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text("alter schema coverproof_seal owner to coverproof_owner"))
    try:
        with pytest.raises(seal.Changed, match="schema coverproof_seal"):
            await seal.at(
                superuser_url,
                name,
                head=bootstrap.head_revision(),
                migrated=await bootstrap.migrated(database.owner_url),
            )
        with pytest.raises(ConfigError, match=r"coverproof_owner owns schemas .*coverproof_seal"):
            await asyncio.to_thread(bootstrap.provision, superuser_url, name)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(text("alter schema coverproof_seal owner to current_user"))
    await asyncio.to_thread(bootstrap.provision, superuser_url, name)


async def test_provisioning_refuses_schemas_the_owner_made_when_the_database_was_its_own(
    superuser_url: str, superuser_engine: AsyncEngine
) -> None:
    async with superuser_engine.begin() as conn:
        name = await conn.scalar(text("select current_database()"))
        await conn.execute(text("create schema stray authorization coverproof_owner"))
    try:
        with pytest.raises(ConfigError, match="coverproof_owner owns schemas that are not ours"):
            await asyncio.to_thread(bootstrap.provision, superuser_url, name)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(text("drop schema stray"))


async def test_the_checkpointer_lists_every_chain_whatever_the_owner_does_to_firms(
    owner_engine: AsyncEngine,
    superuser_engine: AsyncEngine,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The firms' policies are the owner's; the chains the checkpointer signs are read from the
    log (0027), so a policy hiding firms from the owner hides no chain. (Rolled back.)"""
    owner = await members.create(Role.OWNER)
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    async with tenant_transaction(owner_sessions, owner.firm_id, owner.user_id) as session:
        await chain.record(session, actor, Action.FIRM_UPDATED, "firm", owner.firm_id)
    async with superuser_engine.connect() as conn:
        chains = set(
            await conn.scalars(
                text("select distinct firm_id from audit_log where firm_id is not null")
            )
        )
    assert chains
    async with owner_engine.connect() as conn, conn.begin() as tx:
        await conn.execute(
            text("create policy hide on firms as restrictive for select using (false)")
        )
        await conn.execute(text("select set_config('app.checkpointer', 'on', true)"))
        listed = set(await conn.scalars(text("select firm_id from audit_chain_heads('{}')")))
        await tx.rollback()
    assert listed == chains


async def test_a_database_is_sealed_only_once_migrated(
    database: Database,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Sealed before a migration that changes the audit tables (0026, 0027), the database
    could not be migrated at all: migrations run as the owner, whom the seal refuses. So
    ``coverproof db seal`` refuses a database behind the newest migration, and ``coverproof
    migrate`` with an administrator's URL will not seal one it cannot migrate itself."""
    monkeypatch.setenv("COVERPROOF_SEAL_DATABASE_URL", database.superuser_url)
    monkeypatch.delenv("COVERPROOF_ADMIN_DATABASE_URL", raising=False)
    # The version is read logged in as the owner: without the owner's URL, nothing is sealed.
    assert await asyncio.to_thread(main, ["db", "seal"]) == 2
    assert "COVERPROOF_ADMIN_DATABASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    async with superuser_engine.begin() as conn:
        await conn.execute(text("update alembic_version set version_num = '0025'"))
    try:
        assert await asyncio.to_thread(main, ["db", "seal"]) == 2
        assert f"at migration '0025', not {bootstrap.head_revision()}" in capsys.readouterr().err
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("update alembic_version set version_num = :head"),
                {"head": bootstrap.head_revision()},
            )
    monkeypatch.delenv("COVERPROOF_ADMIN_DATABASE_URL", raising=False)
    monkeypatch.delenv("COVERPROOF_DATABASE_URL", raising=False)
    assert await asyncio.to_thread(main, ["migrate"]) == 2
    assert "COVERPROOF_ADMIN_DATABASE_URL" in capsys.readouterr().err
    assert await _sealed_as_now(superuser_engine)


# The first migration a sealed database can meet: 0026 brings the seal and 0027 runs before the
# first seal (docs/deployment.md).
FIRST_AFTER_THE_SEAL = "0028"


def test_every_migration_since_the_seal_runs_as_the_owner_on_a_sealed_database(
    superuser_url: str,
) -> None:
    """Each release migrates a database sealed at the one before: every migration since the
    seal came must be one the seal lets the owner run (none may change the audit tables, or
    add or replace a function the seal guards, named audit_). Sealed after each, as the
    migration job does."""
    name = f"cp_sealed_{uuid.uuid4().hex[:8]}"
    owner_url = make_url(superuser_url).set(username=bootstrap.OWNER_ROLE, database=name)
    owner = owner_url.render_as_string(hide_password=False)
    script = ScriptDirectory.from_config(bootstrap._config(""))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    start = revisions.index(FIRST_AFTER_THE_SEAL) - 1
    asyncio.run(bootstrap.create_roles_and_database(superuser_url, name))
    try:
        for revision in revisions[start:]:
            command.upgrade(bootstrap._config(owner), revision)  # refused if the seal forbids it
            found = asyncio.run(bootstrap.migrated(owner))
            assert found.version == revision
            asyncio.run(seal.at(superuser_url, name, head=revision, migrated=found))
    finally:
        drop_database(superuser_url, name)


async def test_the_checkpointer_reads_the_head_only_through_the_sealed_function(
    members: Members,
    owner_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """member_locked_head (0035) is not the seal's: the owner may replace it on a sealed
    database, with one that says every chain is empty. The periodic checkpointer, which acts
    for no member, reads the head through audit_locked_head, which is sealed: it still signs
    the real head (the second review of 0035: it was blinded, and skipped the firm for ever)."""
    owner = await members.create()
    actor = Actor(ActorType.USER, owner.user_id, owner.firm_id, Role.OWNER)
    for n in range(2):
        async with tenant_transaction(app_sessions, owner.firm_id, owner.user_id) as session:
            await chain.record(session, actor, Action.FIRM_UPDATED, "firm", owner.firm_id, {"n": n})
    replaced = """create or replace function member_locked_head(
        p_firm_id uuid, p_lock_key bigint, p_member uuid)
        returns table (seq bigint, hash bytea, role text)
        language sql as $$ select null::bigint, null::bytea, 'owner'::text $$"""
    async with owner_engine.begin() as conn:  # the seal lets it through
        original = await conn.scalar(
            text("select pg_get_functiondef('member_locked_head(uuid,bigint,uuid)'::regprocedure)")
        )
        await conn.execute(text(replaced))
    try:
        key = SigningKey(Ed25519PrivateKey.generate())
        async with tenant_transaction(app_sessions, owner.firm_id) as session:
            signed, fresh = await checkpoints.sign_head(session, owner.firm_id, key)
        assert signed is not None
        assert (signed.seq, fresh) == (2, True)
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(text(original))
