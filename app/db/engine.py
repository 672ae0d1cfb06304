"""Engines and session factories. No other module creates connections."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy import URL, make_url
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Our tables are public's, and a name finds no other: left to the default ("$user", public), a
# schema named after the role, which the database's owner could make, would be searched first.
SERVER_SETTINGS = {"search_path": "public"}
# libpq's names for what asyncpg.connect calls otherwise: a URL may be written for either.
_LIBPQ_NAMES = {"sslmode": "ssl"}
_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


def asyncpg_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and point SQLAlchemy at asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("database URLs must start with postgresql://")


def engine_url(url: str) -> URL:
    """The URL as SQLAlchemy parses it (a password may hold any character, escaped or not),
    with libpq's ``sslmode`` spelled as asyncpg's ``ssl``, and without ``application_name``,
    which is a setting (``connect_args``), not a keyword of asyncpg.connect."""
    parsed = make_url(asyncpg_url(url))
    if {"ssl", "sslmode"} <= parsed.query.keys():
        # Whichever came last would win, silently: a TLS setting is given once.
        raise ValueError("The database URL gives both ssl and sslmode: give one.")
    query = {_LIBPQ_NAMES.get(name, name): value for name, value in parsed.query.items()}
    query.pop("application_name", None)
    return parsed.set(query=query)


def connect_args(url: str) -> dict[str, Any]:
    """What asyncpg.connect is given besides what SQLAlchemy reads from ``url``: the settings."""
    name = make_url(asyncpg_url(url)).query.get("application_name")
    settings = {**SERVER_SETTINGS, **({"application_name": str(name)} if name else {})}
    return {"server_settings": settings}


def lane_connect_kwargs(url: str) -> dict[str, Any]:
    """What asyncpg.connect is given for ``url`` by SQLAlchemy's dialect, as the ORM's pool is:
    the lanes' pool read it as a DSN instead, so no spelling of TLS worked for both
    (``sslmode=require`` stopped the server starting, ``ssl=require`` turned the lanes off,
    every request failing a connection before falling back)."""
    _, kwargs = _DIALECT.create_connect_args(engine_url(url))  # type: ignore[no-untyped-call]
    # SQLAlchemy's own statement cache, not asyncpg's (``statement_cache_size``).
    kwargs.pop("prepared_statement_cache_size", None)
    kwargs.pop("prepared_statement_name_func", None)
    return {**kwargs, **connect_args(url)}


async def connect(url: str, **overrides: Any) -> asyncpg.Connection:
    """One plain connection for ``url``, read as every pool reads it; ``overrides`` replace
    what the URL gives (``database``, ``server_settings``)."""
    kwargs = {**lane_connect_kwargs(url), **overrides}
    connection: asyncpg.Connection = await asyncpg.connect(**kwargs)
    return connection


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # orjson for JSONB: templates and answers are decoded on every page of declarations.
    return create_async_engine(
        engine_url(url),
        pool_size=pool_size,
        max_overflow=0,
        # A connection PostgreSQL dropped (restart, failover, a killed backend) is replaced
        # before use, so no request meets it: one cheap round trip per checkout.
        pool_pre_ping=True,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        # Errors are logged; their parameters (hashes, answers) must not be.
        hide_parameters=True,
        connect_args=connect_args(url),
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
        min_size=0, max_size=size, reset=_keep, **lane_connect_kwargs(url)
    )


def session_factory(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of ``engine``; each starts with (a copy of) ``info`` in its own."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})
