"""Alembic environment: migrations run as coverproof_owner over asyncpg (logged in as it, or as
an administrator who takes its role: what they make is the owner's)."""

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.engine import asyncpg_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    role = context.config.attributes.get("role")
    engine = create_async_engine(
        asyncpg_url(context.config.attributes["url"]),
        poolclass=pool.NullPool,
        # Taken as the connection starts: the session stays the administrator's.
        connect_args={"server_settings": {"role": role}} if role else {},
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_main())
