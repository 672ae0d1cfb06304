"""The server refuses to start on a role that could bypass row-level security."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.safety import UnsafeDatabase, check_runtime_role
from app.main import create_app
from tests.conftest import Database, make_settings, started


async def test_the_app_role_passes(app_engine: AsyncEngine) -> None:
    await check_runtime_role(app_engine)


async def test_a_superuser_is_refused(superuser_engine: AsyncEngine) -> None:
    with pytest.raises(UnsafeDatabase, match="superuser"):
        await check_runtime_role(superuser_engine)


async def test_the_table_owner_is_refused(owner_engine: AsyncEngine) -> None:
    with pytest.raises(UnsafeDatabase, match="owns"):
        await check_runtime_role(owner_engine)


async def test_the_server_does_not_start_as_superuser(database: Database, tmp_path: object) -> None:
    app = create_app(make_settings(database, tmp_path, database_url=database.superuser_url))  # type: ignore[arg-type]
    with pytest.raises(UnsafeDatabase, match="Refusing to start"):
        async for _ in started(app):
            pass
