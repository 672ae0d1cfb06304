"""The plain routes: liveness, readiness and RFC 9116 security.txt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


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
