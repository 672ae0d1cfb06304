"""Engines and session factories. No other module creates connections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def asyncpg_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and point SQLAlchemy at asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("database URLs must start with postgresql://")


def libpq_dsn(url: str) -> str:
    """The URL as asyncpg reads a DSN, with libpq's parameters (``sslmode``, ``sslrootcert``,
    ...) and environment (``PGSSLMODE``)."""
    return "postgresql://" + asyncpg_url(url).removeprefix("postgresql+asyncpg://")


def connector(url: str) -> Callable[[], Awaitable[asyncpg.Connection]]:
    """How SQLAlchemy's pools connect: asyncpg reading the URL as the lanes' pool reads it.
    Left to SQLAlchemy, each of the URL's parameters became a keyword of asyncpg.connect, so
    the two pools shared no spelling of TLS: ``sslmode=require`` stopped the server starting,
    and ``ssl=require`` turned the lanes off, each request failing a connection to fall back."""
    dsn = libpq_dsn(url)

    async def connect() -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
        return connection

    return connect


# Our tables are public's, and a name finds no other: left to the default ("$user", public), a
# schema named after the role, which the database's owner could make, would be searched first.
SERVER_SETTINGS = {"search_path": "public"}


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # orjson for JSONB: templates and answers are decoded on every page of declarations.
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connector(url),
        pool_size=pool_size,
        max_overflow=0,
        # A connection PostgreSQL dropped (restart, failover, a killed backend) is replaced
        # before use, so no request meets it: one cheap round trip per checkout.
        pool_pre_ping=True,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        # Errors are logged; their parameters (hashes, answers) must not be.
        hide_parameters=True,
    )


async def _keep(conn: asyncpg.Connection) -> None:
    """asyncpg rolls back an open transaction before this runs; nothing else needs undoing."""


async def create_lane_pool(url: str, size: int) -> asyncpg.Pool:
    """A plain asyncpg pool, as the same role, for the fast path's lanes (app/http/lane.py).

    Its connections only ever run transactions whose settings and locks are transaction-local
    (``set_config(..., true)``, ``pg_advisory_xact_lock``), so the
    default reset on release (RESET ALL, UNLISTEN, CLOSE, advisory unlocks: a round trip that
    costs about a quarter of a small request) has nothing to undo and is skipped.
    """
    return await asyncpg.create_pool(
        libpq_dsn(url), min_size=0, max_size=size, reset=_keep, server_settings=SERVER_SETTINGS
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
