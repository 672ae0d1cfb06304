"""The security headers on the responses tests/http/test_headers.py does not make: the pages
(which narrow the CSP with a nonce of their own), the well-known files, a CORS preflight, the
per-IP ceiling's 429 and a 500 that escapes every endpoint, each from the real app. The PDF
download's are checked where a pack is made (tests/evidence/test_local.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from tests.conftest import Database, http_client, make_settings, started
from tests.http.test_headers import SECURITY_HEADERS, permissions

PAGE_CSP_MUST_HOLD = ("default-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")


def assert_security_headers(response: httpx.Response, page: bool = False) -> None:
    """Every header exactly as the middleware sends it; a page's CSP may be its own, narrowed
    with a nonce, but must still deny everything by default and every framing."""
    for name, value in SECURITY_HEADERS.items():
        if page and name == "content-security-policy":
            csp = response.headers[name]
            assert all(part in csp for part in PAGE_CSP_MUST_HOLD), csp
        else:
            assert response.headers.get(name) == value, (name, response.status_code)
    assert permissions(response.headers["permissions-policy"])["camera"] == "()"
    assert len(response.headers.get_list("x-request-id")) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/security.txt",
        "/.well-known/coverproof-audit-key",
        "/.well-known/coverproof-audit-key.jwk",
        "/.well-known/coverproof-pack-certificate.pem",
        "/readyz",
    ],
)
async def test_the_plain_routes_carry_the_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert_security_headers(response)


@pytest.mark.parametrize("path", ["/respond", "/respond/not-a-real-token", "/auth/verify-email"])
async def test_the_pages_carry_the_headers_with_their_own_narrower_csp(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert "nonce-" in response.headers["content-security-policy"]
    assert_security_headers(response, page=True)


async def test_a_cors_preflight_carries_the_headers(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/graphql",
        headers={
            "origin": "https://app.example.test",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.example.test"
    assert_security_headers(response)


async def test_a_500_that_escapes_every_endpoint_carries_the_headers(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: object) -> None:
        raise RuntimeError("a bug below every handler")

    monkeypatch.setattr("app.http.graphql.app_state", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 500
    assert "a bug below" not in response.text
    assert_security_headers(response)


@pytest.fixture
async def ceiling_app(database: Database, tmp_path: Path) -> AsyncIterator[Starlette]:
    settings = make_settings(database, tmp_path, ip_requests_per_minute=2)
    async for running in started(create_app(settings)):
        yield running


async def test_the_per_ip_ceiling_refusal_carries_the_headers(ceiling_app: Starlette) -> None:
    async with http_client(ceiling_app) as client:
        answers = [await client.get("/.well-known/security.txt") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert_security_headers(answers[-1])
