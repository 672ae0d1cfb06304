"""Provisioning a PostgreSQL server for CoverProof: roles, database, migrations, the seal.

On the embedded server (and in tests) a superuser creates both roles and the database,
idempotently, runs the migrations as coverproof_owner and seals the audit trail
(app/db/seal.py). On a managed server an administrator creates them beforehand (see README);
``coverproof migrate`` runs as coverproof_owner, or in the administrator's session as it, and
then seals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app.db import seal

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
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(_CREATE_ROLES)
        # Identifiers cannot be bound parameters; the name is ours, quoted here.
        quoted = '"' + database.replace('"', '""') + '"'
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", database)
        if exists:  # made when coverproof_owner owned it: the administrator takes it
            await conn.execute(f"alter database {quoted} owner to current_user")
        else:
            await conn.execute(f"create database {quoted}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(superuser_url, database=database)
    try:
        await conn.execute("grant usage, create on schema public to coverproof_owner")
    finally:
        await conn.close()


def migrate(url: str, role: str | None = None) -> None:
    """Apply every migration (``alembic upgrade head``) through ``url``: coverproof_owner's, or
    an administrator's, who runs them as ``role`` (coverproof_owner)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    config.attributes["role"] = role
    command.upgrade(config, "head")


def migrate_sealed(admin_url: str, database: str | None = None) -> None:
    """``migrate`` in an administrator's session, as coverproof_owner (what it makes is the
    owner's), then seal the audit tables as it leaves them. The seal lets such a session change
    them, as a migration may, and never any of coverproof_owner's own. Raises seal.Changed,
    before migrating, if they are not as last sealed."""
    url = admin_url
    if database is not None:
        url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    # Sealing takes the tables as they are: first, that they are as last sealed (seal.Changed).
    asyncio.run(seal.unchanged_at(url))
    migrate(url, OWNER_ROLE)
    asyncio.run(seal.at(url))


def provision(superuser_url: str, database: str) -> None:
    """Roles, database and schema, sealed, from a superuser URL; safe to run on every start."""
    asyncio.run(create_roles_and_database(superuser_url, database))
    migrate_sealed(superuser_url, database)
