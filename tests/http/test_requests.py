"""Request shapes: only a JSON POST runs an operation; everything else is a stable 4xx."""

from __future__ import annotations

import re

import httpx
import pytest

JSON = {"content-type": "application/json"}
QUERY = b'{"query": "{ viewer { role } }"}'


def code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


async def test_a_json_post_runs_the_operation(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=QUERY, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": None}}


async def test_a_charset_parameter_on_the_json_content_type_is_fine(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql", content=QUERY, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": None}}


async def test_a_form_encoded_post_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", data={"query": "{ viewer { role } }"})
    assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert response.status_code == 415
    assert code(response) == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_text_plain_post_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=QUERY, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert code(response) == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_multipart_post_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        data={"operations": QUERY.decode()},
        files={"0": ("a.txt", b"hello", "text/plain")},
    )
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 415
    assert code(response) == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_post_without_a_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=QUERY)
    assert "content-type" not in response.request.headers
    assert response.status_code == 415
    assert code(response) == "UNSUPPORTED_MEDIA_TYPE"


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"query": "{ viewer { role } }",',
        b'{"query": "{ viewer \xff\xfe { role } }"}',
        b'{"query": "{ viewer { role } }", "variables": {"deep": ' + DEEP + b"}}",
        b"",
        b"   ",
    ],
    ids=["garbage", "truncated", "invalid-utf8", "nested-5000", "empty", "whitespace"],
)
async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/graphql", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"message": "The body is not valid JSON.", "extensions": {"code": "BAD_REQUEST"}}
        ]
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" + QUERY + b"," + QUERY + b"]", "Batched operations are not supported."),
        (b'"{ viewer { role } }"', "The body must be a JSON object."),
        (b"null", "The body must be a JSON object."),
        (b"{}", "`query` must be a non-empty string."),
        (b'{"query": ""}', "`query` must be a non-empty string."),
        (b'{"query": 5}', "`query` must be a non-empty string."),
        (b'{"query": ["{ viewer { role } }"]}', "`query` must be a non-empty string."),
        (
            b'{"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "ab"}}}',
            "`query` must be a non-empty string.",
        ),
        (b'{"extensions": {"persistedQuery": "x"}}', "`query` must be a non-empty string."),
        (
            b'{"query": "{ viewer { role } }", "variables": []}',
            "`variables` must be an object or null.",
        ),
        (
            b'{"query": "{ viewer { role } }", "variables": "{}"}',
            "`variables` must be an object or null.",
        ),
        (
            b'{"query": "{ viewer { role } }", "extensions": "x"}',
            "`extensions` must be an object or null.",
        ),
        (
            b'{"query": "{ viewer { role } }", "operationName": 5}',
            "`operationName` must be a string or null.",
        ),
    ],
    ids=[
        "batch",
        "string",
        "null",
        "no-query",
        "empty-query",
        "query-number",
        "query-list",
        "apq-version-2",
        "apq-not-an-object",
        "variables-list",
        "variables-string",
        "extensions-string",
        "operation-name-number",
    ],
)
async def test_a_json_body_of_the_wrong_shape_is_400(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post("/graphql", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]
    }


async def test_an_accept_of_only_csv_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=QUERY, headers={**JSON, "accept": "text/csv"})
    assert response.status_code == 406
    assert code(response) == "NOT_ACCEPTABLE"


@pytest.mark.parametrize("accept", ["*/*", "application/*", "text/csv, application/json;q=0.5"])
async def test_an_accept_that_admits_json_is_served_json(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.post("/graphql", content=QUERY, headers={**JSON, "accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


# -- GET -----------------------------------------------------------------------------------


async def test_a_query_over_get_is_405_with_allow_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{viewer{role}}"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert code(response) == "METHOD_NOT_ALLOWED"


async def test_a_mutation_over_get_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={"query": 'mutation { updateFirm(input: {name: "x"}) { firm { name } } }'},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert code(response) == "METHOD_NOT_ALLOWED"


async def test_graphiql_in_development_runs_only_nonce_tagged_scripts(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    nonces = [source for source in directives["script-src"] if source.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", nonces[0])
    assert nonce is not None
    scripts = re.findall(r"<script\b[^>]*>", response.text)
    assert len(scripts) >= 1
    assert all(f'nonce="{nonce.group(1)}"' in tag for tag in scripts)
    assert directives["default-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["script-src"]


async def test_graphiql_gets_a_fresh_nonce_each_time(client: httpx.AsyncClient) -> None:
    first = await client.get("/graphql", headers={"accept": "text/html"})
    second = await client.get("/graphql", headers={"accept": "text/html"})
    csp = [first.headers["content-security-policy"], second.headers["content-security-policy"]]
    assert csp[0] != csp[1]


# -- GraphQL over HTTP ---------------------------------------------------------------------

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def post_accepting(client: httpx.AsyncClient, query: str, accept: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers={"accept": accept})


async def test_a_syntax_error_is_400_in_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await post_accepting(client, "{ viewer { role }", GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["GRAPHQL_PARSE_FAILED"]


async def test_a_validation_error_is_400_in_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    response = await post_accepting(client, "{ nope }", GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body
    assert [error["extensions"]["code"] for error in body["errors"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]


async def test_a_valid_query_is_200_in_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await post_accepting(client, "{ viewer { role } }", GRAPHQL_RESPONSE)
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.content == b'{"data":{"viewer":null}}'


async def test_a_field_error_is_200_with_data_in_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    response = await post_accepting(client, "{ firm { name } }", GRAPHQL_RESPONSE)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert [error["extensions"]["code"] for error in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_validation_error_is_200_in_plain_json(client: httpx.AsyncClient) -> None:
    response = await post_accepting(client, "{ nope }", "application/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert body["errors"][0]["message"].startswith("Cannot query field 'nope' on type 'Query'.")


async def test_a_syntax_error_is_graphql_parse_failed_in_plain_json(
    client: httpx.AsyncClient,
) -> None:
    response = await post_accepting(client, "{ viewer { role }", "application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert body["errors"][0]["message"].startswith("Syntax Error:")
