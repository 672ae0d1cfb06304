"""Sealing the audit trail against the role that owns it.

UPDATE, DELETE and TRUNCATE on the audit tables are revoked from every role of ours, the owner
included, and triggers refuse them to any role. But an owner's rights over its own tables cannot
be revoked: coverproof_owner (the migrations' role, and the CLI's) could grant those rights back
to itself, disable the triggers, replace their functions, or rewrite a column with ALTER TABLE.
The seal takes that away: an event trigger, owned by an administrator, that fails any DDL
command that names an audit table, or that leaves the audit tables (their definitions, rights,
row security, policies, rules, inheritance, triggers and the triggers' functions) other than as
they were sealed. The command is rolled back with it.

Only a session opened by the administrator (or a superuser) passes it, as they could drop it
anyway: a migration runs in such a session, taking coverproof_owner's role, and the tables
are sealed again as it leaves them (``bootstrap.migrate_sealed``). The seal is never lifted, so
no session of the owner's ever runs unsealed. Sealing needs a role that can create event
triggers (a superuser, or a managed provider's administrator); the server refuses to start
unsealed (app/db/safety.py).
"""

from __future__ import annotations

import asyncpg

from app.config import ConfigError

# Everything about the audit tables that decides what their rows are and who may change them,
# as one digest. Indexes are left out: one may be added or rebuilt without touching a row.
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
              hint = 'Run the migration as an administrator (COVERPROOF_SEAL_DATABASE_URL).';
end
$$
"""


async def seal(conn: asyncpg.Connection) -> None:
    """Seal the audit tables as they are now (on a connection of a role that may create event
    triggers, to the app's database); sealing again takes their state afresh."""
    async with conn.transaction():
        await conn.execute("create schema if not exists coverproof_seal")
        await conn.execute("grant usage on schema coverproof_seal to public")
        await conn.execute(_STATE)
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


class Changed(ConfigError):
    """The audit tables are not as they were sealed (``coverproof`` reports it and stops)."""


async def check_unchanged(conn: asyncpg.Connection) -> None:
    """Raise Changed if the database is sealed and its audit tables are no longer as sealed
    (by the digest sealed with them: a release may digest more than the one before)."""
    sealed = await conn.fetchval(
        "select to_regclass('coverproof_seal.sealed') is not null "
        "and to_regprocedure('coverproof_seal.audit_state()') is not null"
    )
    if sealed and not await conn.fetchval(
        "select coverproof_seal.audit_state() is not distinct from "
        "(select state from coverproof_seal.sealed)"
    ):
        raise Changed(
            [
                "The audit tables changed since they were sealed: find out how (docs/audit.md) "
                "before sealing them again with `coverproof db seal`."
            ]
        )


async def at(admin_url: str, database: str | None = None) -> None:
    """``seal`` through an administrator's URL (to ``database``, if it names another than the
    URL's)."""
    conn = await asyncpg.connect(admin_url, database=database)
    try:
        await seal(conn)
    finally:
        await conn.close()


async def unchanged_at(admin_url: str, database: str | None = None) -> None:
    """``check_unchanged`` through an administrator's URL."""
    conn = await asyncpg.connect(admin_url, database=database)
    try:
        await check_unchanged(conn)
    finally:
        await conn.close()
