"""``coverproof db url`` prints the owner's URL for psql without its password: printed, it
reached the terminal and, on psql's command line, every user's ``ps``."""

from __future__ import annotations

import secrets

import pytest

from app.cli import main


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://coverproof_owner:{p}@db.example.test:5432/coverproof?sslmode=require",
        # libpq and SQLAlchemy's asyncpg dialect both take ?password=... (and ?sslpassword=...,
        # the client key's): the app connects with it, so it is as secret as the URL's own.
        "postgresql://coverproof_owner@db.example.test:5432/coverproof?password={p}"
        "&sslmode=require",
        "postgresql://coverproof_owner@db.example.test:5432/coverproof?sslpassword={p}"
        "&sslmode=require",
    ],
    ids=["in-the-url", "password-in-the-query", "sslpassword-in-the-query"],
)
def test_db_url_prints_the_owners_url_without_its_password(
    given: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = secrets.token_urlsafe(16)
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", given.format(p=password))
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", "postgresql://coverproof_app@db.example.test/c")
    assert main(["db", "url"]) == 0
    printed = capsys.readouterr()
    assert password not in printed.out + printed.err
    assert printed.out.strip() == (
        "postgresql://coverproof_owner@db.example.test:5432/coverproof?sslmode=require"
    )
