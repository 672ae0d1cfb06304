"""Size limits: the request body (413 before parsing) and the GraphQL document's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import Source, TokenKind
from graphql.language import Lexer
from starlette.applications import Starlette
from starlette.types import Message

from app.config import Settings
from app.errors import MAX_ERRORS
from app.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, build_schema, limits
from app.schema.limits import MAX_DIRECTIVES, MAX_DIRECTIVES_PER_FIELD, MAX_DUPLICATE_FIELDS
from tests.factories import codes, gql

JSON = {"content-type": "application/json"}
TOO_LARGE = {
    "errors": [{"message": "Request body too large.", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]
}


def padded_body(size: int) -> bytes:
    """A valid JSON operation of exactly ``size`` bytes (padded with whitespace)."""
    body = b'{"query": "{ viewer { role } }"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def chunks(body: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


# -- request body --------------------------------------------------------------------------


def test_the_configured_body_limit_is_100000_bytes(settings: Settings) -> None:
    assert settings.max_body_bytes == 100_000
    assert len(padded_body(settings.max_body_bytes)) == 100_000


async def test_a_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/graphql", content=padded_body(settings.max_body_bytes + 1), headers=JSON
    )
    assert response.status_code == 413
    assert response.json() == TOO_LARGE


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/graphql", content=chunks(padded_body(settings.max_body_bytes + 1)), headers=JSON
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == TOO_LARGE


async def test_a_body_exactly_at_the_limit_is_served(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/graphql", content=padded_body(settings.max_body_bytes), headers=JSON
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": None}}


async def test_a_chunked_body_exactly_at_the_limit_is_served(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/graphql", content=chunks(padded_body(settings.max_body_bytes)), headers=JSON
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": None}}


async def test_a_non_numeric_content_length_is_413(app: Starlette) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"-1")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 443),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413


# -- GraphQL document limits ---------------------------------------------------------------


def messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors", [])]


def nested(levels: int) -> str:
    """``{ f1 { f2 { ... f<levels> } } }``: ``levels`` fields, each inside the one before."""
    query = f"f{levels}"
    for level in range(levels - 1, 0, -1):
        query = f"f{level} {{ {query} }}"
    return f"{{ {query} }}"


def token_count(document: str) -> int:
    lexer = Lexer(Source(document))
    count = 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


DEPTH_ERROR = f"'anonymous' exceeds maximum operation depth of {MAX_DEPTH}"


async def test_a_document_deeper_than_max_depth_is_refused(client: httpx.AsyncClient) -> None:
    # The root field is depth 0, so MAX_DEPTH + 2 nested fields go one level too deep.
    body = await gql(client, nested(MAX_DEPTH + 2))
    assert DEPTH_ERROR in messages(body)
    assert "data" not in body


async def test_a_document_at_max_depth_passes_the_depth_limit(client: httpx.AsyncClient) -> None:
    # Nothing in this schema is that deep: the fields are unknown, but depth is not the problem.
    body = await gql(client, nested(MAX_DEPTH + 1))
    assert messages(body) == ["Cannot query field 'f1' on type 'Query'."]
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{n}: viewer {{ role }}" for n in range(count)) + " }"


async def test_more_than_max_aliases_is_refused(client: httpx.AsyncClient) -> None:
    body = await gql(client, aliased(MAX_ALIASES + 1))
    assert messages(body) == [f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"]
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_max_aliases_is_served(client: httpx.AsyncClient) -> None:
    body = await gql(client, aliased(MAX_ALIASES))
    assert body == {"data": {f"a{n}": None for n in range(MAX_ALIASES)}}


def spreads(count: int, fragment: str) -> str:
    return "{ " + "...F " * count + "} " + fragment


async def test_more_than_max_tokens_is_refused(client: httpx.AsyncClient) -> None:
    document = spreads(996, "fragment F on Query { __typename }")
    assert token_count(document) == MAX_TOKENS + 1
    body = await gql(client, document)
    assert messages(body) == [
        f"Syntax Error: Document contains more than {MAX_TOKENS} tokens. Parsing aborted."
    ]
    assert codes(body) == ["GRAPHQL_PARSE_FAILED"]


async def test_comments_count_towards_max_tokens(client: httpx.AsyncClient) -> None:
    document = "{ viewer { role } }\n" + "#\n" * MAX_TOKENS
    body = await gql(client, document)
    assert codes(body) == ["GRAPHQL_PARSE_FAILED"]


async def test_max_tokens_is_served(client: httpx.AsyncClient) -> None:
    document = spreads(994, "fragment F on Query { viewer { role } }")
    assert token_count(document) == MAX_TOKENS
    body = await gql(client, document)
    assert body == {"data": {"viewer": None}}


def repeated(count: int) -> str:
    return "{ " + "__typename " * count + "}"


async def test_a_field_repeated_more_than_max_duplicate_fields_is_refused(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, repeated(MAX_DUPLICATE_FIELDS + 1))
    assert messages(body) == ["A field is repeated too many times."]
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_field_repeated_max_duplicate_fields_times_is_served(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, repeated(MAX_DUPLICATE_FIELDS))
    assert body == {"data": {"__typename": "Query"}}


LISTS = sorted(
    name
    for name, field in build_schema(production=False)._schema.query_type.fields.items()  # type: ignore[union-attr]
    if limits._is_list(field.type)
)


def test_the_lists_asked_once_are_the_schemas_lists_and_pages() -> None:
    assert {"templates", "apiKeys", "declarations", "members", "auditEntries"} <= set(LISTS)
    assert not {"declaration", "viewer"} & set(LISTS)


@pytest.mark.parametrize("name", LISTS)
async def test_a_list_asked_for_twice_in_a_query_is_refused(
    client: httpx.AsyncClient, name: str
) -> None:
    """Aliases multiplied the largest page of a list thirtyfold: 43 MB of templates, 128 MB of
    API keys, built for seconds on the event loop every firm shares."""
    for document in (
        f"{{ a: {name} {{ __typename }} b: {name} {{ __typename }} }}",
        f"{{ {name} {{ __typename }} ...F }} fragment F on Query {{ {name} {{ __typename }} }}",
    ):
        body = await gql(client, document)
        assert messages(body) == [f"Ask for {name} once in an operation."], document
        assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_each_list_may_be_asked_for_once_in_one_query(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ " + " ".join(f"{n} {{ __typename }}" for n in LISTS) + " }")
    assert "GRAPHQL_VALIDATION_FAILED" not in codes(body), body


def with_directives(count: int) -> str:
    return "{ viewer " + "@include(if: true) " * count + "{ role } }"


async def test_more_than_max_directives_on_one_field_is_refused(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, with_directives(MAX_DIRECTIVES_PER_FIELD + 1))
    assert "Too many directives." in messages(body)


async def test_max_directives_on_one_field_passes_the_directive_limit(
    client: httpx.AsyncClient,
) -> None:
    # Only @include and @skip apply to fields, so four on one field repeat one of them: the
    # document is invalid for that reason alone, not for the number of directives.
    body = await gql(client, with_directives(MAX_DIRECTIVES_PER_FIELD))
    assert set(messages(body)) == {
        "The directive '@include' can only be used once at this location."
    }


def directives_on_fields(fields: int) -> str:
    field = "viewer @include(if: true) @skip(if: false) { role }"
    return "{ " + " ".join(f"a{n}: {field}" for n in range(fields)) + " }"


async def test_more_than_max_directives_in_a_document_is_refused(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, directives_on_fields(MAX_DIRECTIVES // 2 + 1))
    # Reported at the field that crosses the limit and at every field after it.
    assert set(messages(body)) == {"Too many directives."}
    assert "data" not in body


async def test_max_directives_in_a_document_is_served(client: httpx.AsyncClient) -> None:
    body = await gql(client, directives_on_fields(MAX_DIRECTIVES // 2))
    assert body == {"data": {f"a{n}": None for n in range(MAX_DIRECTIVES // 2)}}


async def test_hundreds_of_invalid_fields_return_at_most_max_errors(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, "{ " + " ".join(f"f{n}" for n in range(300)) + " }")
    assert len(body["errors"]) == MAX_ERRORS
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert body["errors"][0]["message"] == "Cannot query field 'f0' on type 'Query'."


async def test_a_spread_of_an_unknown_fragment_is_a_validation_error(
    client: httpx.AsyncClient,
) -> None:
    # The depth limiter looks fragments up by name before graphql-core reports unknown ones.
    body = await gql(client, "{ ...Missing }")
    assert messages(body) == ["Unknown fragment 'Missing'."]
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
