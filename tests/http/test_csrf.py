"""Cross-site requests: only trusted origins may ride the session cookie, and CORS says so."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from tests.factories import Member, Members, codes, gql

RENAME = 'mutation { updateFirm(input: {name: "%s"}) { firm { name } } }'
FIRM_NAME = "{ firm { name } }"
EVIL = "https://evil.example"
ALLOWED = "https://app.example.test"


async def firm_name(client: httpx.AsyncClient, member: Member) -> str:
    body = await gql(client, FIRM_NAME, member=member)
    name: str = body["data"]["firm"]["name"]
    return name


async def test_the_fixture_trusts_exactly_the_public_and_allowed_origins(
    settings: Settings,
) -> None:
    assert settings.trusted_origins == frozenset({"https://testserver", ALLOWED})


@pytest.mark.parametrize("origin", [EVIL, "null", "http://testserver", "https://testserver.evil"])
async def test_a_post_from_an_untrusted_origin_is_403_and_does_not_run(
    client: httpx.AsyncClient, members: Members, origin: str
) -> None:
    owner = await members.create()
    response = await client.post(
        "/graphql",
        json={"query": RENAME % "Evil"},
        headers={**owner.headers, "origin": origin},
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN_ORIGIN"
    assert "data" not in response.json()
    assert await firm_name(client, owner) == "Acme Advisers Ltd"


@pytest.mark.parametrize("origin", [ALLOWED, "https://testserver"])
async def test_a_post_from_a_trusted_origin_runs(
    client: httpx.AsyncClient, members: Members, origin: str
) -> None:
    owner = await members.create()
    body = await gql(client, RENAME % "Renamed Ltd", member=owner, headers={"origin": origin})
    assert body == {"data": {"updateFirm": {"firm": {"name": "Renamed Ltd"}}}}
    assert await firm_name(client, owner) == "Renamed Ltd"


async def test_a_post_without_an_origin_runs(client: httpx.AsyncClient, members: Members) -> None:
    owner = await members.create()
    body = await gql(client, RENAME % "No Origin Ltd", member=owner)
    assert codes(body) == []
    assert await firm_name(client, owner) == "No Origin Ltd"


async def test_an_untrusted_origin_is_refused_even_for_a_query(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(client, FIRM_NAME, member=owner, headers={"origin": EVIL})
    assert codes(body) == ["FORBIDDEN_ORIGIN"]


async def test_a_preflight_from_an_allowed_origin_is_allowed_with_credentials(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/graphql",
        headers={
            "origin": ALLOWED,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_a_preflight_from_an_untrusted_origin_is_not_allowed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/graphql",
        headers={
            "origin": EVIL,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_response_to_an_allowed_origin_names_it(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    response = await client.post(
        "/graphql", json={"query": FIRM_NAME}, headers={**owner.headers, "origin": ALLOWED}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_a_response_to_an_untrusted_origin_does_not_name_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ viewer { role } }"}, headers={"origin": EVIL}
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
