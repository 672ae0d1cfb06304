"""Sealing the audit trail against the role that owns it.

UPDATE, DELETE and TRUNCATE on the audit tables are revoked from every role of ours, the owner
included, and triggers refuse them to any role. But an owner's rights over its own tables cannot
be revoked: coverproof_owner (the migrations' role, and the CLI's) could grant those rights back
to itself, disable the triggers, replace their functions, or rewrite a column with ALTER TABLE.
The seal takes that away: an event trigger, owned by an administrator, that fails any DDL
command that names an audit table, or that leaves the audit tables (their definitions, rights,
row security, policies, rules, inheritance, triggers and the triggers' functions) or the audit_*
functions the app reads and appends through other than as they were sealed, or that leaves in
public anything that could stand in for a built-in. The command is rolled back with it.

Migrations run as coverproof_owner, logged in as it, so always sealed: no session that code of
the owner's could reach is ever privileged (a trigger, policy or operator of its making runs in
whatever session meets it, and a superuser's session could take back its superuser role). A
change to the audit tables is the administrator's to make, by hand, in a session that runs
nothing of the owner's; ``seal`` then takes the tables as they are. Only a session the
administrator (or a superuser) opened passes the guard, as either could drop it anyway. Sealing
needs a role that can create event triggers (a superuser, or a managed provider's
administrator); the server refuses to start unsealed (app/db/safety.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.config import ConfigError
from app.db import engine

# Everything about the audit tables that decides what their rows are, who may change them and
# what may append to them, as one digest.
# pg_temp comes last in the search path: unlisted, it is searched before pg_catalog for
# tables, and a role could put a pg_class of its own there, copied before it changed the real.
_STATE = """
create or replace function coverproof_seal.audit_state() returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
with protected as (
    select oid from pg_class
    where oid = to_regclass('public.audit_log') or oid = to_regclass('public.audit_checkpoints')
)
select md5(
    (select count(*) from protected) || coalesce(string_agg(item, chr(10) order by item), '')
)
from (
    select format('table %s %s %s %s %s %s', c.oid::regclass, c.relowner::regrole, c.relkind,
                  c.relrowsecurity, c.relforcerowsecurity, c.relacl) as item
    from pg_class c where c.oid in (select oid from protected)
    union all
    select format('column %s %s %s %s %s %s %s %s', a.attrelid::regclass, a.attnum, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attisdropped,
                  pg_get_expr(d.adbin, d.adrelid), a.attacl)
    from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid in (select oid from protected) and a.attnum > 0
    union all
    select format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    from pg_constraint where conrelid in (select oid from protected)
    union all
    select format('trigger %s %s %s %s %s', t.tgrelid::regclass, pg_get_triggerdef(t.oid),
                  t.tgenabled, p.proowner::regrole, md5(pg_get_functiondef(p.oid)))
    from pg_trigger t join pg_proc p on p.oid = t.tgfoid
    where t.tgrelid in (select oid from protected)
    union all
    select format('policy %s %s %s %s %s %s %s', polrelid::regclass, polname, polcmd,
                  polpermissive, polroles::regrole[], pg_get_expr(polqual, polrelid),
                  pg_get_expr(polwithcheck, polrelid))
    from pg_policy where polrelid in (select oid from protected)
    union all
    select format('rule %s %s', ev_class::regclass, pg_get_ruledef(oid))
    from pg_rewrite where ev_class in (select oid from protected)
    union all
    select format('inherits %s %s', inhrelid::regclass, inhparent::regclass)
    from pg_inherits
    where inhrelid in (select oid from protected) or inhparent in (select oid from protected)
    union all
    -- A unique one could refuse appends; an expression one runs its functions in each.
    select format('index %s', pg_get_indexdef(indexrelid))
    from pg_index where indrelid in (select oid from protected)
    union all
    -- The functions through which the app reads and appends entries and heads.
    select format('function %s %s %s %s', p.oid::regprocedure, p.proowner::regrole, p.proacl,
                  md5(pg_get_functiondef(p.oid)))
    from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname ^@ 'audit_'
) items
$$
"""

# What in public could stand in for a built-in in a query that names no schema: an operator, a
# cast's function, a conversion, or a function, relation or type named as one of pg_catalog's
# (an overload there that fits an argument better wins over pg_catalog's own). The app's
# queries, and the administrator's, would run it unawares. We make none of these.
_SHADOWS = """
create or replace function coverproof_seal.shadows() returns text[]
language sql stable set search_path = pg_catalog, pg_temp as $$
select coalesce(array_agg(item order by item), '{}') from (
    select oid::regoperator::text as item from pg_operator
    where oprnamespace = 'public'::regnamespace
    union all
    select format('cast (%s as %s)', c.castsource::regtype, c.casttarget::regtype)
    from pg_cast c join pg_proc p on p.oid = c.castfunc
    where p.pronamespace = 'public'::regnamespace
    union all
    select 'conversion ' || conname from pg_conversion
    where connamespace = 'public'::regnamespace
    union all
    select p.oid::regprocedure::text from pg_proc p
    where p.pronamespace = 'public'::regnamespace
    and exists (
        select from pg_proc b
        where b.pronamespace = 'pg_catalog'::regnamespace and b.proname = p.proname
    )
    union all
    -- Found first only by a search path that puts public before pg_catalog, which code of the
    -- owner's in the app's session could set: a view named pg_roles, a domain named jsonb.
    select 'relation ' || c.oid::regclass::text from pg_class c
    where c.relnamespace = 'public'::regnamespace
    and exists (
        select from pg_class b
        where b.relnamespace = 'pg_catalog'::regnamespace and b.relname = c.relname
    )
    union all
    select 'type ' || t.oid::regtype::text from pg_type t
    where t.typnamespace = 'public'::regnamespace
    and exists (
        select from pg_type b
        where b.typnamespace = 'pg_catalog'::regnamespace and b.typname = t.typname
    )
) items
$$
"""

# A command naming an audit table is refused whatever it does, as one may rewrite every row
# and leave the table as it was (ALTER COLUMN ... TYPE text USING ...); any other may not leave
# the tables other than as sealed (DROP ... CASCADE, GRANT, a function a trigger calls).
_GUARD = """
create or replace function coverproof_seal.guard() returns event_trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
    if pg_has_role(
        session_user,
        (select evtowner from pg_event_trigger where evtname = 'coverproof_audit_seal'),
        'MEMBER'
    ) then
        return;
    end if;
    if cardinality(coverproof_seal.shadows()) > 0 then
        raise exception 'The audit trail is sealed: % may not leave in public what could stand '
            'in for a built-in: %', current_user, array_to_string(coverproof_seal.shadows(), ', ')
            using errcode = 'insufficient_privilege';
    end if;
    if not exists (
        select from pg_event_trigger_ddl_commands() c
        where c.classid = 'pg_catalog.pg_class'::regclass
        and c.objid in (to_regclass('public.audit_log'), to_regclass('public.audit_checkpoints'))
    ) and coverproof_seal.audit_state() = (select state from coverproof_seal.sealed) then
        return;
    end if;
    raise exception 'The audit trail is sealed: % may not change its tables or what guards them.',
        current_user
        using errcode = 'insufficient_privilege',
              hint = 'An administrator changes them, and seals again (docs/audit.md).';
end
$$
"""


# The seal's schema and what is in it that the event trigger's owner (before there is one,
# this session's role) does not own, read from the catalogs alone: made before by someone
# else, each would have kept its owner, who could change it, or have the administrator's
# session run it. Checked before any of them is used.
NOT_OURS = """
select string_agg(name, ', ' order by name) from (
    select 'schema coverproof_seal' as name, nspowner as owner from pg_namespace
    where nspname = 'coverproof_seal'
    union all
    select oid::regprocedure::text, proowner from pg_proc
    where pronamespace = to_regnamespace('coverproof_seal')
    union all
    select oid::regclass::text, relowner from pg_class
    where relnamespace = to_regnamespace('coverproof_seal')
    union all
    select oid::regtype::text, typowner from pg_type
    where typnamespace = to_regnamespace('coverproof_seal')
) objects
where owner <> coalesce(
    (select evtowner from pg_event_trigger where evtname = 'coverproof_audit_seal'),
    (select oid from pg_roles where rolname = current_user)
)
"""


# What coverproof_owner made while it owned the database: none of its to keep (a schema named
# after a role is searched first).
OWNER_SCHEMAS = (
    "select nspname from pg_namespace where nspowner = 'coverproof_owner'::regrole "
    "and nspname <> 'public' order by 1"
)


# Whether the audit tables are as they were sealed (the seal's functions and table existing).
SEALED_AS_NOW = (
    "select coverproof_seal.audit_state() is not distinct from "
    "(select state from coverproof_seal.sealed)"
)


# Which database a session is in, and on which server (as started), from the catalogs.
IDENTITY = (
    "select (select oid from pg_catalog.pg_database where datname = current_database()), "
    "pg_catalog.pg_postmaster_start_time()"
)


@dataclass(frozen=True)
class Migrated:
    """What the owner's own login reads of its database (``bootstrap.migrated``): the
    migrations' version, and which database that is."""

    version: str | None
    database: int
    started: datetime


class Changed(ConfigError):
    """The audit tables are not as they were sealed, or public holds what could stand in for a
    built-in (``coverproof`` reports it and stops)."""


async def _refuse_seal_objects_not_mine(conn: asyncpg.Connection) -> None:
    strangers = await conn.fetchval(NOT_OURS)
    if strangers:
        raise Changed([f"the seal's own objects are someone else's: {strangers}"])


async def seal(conn: asyncpg.Connection, head: str, migrated: Migrated) -> None:
    """Seal the audit tables as they are now (on a connection of a role that may create event
    triggers, to the app's database), once migrated to ``head``; sealing again takes their
    state afresh. Seal as the same role each time: objects of the seal another made are
    refused. ``migrated`` is what the owner's own login reads of the database
    (``bootstrap.migrated``): the version table is the owner's, and any query planned on a
    table of the owner's runs the owner's code in whatever session plans it (a view's or a
    policy's function, an index expression folded at planning), here the administrator's. The
    seal's own objects are checked to be this role's before any is used."""
    database, started = await conn.fetchrow(IDENTITY)
    if (database, started) != (migrated.database, migrated.started):
        raise Changed(
            [
                "The owner's URL (COVERPROOF_ADMIN_DATABASE_URL) and the administrator's name "
                "different databases: seal the database the owner migrates."
            ]
        )
    # Sealed earlier, a migration still to come that changes the audit tables (as 0026 and
    # 0027 do) would be refused to the owner, who runs migrations.
    if migrated.version != head:
        raise Changed(
            [f"The database is at migration {migrated.version!r}, not {head}: migrate, then seal."]
        )
    await _refuse_seal_objects_not_mine(conn)
    async with conn.transaction():
        await conn.execute("create schema if not exists coverproof_seal")
        await conn.execute("grant usage on schema coverproof_seal to public")
        await conn.execute(_STATE)
        await conn.execute(_SHADOWS)
        shadows = await conn.fetchval("select coverproof_seal.shadows()")
        if shadows:
            raise Changed([f"public holds what could stand in for a built-in: {shadows}"])
        await conn.execute(
            "create table if not exists coverproof_seal.sealed (state text not null)"
        )
        await conn.execute("grant select on coverproof_seal.sealed to public")
        await conn.execute("delete from coverproof_seal.sealed")
        await conn.execute(
            "insert into coverproof_seal.sealed select coverproof_seal.audit_state()"
        )
        await conn.execute(_GUARD)
        await conn.execute("drop event trigger if exists coverproof_audit_seal")
        await conn.execute(
            "create event trigger coverproof_audit_seal on ddl_command_end "
            "execute function coverproof_seal.guard()"
        )
        strangers = await conn.fetchval(NOT_OURS)
        if strangers:  # raised inside the transaction: nothing of this seal stays
            raise Changed([f"the seal's own objects are someone else's: {strangers}"])


async def check_unchanged(conn: asyncpg.Connection) -> None:
    """Raise Changed if the database is sealed and its audit tables are no longer as sealed
    (by the digest sealed with them: a release may digest more than the one before)."""
    sealed = await conn.fetchval(
        "select to_regclass('coverproof_seal.sealed') is not null "
        "and to_regprocedure('coverproof_seal.audit_state()') is not null"
    )
    if sealed:
        await _refuse_seal_objects_not_mine(conn)
    if sealed and not await conn.fetchval(SEALED_AS_NOW):
        raise Changed(
            [
                "The audit tables changed since they were sealed: find out how (docs/audit.md) "
                "before sealing them again with `coverproof db seal`."
            ]
        )


async def admin_connect(admin_url: str, database: str | None = None) -> asyncpg.Connection:
    """An administrator's session whose queries find nothing the owner made in public."""
    settings = {"search_path": "pg_catalog, pg_temp"}
    chosen = {"database": database} if database else {}
    return await engine.connect(admin_url, server_settings=settings, **chosen)


async def at(admin_url: str, database: str | None = None, *, head: str, migrated: Migrated) -> None:
    """``seal`` through an administrator's URL (to ``database``, if it names another than the
    URL's)."""
    conn = await admin_connect(admin_url, database)
    try:
        await seal(conn, head, migrated)
    finally:
        await conn.close()


async def unchanged_at(admin_url: str, database: str | None = None) -> None:
    """``check_unchanged`` through an administrator's URL."""
    conn = await admin_connect(admin_url, database)
    try:
        await check_unchanged(conn)
    finally:
        await conn.close()
