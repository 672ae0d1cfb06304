"""Production switches: no introspection, no "did you mean", no IDE. The dev app proves each
switch by showing the opposite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from tests.conftest import (
    Database,
    http_client,
    make_settings,
    new_signing_key_pem,
    shared_limits,
    started,
)
from tests.factories import Members, codes, gql

INTROSPECTION = "{ __schema { types { name } } }"
MISSPELLED = "{ firmm { name } }"
MISSPELLED_ARGUMENT = 'mutation { updateFirm(input: {nmae: "x"}) { firm { name } } }'
MISSPELLED_VARIABLE = "mutation($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { name } } }"


@pytest.fixture(scope="module")
async def production_app(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    settings = make_settings(
        database,
        tmp_path_factory.mktemp("production"),
        env="production",
        public_url="https://api.example.test",
        # Production refuses to start without SMTP and object storage; nothing is sent or
        # stored in these tests (an S3 client connects only when it is used).
        smtp_url="smtp://127.0.0.1:1",
        storage_url="s3://packs",
        s3_endpoint_url="http://127.0.0.1:1",
        audit_signing_key=new_signing_key_pem(),
        **shared_limits(),
    )
    assert settings.is_production
    async for running in started(create_app(settings)):
        yield running


@pytest.fixture
async def production(production_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(production_app) as client:
        yield client


def messages(body: dict[str, object]) -> list[str]:
    errors = body.get("errors", [])
    assert isinstance(errors, list)
    return [error["message"] for error in errors]


async def test_production_refuses_introspection(production: httpx.AsyncClient) -> None:
    body = await gql(production, INTROSPECTION)
    assert "data" not in body
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert messages(body)[0] == (
        "GraphQL introspection has been disabled, but the requested query contained the field "
        "'__schema'."
    )


async def test_production_refuses_introspection_of_one_type(
    production: httpx.AsyncClient,
) -> None:
    body = await gql(production, '{ __type(name: "Firm") { fields { name } } }')
    assert "data" not in body
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "'__type'" in messages(body)[0]


async def test_development_allows_introspection(client: httpx.AsyncClient) -> None:
    body = await gql(client, INTROSPECTION)
    assert "errors" not in body
    assert {"name": "Firm"} in body["data"]["__schema"]["types"]


async def test_production_still_answers_typename(production: httpx.AsyncClient) -> None:
    assert await gql(production, "{ __typename }") == {"data": {"__typename": "Query"}}


async def test_production_does_not_suggest_field_names(production: httpx.AsyncClient) -> None:
    body = await gql(production, MISSPELLED)
    assert messages(body) == ["Cannot query field 'firmm' on type 'Query'."]
    assert "Did you mean" not in str(body)


async def test_development_suggests_field_names(client: httpx.AsyncClient) -> None:
    body = await gql(client, MISSPELLED)
    assert messages(body) == [
        "Cannot query field 'firmm' on type 'Query'. Did you mean 'firm' or 'myFirms'?"
    ]


async def test_production_does_not_suggest_type_names(production: httpx.AsyncClient) -> None:
    body = await gql(production, "{ ... on Firmm { name } }")
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "Did you mean" not in str(body)


async def test_production_does_not_suggest_input_field_names(
    production: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(production, MISSPELLED_ARGUMENT, member=owner)
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "Did you mean" not in str(body)


async def test_production_does_not_suggest_input_field_names_in_variables(
    production: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(production, MISSPELLED_VARIABLE, {"i": {"nmae": "x"}}, member=owner)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "Did you mean" not in str(body)


async def test_production_serves_no_ide(production: httpx.AsyncClient) -> None:
    response = await production.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "graphiql" not in response.text.lower()
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_development_serves_the_ide(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_production_trusts_its_public_origin(
    production: httpx.AsyncClient, members: Members
) -> None:
    viewer = await members.create()
    allowed = await gql(
        production,
        "{ viewer { role } }",
        member=viewer,
        headers={"origin": "https://api.example.test"},
    )
    assert allowed == {"data": {"viewer": {"role": "OWNER"}}}
    refused = await gql(
        production, "{ viewer { role } }", member=viewer, headers={"origin": "https://testserver"}
    )
    assert codes(refused) == ["FORBIDDEN_ORIGIN"]


async def test_production_sends_the_security_headers(production: httpx.AsyncClient) -> None:
    response = await production.post("/graphql", json={"query": "{ viewer { role } }"})
    assert response.status_code == 200
    assert (
        response.headers["strict-transport-security"]
        == "max-age=63072000; includeSubDomains; preload"
    )
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


async def test_production_security_txt_points_at_the_public_url(
    production: httpx.AsyncClient,
) -> None:
    response = await production.get("/.well-known/security.txt")
    assert "Canonical: https://api.example.test/.well-known/security.txt\n" in response.text
    assert "Policy: https://api.example.test/security/disclosure\n" in response.text


def test_production_settings_refuse_an_http_public_url(database: Database, tmp_path: Path) -> None:
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="PUBLIC_URL must be an https"):
        create_app(make_settings(database, tmp_path, env="production", public_url="http://x"))
