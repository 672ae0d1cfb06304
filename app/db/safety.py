"""Start-up checks: the server refuses to run if the database would not police tenants."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db import seal as seal_sql

_SEARCH_PATH = text("select pg_catalog.current_setting('search_path')")
_SET_SEARCH_PATH = text("select pg_catalog.set_config('search_path', :path, true)")
_ROLE = text(
    "select rolsuper, rolbypassrls, "
    "pg_has_role(current_user, 'coverproof_owner', 'MEMBER') as owner_member "
    "from pg_roles where rolname = current_user"
)
_OWNED = text(
    "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
    "where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm') "
    "and pg_get_userbyid(c.relowner) = current_user"
)
# Every table of ours (made by the migrations, so owned by coverproof_owner) or holding a
# firm_id must be forced under RLS with a policy, except those that hold nothing of any firm or
# person: alembic's version, and the persisted documents partners may run (query texts we
# publish). A new table is policed unless it is named here; another tool's tables in the
# schema (PostGIS's spatial_ref_sys, say) are not ours to police.
UNPOLICED_TABLES = text(
    "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
    "where n.nspname = 'public' and c.relkind in ('r', 'p') "
    "and c.relname not in ('alembic_version', 'trusted_documents') "
    "and (pg_get_userbyid(c.relowner) = 'coverproof_owner' or exists (select 1 "
    "from pg_attribute a where a.attrelid = c.oid and a.attname = 'firm_id' "
    "and not a.attisdropped)) "
    "and not (c.relrowsecurity and c.relforcerowsecurity "
    "and exists (select 1 from pg_policy p where p.polrelid = c.oid)) order by 1"
)


# What the audit tables' owner could do to them (0016 revokes it all), counting privileges it
# inherits (a managed provider may grant pg_write_all_data to its admin roles): the security
# page says the database revokes UPDATE and DELETE on the audit trail.
# UPDATE counts when granted on any one column.
AUDIT_WRITES = text(
    "select t || ' ' || p from unnest(array['audit_log', 'audit_checkpoints']) t, "
    "unnest(array['UPDATE', 'DELETE', 'TRUNCATE']) p "
    "where case p when 'UPDATE' then has_any_column_privilege(:role, 'public.' || t, p) "
    "else has_table_privilege(:role, 'public.' || t, p) end order by 1"
)
# A temporary table is found before any schema's: code of the owner's making, run in the app's
# session, could make one there for the app to take for the audit log.
TEMPORARY = text("select has_database_privilege(:role, current_database(), 'TEMPORARY')")
CREATE_SCHEMAS = text("select has_database_privilege(:role, current_database(), 'CREATE')")
OWNER_SCHEMAS = text(seal_sql.OWNER_SCHEMAS)
# A database's owner may drop it, audit trail and all.
OWNER_OWNS_DATABASE = text(
    "select pg_has_role('coverproof_owner', datdba, 'MEMBER') from pg_database "
    "where datname = current_database()"
)


# The seal (app/db/seal.py): its event trigger on, owned by a role coverproof_owner is not
# (whose commands it lets through), and the audit tables as they were sealed.
SEAL = text(
    "select (select evtenabled in ('O', 'A') and evtevent = 'ddl_command_end' "
    "and evtfoid = to_regprocedure('coverproof_seal.guard()') "
    "and not pg_has_role('coverproof_owner', evtowner, 'MEMBER') "
    "from pg_event_trigger where evtname = 'coverproof_audit_seal') as sealed, "
    "to_regprocedure('coverproof_seal.audit_state()') is not null "
    "and to_regprocedure('coverproof_seal.shadows()') is not null as checkable"
)
# What in public a query naming no schema could take for a built-in (app/db/seal.py).
SHADOWS = text("select coverproof_seal.shadows()")
SEALED_AS_NOW = text(seal_sql.SEALED_AS_NOW)
SEAL_STRANGERS = text(seal_sql.NOT_OURS)


class UnsafeDatabase(Exception):
    """The runtime role or schema would let the app bypass row-level security."""


async def check_runtime_role(engine: AsyncEngine) -> None:
    """Raise UnsafeDatabase unless the runtime role is unprivileged, every table that may hold
    a firm's or a person's data is forced under RLS, and no role of ours may change the audit
    trail, nor change what guards it (the seal)."""
    async with engine.connect() as conn:
        problems = await runtime_problems(conn)
    if problems:
        raise UnsafeDatabase(
            "Refusing to start: "
            + "; ".join(problems)
            + ". Connect as coverproof_app (COVERPROOF_DATABASE_URL) after `coverproof migrate`."
        )


async def runtime_problems(conn: AsyncConnection) -> list[str]:
    """What ``check_runtime_role`` refuses, as seen by this connection's role. The checks name
    built-ins unqualified: an overload in public that fits an argument better (the owner's, in
    a database not yet sealed) would run in this session, with its rights were it wrongly a
    superuser's; so they search pg_catalog alone, and the caller's search path is put back."""
    path = await conn.scalar(_SEARCH_PATH)
    await conn.execute(_SET_SEARCH_PATH, {"path": "pg_catalog, pg_temp"})
    problems = await _problems(conn)  # on an error, the caller's rollback puts it back
    await conn.execute(_SET_SEARCH_PATH, {"path": path})
    return problems


async def _problems(conn: AsyncConnection) -> list[str]:
    problems = []
    role = (await conn.execute(_ROLE)).one()
    if role.rolsuper:
        problems.append("the database role is a superuser")
    if role.rolbypassrls:
        problems.append("the database role has BYPASSRLS")
    if role.owner_member:
        problems.append("the database role is a member of coverproof_owner")
    owned = (await conn.execute(_OWNED)).scalars().all()
    if owned:
        problems.append(f"the database role owns {', '.join(owned)}")
    unpoliced = (await conn.execute(UNPOLICED_TABLES)).scalars().all()
    if unpoliced:
        problems.append(f"tables without forced row-level security: {', '.join(unpoliced)}")
    return problems + await _audit_problems(conn)


async def _audit_problems(conn: AsyncConnection) -> list[str]:
    """What would let a role of ours change the audit trail, or what guards it."""
    problems = []
    for ours in ("coverproof_owner", "coverproof_app"):
        writes = (await conn.execute(AUDIT_WRITES, {"role": ours})).scalars().all()
        if writes:
            problems.append(f"{ours} may change the audit trail: {', '.join(writes)}")
        if await conn.scalar(TEMPORARY, {"role": ours}):
            problems.append(f"{ours} may create temporary tables")
        if await conn.scalar(CREATE_SCHEMAS, {"role": ours}):
            problems.append(f"{ours} may create schemas")
    kept = (await conn.execute(OWNER_SCHEMAS)).scalars().all()
    if kept:
        problems.append(f"coverproof_owner owns schemas that are not ours: {', '.join(kept)}")
    if await conn.scalar(OWNER_OWNS_DATABASE):
        problems.append(
            "coverproof_owner owns the database (it could drop it, audit trail and all)"
        )
    seal = (await conn.execute(SEAL)).one()
    if not (seal.sealed and seal.checkable):
        problems.append(
            "the audit trail is not sealed (migrate, then `coverproof db seal` as an administrator)"
        )
        return problems
    strangers = await conn.scalar(SEAL_STRANGERS)
    if strangers:
        problems.append(f"the seal's own objects are someone else's: {strangers}")
    if not await conn.scalar(SEALED_AS_NOW):
        problems.append("the audit tables changed since they were sealed")
    shadows = await conn.scalar(SHADOWS)
    if shadows:
        problems.append(f"public holds what could stand in for a built-in: {', '.join(shadows)}")
    return problems
