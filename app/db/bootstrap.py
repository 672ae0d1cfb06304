"""Provisioning a PostgreSQL server for CoverProof: roles, database, migrations, the seal.

On the embedded server (and in tests) a superuser creates both roles and the database,
idempotently, runs the migrations as coverproof_owner and seals the audit trail
(app/db/seal.py). On a managed server an administrator creates them beforehand (see README);
``coverproof migrate`` runs as coverproof_owner and seals through the administrator's URL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from app.config import ConfigError
from app.db import engine, seal

OWNER_ROLE = "coverproof_owner"
APP_ROLE = "coverproof_app"
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

_CREATE_ROLES = """
do $$
begin
    if not exists (select from pg_roles where rolname = 'coverproof_owner') then
        create role coverproof_owner login nosuperuser nobypassrls;
    end if;
    if not exists (select from pg_roles where rolname = 'coverproof_app') then
        create role coverproof_app login nosuperuser nobypassrls nocreaterole nocreatedb noinherit;
    end if;
end $$;
"""


@dataclass(frozen=True)
class SocketServer:
    """A PostgreSQL server reached over a Unix socket with trust authentication."""

    socket_dir: str
    superuser: str = "postgres"

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@/{database}?{urlencode({'host': self.socket_dir})}"


async def create_roles_and_database(superuser_url: str, database: str) -> None:
    """Create the two roles and the database, if missing. The database is the administrator's
    (here the superuser's), not coverproof_owner's: a database's owner may drop it, audit trail
    and all, and owns its public schema (where it could make what a search finds first);
    coverproof_owner may create in public, as its migrations must."""
    conn = await engine.connect(superuser_url)
    try:
        await conn.execute(_CREATE_ROLES)
        # Identifiers cannot be bound parameters; the name is ours, quoted here.
        quoted = '"' + database.replace('"', '""') + '"'
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", database)
        if exists:
            # Made when coverproof_owner owned it: the administrator takes it, without the
            # settings its owner could give every session.
            await conn.execute(f"alter database {quoted} owner to current_user")
            await conn.execute(f"alter database {quoted} reset all")
        else:
            await conn.execute(f"create database {quoted}")
        # Temporary tables are searched before any schema: code of the owner's making, run in
        # the app's session, could put one there for the app to take for the audit log. Nor
        # may our roles make schemas: a grant the owner made while the database was its own
        # survives the change of owner, and a schema coverproof_seal of its making would be
        # run by the administrator's session (seal.NOT_OURS refuses one).
        await conn.execute(f"revoke temporary on database {quoted} from public")
        await conn.execute(
            f"revoke create on database {quoted} from public, {OWNER_ROLE}, {APP_ROLE}"
        )
    finally:
        await conn.close()
    conn = await seal.admin_connect(superuser_url, database)
    try:
        kept = await conn.fetch(seal.OWNER_SCHEMAS)
        if kept:
            names = ", ".join(row["nspname"] for row in kept)
            raise ConfigError([f"coverproof_owner owns schemas that are not ours: {names}"])
        await conn.execute("grant usage, create on schema public to coverproof_owner")
    finally:
        await conn.close()


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest migration's revision: what a database must be at to be sealed."""
    head = ScriptDirectory.from_config(_config("")).get_current_head()
    assert head is not None
    return head


def migrate(owner_url: str) -> None:
    """Apply every migration as coverproof_owner (``alembic upgrade head``), logged in as it:
    never in a privileged session, where code of the owner's making could take its rights."""
    command.upgrade(_config(owner_url), "head")


def migrate_sealed(admin_url: str, owner_url: str, database: str | None = None) -> None:
    """``migrate``, then seal the audit tables as it leaves them, through an administrator's
    URL (to ``database``, if it names another than the URL's). Raises seal.Changed, before
    migrating, if they are not as last sealed; a migration that would change them is refused
    by the seal, as the owner's every change to them is."""
    asyncio.run(seal.unchanged_at(admin_url, database))
    migrate(owner_url)
    found = asyncio.run(migrated(owner_url))
    asyncio.run(seal.at(admin_url, database, head=head_revision(), migrated=found))


async def migrated(owner_url: str) -> seal.Migrated:
    """The migrations' version and which database it is, read logged in as coverproof_owner,
    whose table it is: read in an administrator's session, a view, policy or index of the
    owner's making on it would run the owner's code there (seal.seal). The owner could
    misstate it, as it could rewrite it."""
    conn = await engine.connect(owner_url)
    try:
        database, started = await conn.fetchrow(seal.IDENTITY)
        version = None
        if await conn.fetchval("select to_regclass('public.alembic_version') is not null"):
            version = await conn.fetchval("select version_num from public.alembic_version")
        return seal.Migrated(version, database, started)
    finally:
        await conn.close()


def provision(superuser_url: str, database: str) -> None:
    """Roles, database and schema, sealed, from a superuser URL; safe to run on every start."""
    asyncio.run(create_roles_and_database(superuser_url, database))
    owner_url = make_url(superuser_url).set(username=OWNER_ROLE, password=None, database=database)
    migrate_sealed(superuser_url, owner_url.render_as_string(hide_password=False), database)
