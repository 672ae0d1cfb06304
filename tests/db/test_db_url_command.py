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
