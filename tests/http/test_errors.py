"""Errors: unexpected failures are masked with a request id; client mistakes keep stable codes
and never become INTERNAL_SERVER_ERROR or a 500."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from app.auth.actor import Actor
from tests.factories import Members, codes, gql

SECRET = "secret detail xyz"
UPDATE_WITH_VARIABLE = "mutation($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { name } } }"


async def test_an_unexpected_error_is_masked_with_the_request_id(
    client: httpx.AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError(SECRET)

    monkeypatch.setattr("app.firms.service.get_firm", broken)
    owner = await members.create()
    response = await client.post(
        "/graphql", json={"query": "{ firm { name } }"}, headers=owner.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [
        {
            "message": "Internal server error.",
            "path": ["firm"],
            "extensions": {
                "code": "INTERNAL_SERVER_ERROR",
                "requestId": response.headers["x-request-id"],
            },
        }
    ]
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text


async def test_the_patched_service_is_the_one_the_resolver_calls(
    client: httpx.AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Proves the masking test above really reached its failing service.
    calls: list[Actor] = []
    from app.firms import service

    real = service.get_firm

    async def spy(session: object, actor: Actor) -> object:
        calls.append(actor)
        return await real(session, actor)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "get_firm", spy)
    owner = await members.create()
    body = await gql(client, "{ firm { name } }", member=owner)
    assert body == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
    assert [actor.id for actor in calls] == [owner.user_id]


async def test_an_anonymous_private_field_is_unauthenticated(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ firm { name } }")
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    "variables",
    [{}, {"i": "x"}, {"i": {"name": 5}}, {"i": {"nope": "x"}}],
    ids=["missing", "not-an-object", "wrong-type", "unknown-field"],
)
async def test_a_variable_of_the_wrong_shape_is_bad_user_input(
    client: httpx.AsyncClient, members: Members, variables: dict[str, object]
) -> None:
    owner = await members.create()
    body = await gql(client, UPDATE_WITH_VARIABLE, variables, member=owner)
    assert "data" not in body
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"].startswith("Variable '$i'")


# A nullable variable may stand for an argument, or an input field, that is non-null with a
# default (the shape code generators write); graphql-core refuses a null sent for it only while
# running the field.
NULL_FOR_A_DEFAULT = [
    ("query($n: Int) { declarations(first: $n) { edges { node { id } } } }", {"n": None}),
    (
        "mutation($s: Boolean, $t: UUID!) { bulkCreateDeclarations(input: {templateId: $t, "
        'recipients: [{name: "Pat", email: "pat@example.test"}], send: $s}) '
        "{ declarations { id } } }",
        {"s": None, "t": str(uuid.uuid4())},
    ),
]


@pytest.mark.parametrize(("query", "variables"), NULL_FOR_A_DEFAULT, ids=["argument", "field"])
async def test_a_null_for_a_non_null_argument_with_a_default_is_bad_user_input(
    client: httpx.AsyncClient,
    members: Members,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, object],
) -> None:
    """The caller's mistake, named as graphql-core names it: not an unexpected error, which
    would be logged with a traceback for every such request."""
    owner = await members.create()
    with caplog.at_level(logging.ERROR, logger="coverproof.errors"):
        body = await gql(client, query, variables, member=owner)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"].startswith("Argument '"), body
    assert "requestId" not in body["errors"][0]["extensions"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_invalid_input_value_is_bad_user_input_with_fields(
    client: httpx.AsyncClient, members: Members
) -> None:
    owner = await members.create()
    body = await gql(client, UPDATE_WITH_VARIABLE, {"i": {"frn": "12"}}, member=owner)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert [field["field"] for field in body["errors"][0]["extensions"]["fields"]] == ["frn"]


async def test_an_unused_variable_is_a_validation_error(client: httpx.AsyncClient) -> None:
    body = await gql(client, "query($n: String) { viewer { role } }", {"n": "x"})
    assert "data" not in body
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


GRAPHQL_RESPONSE = {"accept": "application/graphql-response+json"}


@pytest.mark.parametrize("operation_name", ["B", ""])
async def test_an_operation_name_not_in_the_document_is_400(
    client: httpx.AsyncClient, operation_name: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { viewer { role } }", "operationName": operation_name},
        headers=GRAPHQL_RESPONSE,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_subscription_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "subscription { viewer { role } }"}, headers=GRAPHQL_RESPONSE
    )
    assert response.status_code == 400
    assert "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_the_named_operation_is_the_one_that_runs(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { viewer { role } } query B { __typename }", "operationName": "B"},
    )
    assert response.json() == {"data": {"__typename": "Query"}}
