"""The plain routes: liveness, readiness and RFC 9116 security.txt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.db import calls


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_flood_of_readiness_probes_asks_the_database_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes pass the per-address limits, and each took a connection of the pool: the answer
    stands for a second, so fifty at once ask the database once at most."""
    pings, ping = [], calls.ping

    async def counted(conn: Any) -> None:
        pings.append(conn)
        await ping(conn)

    monkeypatch.setattr(calls, "ping", counted)
    answers = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert len(pings) <= 1


def fields(text: str) -> dict[str, str]:
    pairs = (line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


async def test_security_txt_names_contact_policy_and_languages(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/security.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    txt = fields(response.text)
    assert txt["Contact"] == "mailto:security@coverproof.co.uk"
    assert txt["Policy"] == "https://testserver/security/disclosure"
    assert txt["Preferred-Languages"] == "en"
    assert txt["Canonical"] == "https://testserver/.well-known/security.txt"


async def test_security_txt_expires_in_the_future_but_within_a_year(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/.well-known/security.txt")
    expires = datetime.strptime(fields(response.text)["Expires"], "%Y-%m-%dT%H:%M:%SZ")
    expires = expires.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    assert expires > now
    assert expires - now < timedelta(days=366)
