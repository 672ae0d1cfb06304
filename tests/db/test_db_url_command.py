"""``coverproof db url`` prints the owner's URL for psql without its password: printed, it
reached the terminal and, on psql's command line, every user's ``ps``."""

from __future__ import annotations

import secrets

import pytest

from app.cli import main


def test_db_url_prints_the_owners_url_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = secrets.token_urlsafe(16)
    owner = f"postgresql://coverproof_owner:{password}@db.example.test:5432/coverproof"
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", owner + "?sslmode=require")
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", "postgresql://coverproof_app@db.example.test/c")
    assert main(["db", "url"]) == 0
    printed = capsys.readouterr()
    assert password not in printed.out + printed.err
    assert printed.out.strip() == (
        "postgresql://coverproof_owner@db.example.test:5432/coverproof?sslmode=require"
    )


@pytest.mark.parametrize("key", ["password", "sslpassword"])
def test_db_url_never_prints_a_password_given_in_the_query(
    key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """libpq and SQLAlchemy's asyncpg dialect both take ?password=... (and ?sslpassword=..., the
    client key's): the app connects with it, so it is as secret as the URL's own."""
    password = secrets.token_urlsafe(16)
    owner = f"postgresql://coverproof_owner@db.example.test:5432/coverproof?{key}={password}"
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", owner + "&sslmode=require")
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", "postgresql://coverproof_app@db.example.test/c")
    assert main(["db", "url"]) == 0
    printed = capsys.readouterr()
    assert password not in printed.out + printed.err
    assert printed.out.strip() == (
        "postgresql://coverproof_owner@db.example.test:5432/coverproof?sslmode=require"
    )
