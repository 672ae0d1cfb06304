"""Fixtures: a real PostgreSQL built from the migrations, the app on it as coverproof_app.

The server is the embedded one (started under .coverproof/test-pg) unless
COVERPROOF_TEST_DATABASE_URL names a superuser URL of another server that trusts local
connections. Each test session gets a fresh database, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.config import Settings
from app.db import bootstrap
from app.db.engine import create_engine, session_factory
from app.main import create_app
from app.resolvers import auth as auth_resolvers
from tests.factories import Members

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Database:
    superuser_url: str
    owner_url: str
    app_url: str


def _with(url: str, user: str, database: str) -> str:
    return (
        make_url(url)
        .set(username=user, password=None, database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def superuser_url() -> str:
    url = os.environ.get("COVERPROOF_TEST_DATABASE_URL")
    if url:
        return url
    from app.db import embedded

    server = embedded.start(ROOT / ".coverproof" / "test-pg")
    return server.url(server.superuser, "postgres")


@pytest.fixture(scope="session")
def database(superuser_url: str) -> Iterator[Database]:
    name = f"cp_test_{secrets.token_hex(4)}"
    owner_url = _with(superuser_url, bootstrap.OWNER_ROLE, name)
    bootstrap.provision(superuser_url, name)
    yield Database(
        superuser_url=_with(superuser_url, make_url(superuser_url).username or "postgres", name),
        owner_url=owner_url,
        app_url=_with(superuser_url, bootstrap.APP_ROLE, name),
    )

    drop_database(superuser_url, name)


def drop_database(superuser_url: str, name: str) -> None:
    """Drop a test database, whoever is still connected to it."""

    async def drop() -> None:
        conn = await asyncpg.connect(superuser_url)
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
async def app_engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database.app_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def owner_engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database.owner_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def superuser_engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database.superuser_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def owner_sessions(owner_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(owner_engine)


@pytest.fixture(scope="session")
def app_sessions(app_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(app_engine)


@pytest.fixture(scope="session")
def members(owner_sessions: async_sessionmaker[AsyncSession]) -> Members:
    return Members(owner_sessions)


def private_pem(key: Ed25519PrivateKey) -> str:
    """An Ed25519 key as the unencrypted PKCS#8 PEM the app's settings take."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def new_signing_key_pem() -> str:
    """A fresh Ed25519 key for an app under test (tests make their own keys)."""
    return private_pem(Ed25519PrivateKey.generate())


REDIS_URL = os.environ.get("COVERPROOF_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def shared_limits() -> dict[str, str]:
    """Production's rate limits (it refuses in-memory ones): on the test Redis, under a key
    prefix no other app, test or run uses."""
    return {"rate_limit_storage": REDIS_URL, "rate_limit_prefix": f"test-{uuid.uuid4().hex}"}


def make_settings(database: Database, tmp: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database.app_url,
        "secret_key": secrets.token_urlsafe(48),
        "data_dir": tmp,
        "public_url": "https://testserver",
        "allowed_origins": ["https://app.example.test"],
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database, tmp_path_factory.mktemp("data"))


async def started(app: Starlette) -> AsyncIterator[Starlette]:
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    async for running in started(create_app(settings)):
        yield running


def http_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(app) as c:
        yield c


def new_id() -> uuid.UUID:
    return uuid.uuid4()


# Fixtures shared by every folder that drives the app as a browser, with real mail.
from tests.browser import auth_app, browser, new_browser, smtp  # noqa: E402, F401


@pytest.fixture(autouse=True)
def answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flows that answer alike for any address wait half a second to do so
    (app/resolvers/auth.py): not in tests, but the one that checks that wait."""
    monkeypatch.setattr(auth_resolvers, "ALIKE_SECONDS", 0.0)
