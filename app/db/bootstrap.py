"""Provisioning a PostgreSQL server for CoverProof: roles, database, migrations, the seal.

On the embedded server (and in tests) a superuser creates both roles and the database,
idempotently, and seals the audit trail (app/db/seal.py) around the migrations. On a managed
server an administrator creates them beforehand and seals (see README); ``migrate`` then runs
as coverproof_owner alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
from alembic import command
from alembic.config import Config

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
    """Create the two roles and the database owned by coverproof_owner, if missing."""
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(_CREATE_ROLES)
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", database)
        if not exists:
            # Identifiers cannot be bound parameters; the name is ours, quoted here.
            quoted = '"' + database.replace('"', '""') + '"'
            await conn.execute(f"create database {quoted} owner {OWNER_ROLE}")
    finally:
        await conn.close()


def migrate(owner_url: str) -> None:
    """Apply every migration as coverproof_owner (``alembic upgrade head``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = owner_url
    command.upgrade(config, "head")


def migrate_sealed(superuser_url: str, owner_url: str, database: str) -> None:
    """``migrate``, unsealed for it (a migration may change the audit tables), sealed after."""
    asyncio.run(seal.at(superuser_url, "unseal", database))
    migrate(owner_url)
    asyncio.run(seal.at(superuser_url, "seal", database))


def provision(superuser_url: str, owner_url: str, database: str) -> None:
    """Roles, database and schema, sealed, from a superuser URL; safe to run on every start."""
    asyncio.run(create_roles_and_database(superuser_url, database))
    migrate_sealed(superuser_url, owner_url, database)
