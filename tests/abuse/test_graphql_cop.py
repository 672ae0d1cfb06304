"""graphql-cop's checks, each run against the production configuration, each refused.

One test per check (https://github.com/dolevf/graphql-cop, lib/tests/*), using its own payloads
where it has one and the harsher variant where ours is stronger. Every refusal is pinned to its
exact HTTP status and ``errors[0].extensions.code``; "succeeds" means what graphql-cop looks for
(data back, an IDE page, a trace, a stack trace, a suggestion) or a side effect on the firm.

Document-level refusals are checked under both response media types of GraphQL over HTTP:
``application/json`` answers a request error with 200, ``application/graphql-response+json``
with 400. Neither has ``data``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.errors import MAX_ERRORS
from app.main import create_app
from app.partners import first_party
from app.schema import MAX_ALIASES
from tests.abuse.support import LEAKS
from tests.conftest import (
    Database,
    http_client,
    make_settings,
    new_signing_key_pem,
    shared_limits,
    started,
)
from tests.declarations.test_loop import FIT
from tests.factories import Member, Members

PUBLIC_URL = "https://api.example.test"
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
# (Accept, status of a request error): the refusal is the same code either way.
ACCEPTS = [(JSON, 200), (GRAPHQL_RESPONSE, 400)]
ACCEPT_IDS = ["application-json", "graphql-response-json"]

FIRM_NAME = "{ firm { name } }"
RENAME = 'mutation { updateFirm(input: {name: "Pwned Ltd"}) { firm { name } } }'
ORIGINAL_NAME = "Acme Advisers Ltd"


@pytest.fixture(scope="module")
async def production_app(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    settings = make_settings(
        database,
        tmp_path_factory.mktemp("graphql-cop"),
        env="production",
        public_url=PUBLIC_URL,
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


@pytest.fixture
async def owner(members: Members) -> Member:
    return await members.create()


# -- helpers -------------------------------------------------------------------------------


async def post(
    client: httpx.AsyncClient,
    query: str,
    member: Member | None = None,
    accept: str = JSON,
    **body: Any,
) -> httpx.Response:
    headers = {"accept": accept, **(member.headers if member else {})}
    return await client.post("/graphql", json={"query": query, **body}, headers=headers)


def refusal(response: httpx.Response) -> tuple[int, str]:
    """The status and the first error's code, after checking the answer leaks nothing."""
    assert_clean(response)
    body = response.json()
    assert "data" not in body or body["data"] is None, body
    return response.status_code, body["errors"][0]["extensions"]["code"]


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert LEAKS.search(response.text) is None, response.text
    assert "did you mean" not in response.text.lower(), response.text
    body = response.json()
    assert "tracing" not in body.get("extensions", {}), body
    for error in body.get("errors", []):
        extensions = error.get("extensions", {})
        assert set(extensions) & {"exception", "stacktrace", "tracing"} == set(), error
        assert isinstance(extensions.get("code"), str), error


def codes(response: httpx.Response) -> set[str]:
    return {error["extensions"]["code"] for error in response.json()["errors"]}


def messages(response: httpx.Response) -> list[str]:
    return [error["message"] for error in response.json()["errors"]]


async def firm_name(client: httpx.AsyncClient, member: Member) -> str:
    response = await post(client, FIRM_NAME, member)
    name: str = response.json()["data"]["firm"]["name"]
    return name


async def still_signed_in(client: httpx.AsyncClient, member: Member) -> bool:
    response = await post(client, "{ viewer { user { id } } }", member)
    return response.json() == {"data": {"viewer": {"user": {"id": str(member.user_id)}}}}


# -- denial of service ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["__typename", "viewer { role }", "firm { name }"], ids=["typename", "viewer", "firm"]
)
@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_alias_overloading_is_refused(
    production: httpx.AsyncClient, owner: Member, field: str, accept: str, status: int
) -> None:
    document = "query cop { " + " ".join(f"alias{n}: {field}" for n in range(100)) + " }"
    response = await post(production, document, owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert messages(response) == [f"100 aliases found. Allowed: {MAX_ALIASES}"]


async def test_batching_is_refused_and_runs_nothing(
    production: httpx.AsyncClient, owner: Member
) -> None:
    batch = [{"query": RENAME}] + [{"query": "query cop { __typename }"}] * 9
    response = await production.post(
        "/graphql",
        content=json.dumps(batch),
        headers={**owner.headers, "content-type": JSON, "accept": JSON},
    )
    assert len(batch) == 10
    assert refusal(response) == (400, "BAD_REQUEST")
    assert messages(response) == ["Batched operations are not supported."]
    assert await firm_name(production, owner) == ORIGINAL_NAME


CIRCULAR_FRAGMENTS = {
    "spread-from-query": (
        "query cop { ...A } fragment A on Query { __typename ...B } fragment B on Query { ...A }"
    ),
    # graphql-cop's own payload.
    "graphql-cop": (
        "query { __schema { ...A } } "
        "fragment A on __Schema { __typename ...B } fragment B on __Schema { ...A }"
    ),
}


@pytest.mark.parametrize("document", CIRCULAR_FRAGMENTS.values(), ids=CIRCULAR_FRAGMENTS.keys())
@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_circular_fragments_are_refused(
    production: httpx.AsyncClient, owner: Member, document: str, accept: str, status: int
) -> None:
    response = await post(production, document, owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert codes(response) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "Cannot spread fragment 'A' within itself via 'B'." in messages(response)


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE], ids=ACCEPT_IDS)
async def test_circular_fragments_without_an_operation_are_refused(
    production: httpx.AsyncClient, owner: Member, accept: str
) -> None:
    # No operation to run, so it is refused before validation, with the request-shape code.
    document = "fragment A on Query { ...B } fragment B on Query { ...A }"
    response = await post(production, document, owner, accept)
    assert refusal(response) == (400, "BAD_REQUEST")
    assert messages(response) == ["The operation cannot be run here."]


CIRCULAR_INTROSPECTION = (
    "query cop { __schema { types { fields { type { fields { type { fields { type { fields "
    "{ type { ofType { ofType { ofType { name } } } } } } } } } } } } } }"
)


@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_circular_introspection_is_refused(
    production: httpx.AsyncClient, owner: Member, accept: str, status: int
) -> None:
    response = await post(production, CIRCULAR_INTROSPECTION, owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert codes(response) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "Maximum introspection depth exceeded" in messages(response)


async def test_circular_introspection_is_refused_even_with_introspection_on(
    client: httpx.AsyncClient,
) -> None:
    # The development app allows introspection; the depth rule still stops the cycle.
    response = await post(client, CIRCULAR_INTROSPECTION, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "Maximum introspection depth exceeded",
                "locations": [{"line": 1, "column": 13}],
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
    }


DIRECTIVES = {
    "include-x100": "query cop { viewer" + " @include(if: true)" * 100 + " { role } }",
    "graphql-cop": "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }",
}


@pytest.mark.parametrize("document", DIRECTIVES.values(), ids=DIRECTIVES.keys())
@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_directive_overloading_is_refused(
    production: httpx.AsyncClient, owner: Member, document: str, accept: str, status: int
) -> None:
    response = await post(production, document, owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert codes(response) == {"GRAPHQL_VALIDATION_FAILED"}
    # A hundred directives cannot buy a hundred errors: the answer stays bounded.
    assert len(response.json()["errors"]) <= MAX_ERRORS
    assert set(messages(response)) <= {
        "Too many directives.",
        "Unknown directive '@aa'.",
        "The directive '@include' can only be used once at this location.",
    }


@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_field_duplication_is_refused(
    production: httpx.AsyncClient, owner: Member, accept: str, status: int
) -> None:
    response = await post(production, "query cop { " + "__typename " * 500 + "}", owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert messages(response) == ["A field is repeated too many times."]


# -- information disclosure ----------------------------------------------------------------

INTROSPECTION = {
    "graphql-cop": "query cop { __schema { types { name fields { name } } } }",
    "type": 'query cop { __type(name: "Firm") { name fields { name } } }',
    "in-fragment": "query cop { ...F } fragment F on Query { __schema { queryType { name } } }",
}


@pytest.mark.parametrize("document", INTROSPECTION.values(), ids=INTROSPECTION.keys())
@pytest.mark.parametrize(("accept", "status"), ACCEPTS, ids=ACCEPT_IDS)
async def test_introspection_is_refused_in_production(
    production: httpx.AsyncClient, owner: Member, document: str, accept: str, status: int
) -> None:
    # Signed in, too: introspection is off for everyone, not just strangers.
    response = await post(production, document, owner, accept)
    assert refusal(response) == (status, "GRAPHQL_VALIDATION_FAILED")
    assert codes(response) == {"GRAPHQL_VALIDATION_FAILED"}
    assert messages(response)[0].startswith("GraphQL introspection has been disabled")


MISSPELLED = {
    "graphql-cop": ("query cop { __schema { directive } }", None, "GRAPHQL_VALIDATION_FAILED"),
    "nested-field": ("{ firm { nmae } }", None, "GRAPHQL_VALIDATION_FAILED"),
    "argument": ("{ declarations(frist: 5) { __typename } }", None, "GRAPHQL_VALIDATION_FAILED"),
    "directive-argument": ("{ __typename @include(iff: true) }", None, "GRAPHQL_VALIDATION_FAILED"),
    "enum-literal": (
        "{ declarations(filter: {status: SENTT}) { __typename } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "variable-type": (
        "query($f: DeclarationFilterInpt) { declarations(filter: $f) { __typename } }",
        None,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "enum-variable": (
        "query($f: DeclarationFilterInput) { declarations(filter: $f) { __typename } }",
        {"f": {"status": "SENTT"}},
        "BAD_USER_INPUT",
    ),
    "input-field-variable": (
        "query($f: DeclarationFilterInput) { declarations(filter: $f) { __typename } }",
        {"f": {"serach": "x"}},
        "BAD_USER_INPUT",
    ),
}


@pytest.mark.parametrize(
    ("document", "variables", "code"), MISSPELLED.values(), ids=MISSPELLED.keys()
)
async def test_field_suggestions_are_never_given(
    production: httpx.AsyncClient,
    owner: Member,
    document: str,
    variables: dict[str, Any] | None,
    code: str,
) -> None:
    response = await post(production, document, owner, variables=variables)
    assert refusal(response) == (200, code)  # refusal() also checks for "did you mean"
    assert "mean" not in response.text.lower()


async def test_no_ide_is_served(production: httpx.AsyncClient) -> None:
    heuristics = ("graphiql", "playground", "altair", "voyager", "<html", "<script")
    response = await production.get("/graphql", headers={"accept": "text/html"})
    assert refusal(response) == (405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, POST"
    for path in ("/graphiql", "/playground", "/altair", "/graphql/console", "/console"):
        response = await production.get(path, headers={"accept": "text/html"})
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/plain"), path
        assert not any(word in response.text.lower() for word in heuristics), path


async def test_queries_over_get_are_refused(production: httpx.AsyncClient, owner: Member) -> None:
    response = await production.get(
        "/graphql", params={"query": "query cop { __typename }"}, headers=owner.headers
    )
    assert refusal(response) == (405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, POST"
    assert messages(response) == ["Send GraphQL query text with POST."]


async def test_mutations_over_get_are_refused_and_change_nothing(
    production: httpx.AsyncClient, owner: Member
) -> None:
    response = await production.get("/graphql", params={"query": RENAME}, headers=owner.headers)
    assert refusal(response) == (405, "METHOD_NOT_ALLOWED")
    assert await firm_name(production, owner) == ORIGINAL_NAME
    # graphql-cop's form of it: a mutation named in GET, with no field of consequence.
    response = await production.get(
        "/graphql", params={"query": "mutation cop { __typename }"}, headers=owner.headers
    )
    assert refusal(response) == (405, "METHOD_NOT_ALLOWED")


async def test_a_persisted_mutation_over_get_is_refused(
    production: httpx.AsyncClient, owner: Member
) -> None:
    # GET may name a trusted persisted document, but never a mutation: an <img src> on another
    # site must not be able to sign the user out.
    sign_out = first_party.document_id(first_party.SIGN_OUT)
    response = await production.get(
        "/graphql", params={"documentId": f"sha256:{sign_out}"}, headers=owner.headers
    )
    assert refusal(response) == (405, "METHOD_NOT_ALLOWED")
    assert messages(response) == ["Only persisted queries use GET."]
    assert await still_signed_in(production, owner)


FORM_POSTS = {
    "urlencoded": {"data": {"query": RENAME}},
    "multipart": {"data": {"query": RENAME}, "files": {"f": ("a.txt", b"x", "text/plain")}},
    "text-plain": {
        "content": json.dumps({"query": RENAME}),
        "headers": {"content-type": "text/plain"},
    },
}


@pytest.mark.parametrize("request_kwargs", FORM_POSTS.values(), ids=FORM_POSTS.keys())
async def test_simple_cross_site_posts_are_415_and_change_nothing(
    production: httpx.AsyncClient, owner: Member, request_kwargs: dict[str, Any]
) -> None:
    # The three content types a browser may POST cross-site without a CORS preflight.
    kwargs = dict(request_kwargs)
    headers = {**owner.headers, **kwargs.pop("headers", {})}
    response = await production.post("/graphql", headers=headers, **kwargs)
    assert refusal(response) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert await firm_name(production, owner) == ORIGINAL_NAME


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://api.example.test", "https://api.example.test.evil"],
)
async def test_a_session_cookie_with_a_cross_site_origin_is_refused(
    production: httpx.AsyncClient, owner: Member, origin: str
) -> None:
    response = await production.post(
        "/graphql", json={"query": RENAME}, headers={**owner.headers, "origin": origin}
    )
    assert refusal(response) == (403, "FORBIDDEN_ORIGIN")
    assert "access-control-allow-origin" not in response.headers
    assert await firm_name(production, owner) == ORIGINAL_NAME
    # The same request from the API's own origin is served: the refusal was the Origin's.
    allowed = await production.post(
        "/graphql", json={"query": FIRM_NAME}, headers={**owner.headers, "origin": PUBLIC_URL}
    )
    assert allowed.json() == {"data": {"firm": {"name": ORIGINAL_NAME}}}


async def test_no_tracing_is_sent(production: httpx.AsyncClient, owner: Member) -> None:
    tracing = {"tracing": True, "debug": True}
    served = await post(production, "query cop { __typename }", owner, extensions=tracing)
    assert served.status_code == 200
    assert served.json() == {"data": {"__typename": "Query"}}
    for document in ("query cop { nope }", "{ firm { name } }", "query cop { __typename"):
        response = await post(production, document, None, extensions=tracing)
        assert_clean(response)
        assert set(response.json()) <= {"data", "errors"}
    for name in ("server-timing", "x-powered-by"):
        assert name not in served.headers


# -- unhandled errors ----------------------------------------------------------------------

UPDATE_FIRM = "mutation($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { name } } }"
FIRST = "query($n: Int!) { declarations(first: $n) { __typename } }"
CREATE_TEMPLATE = "mutation($i: TemplateInput!) { createTemplate(input: $i) { template { id } } }"


def body(query: str, variables: Any = None, **rest: Any) -> bytes:
    return json.dumps({"query": query, "variables": variables, **rest}).encode()


def nested_json(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def template_with_questions(questions: bytes) -> bytes:
    return (
        b'{"query": ' + json.dumps(CREATE_TEMPLATE).encode() + b', "variables": {"i": '
        b'{"name": "x", "audience": "PERSON", "attestation": "a", "questions": '
        + questions
        + b"}}}"
    )


def nested_inputs(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"name": "x"}
    for _ in range(levels):
        value = {"name": "x", "questions": value}
    return value


UNHANDLED: dict[str, tuple[bytes, int, str]] = {
    "graphql-cop": (body("qwerty cop { abc }"), 200, "GRAPHQL_PARSE_FAILED"),
    "malformed-json": (b'{"query": "{ viewer { role } }"', 400, "BAD_REQUEST"),
    "invalid-utf8": (b'{"query": "{ viewer \xc3\x28 { role } }"}', 400, "BAD_REQUEST"),
    "lone-surrogate": (b'{"query": "{ viewer { role } }\\ud800"}', 400, "BAD_REQUEST"),
    "body-is-a-number": (b"9" * 5_000, 400, "BAD_REQUEST"),
    "query-is-a-number": (b'{"query": 5}', 400, "BAD_REQUEST"),
    "query-is-an-object": (b'{"query": {"a": 1}}', 400, "BAD_REQUEST"),
    "variables-is-a-list": (body(FIRST, [1]), 400, "BAD_REQUEST"),
    "extensions-is-a-number": (body(FIRST, {"n": 1}, extensions=5), 400, "BAD_REQUEST"),
    "variable-of-wrong-type": (body(FIRST, {"n": "ten"}), 200, "BAD_USER_INPUT"),
    "variable-object-for-scalar": (body(FIRST, {"n": {"a": 1}}), 200, "BAD_USER_INPUT"),
    "variable-float-for-int": (body(FIRST, {"n": 1.5}), 200, "BAD_USER_INPUT"),
    "int-over-32-bits": (body(FIRST, {"n": 2**31}), 200, "BAD_USER_INPUT"),
    "huge-integer": (body(FIRST, {"n": 10**40}), 200, "BAD_USER_INPUT"),
    "5000-digit-integer": (
        b'{"query": '
        + json.dumps(FIRST).encode()
        + b', "variables": {"n": 1'
        + b"0" * 5_000
        + b"}}",
        # Past a double's range: the JSON parser refuses it, so the body is not JSON to us.
        400,
        "BAD_REQUEST",
    ),
    "huge-integer-literal": (
        body("{ declarations(first: 99999999999999999999) { __typename } }"),
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "negative-page-size": (body(FIRST, {"n": -1}), 200, "BAD_USER_INPUT"),
    # Past 32 levels, variables are refused before anything walks them.
    "nested-input-objects": (
        body(CREATE_TEMPLATE, {"i": nested_inputs(60)}),
        400,
        "BAD_USER_INPUT",
    ),
    "json-scalar-nested-500": (
        template_with_questions(nested_json(500)),
        400,
        "BAD_USER_INPUT",
    ),
    "json-list-nested-500": (
        template_with_questions(b"[" * 500 + b"]" * 500),
        400,
        "BAD_USER_INPUT",
    ),
    "answers-nested-500": (
        body(
            "mutation($t: String!, $i: SubmissionInput!) { submitDeclaration(token: $t, "
            "input: $i) { responseSha256 } }",
            {
                "t": "x",
                "i": {
                    "attestationAccepted": True,
                    "signatureName": "A",
                    "answers": {"q1": json.loads("[" * 500 + "]" * 500)},
                },
            },
        ),
        400,
        "BAD_USER_INPUT",
    ),
    "json-nested-29-in-a-template": (  # within the bound: the template's own rules refuse it
        template_with_questions(nested_json(29)),
        200,
        "BAD_USER_INPUT",
    ),
    "json-nested-past-the-parser": (
        template_with_questions(nested_json(5_000)),
        400,
        "BAD_REQUEST",
    ),
    "unknown-operation-name": (
        body("query A { viewer { role } }", operationName="Nope"),
        400,
        "BAD_REQUEST",
    ),
    "subscription": (body("subscription { viewer { role } }"), 400, "BAD_REQUEST"),
    "nul-in-a-string-variable": (
        body(UPDATE_FIRM, {"i": {"name": "a\x00b"}}),
        400,
        "BAD_USER_INPUT",
    ),
    "nul-in-a-string-literal": (
        body('mutation { updateFirm(input: {name: "a\\u0000b"}) { firm { name } } }'),
        200,
        "BAD_USER_INPUT",
    ),
    "nul-in-a-json-literal": (  # stored as jsonb, which refuses \u0000 with another code
        body(
            'mutation { createTemplate(input: {name: "T", audience: PERSON, attestation: "A", '
            'questions: [{id: "q1", label: "a\\u0000b", kind: "yes_no"}]}) { template { id } } }'
        ),
        200,
        "BAD_USER_INPUT",
    ),
    "nul-in-a-filter": (
        body(
            "query($f: DeclarationFilterInput) { declarations(filter: $f) { __typename } }",
            {"f": {"search": "\x00"}},
        ),
        400,
        "BAD_USER_INPUT",
    ),
    # A moment without its offset, or one PostgreSQL cannot turn into UTC.
    **{
        f"date-time-{name}": (
            body(
                "query($f: AuditEntryFilterInput) { auditEntries(filter: $f) { __typename } }",
                {"f": {"from": moment}},
            ),
            200,
            "BAD_USER_INPUT",
        )
        for name, moment in {
            "without-offset": "2030-01-01T00:00:00",
            "date-only": "2030-01-01",
            "past-9999-in-utc": "9999-12-31T23:59:59-05:00",
            "before-year-1-in-utc": "0001-01-01T00:00:00+05:00",
        }.items()
    },
    "date-time-literal-without-offset": (
        body('{ exportAuditLog(from: "2030-01-01T00:00:00") { keyId } }'),
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "key-expiring-without-offset": (
        body(
            "mutation($i: ApiKeyCreateInput!) { createApiKey(input: $i) { secret } }",
            {"i": {"name": "k", "scopes": ["AUDIT_READ"], "expiresAt": "2030-01-01"}},
        ),
        200,
        "BAD_USER_INPUT",
    ),
    # Past year 2200, where a link's expiry (days after the due date) or the day after a
    # pack's period would run off the end of the calendar.
    "due-date-in-year-9999": (
        body(
            "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) { "
            "declaration { id } } }",
            {
                "i": {
                    "templateId": str(FIT.id),
                    "recipientName": "A",
                    "recipientEmail": "a@example.test",
                    "dueDate": "9999-12-31",
                }
            },
        ),
        200,
        "BAD_USER_INPUT",
    ),
    "pack-ending-in-year-9999": (
        body(
            "mutation($i: EvidencePackGenerateInput!) { generateEvidencePack(input: $i) { "
            "pack { id } } }",
            {"i": {"from": "9999-12-01", "to": "9999-12-31", "title": "Far"}},
        ),
        200,
        "BAD_USER_INPUT",
    ),
    # Each "İ" lowers to two characters: within 320 as sent, past it once lowered.
    "email-longer-once-lowered-sign-up": (
        body(
            "mutation($i: SignUpInput!) { signUp(input: $i) { accepted } }",
            {"i": {"email": "a@b." + "İ" * 300, "firmName": "Longer Ltd"}},
        ),
        200,
        "BAD_USER_INPUT",
    ),
    "email-longer-once-lowered-invitation": (
        body(
            "mutation($i: InviteMemberInput!) { inviteMember(input: $i) { ok } }",
            {"i": {"email": "a@b." + "İ" * 300, "role": "VIEWER"}},
        ),
        200,
        "BAD_USER_INPUT",
    ),
    "nul-in-an-email": (
        body(
            "mutation($e: String!) { requestMagicLink(email: $e) { accepted } }",
            {"e": "a\x00b@example.test"},
        ),
        400,
        "BAD_USER_INPUT",
    ),
}


@pytest.mark.parametrize(("content", "status", "code"), UNHANDLED.values(), ids=UNHANDLED.keys())
async def test_unhandled_errors_are_stable_4xx_or_coded_graphql_errors(
    production: httpx.AsyncClient, owner: Member, content: bytes, status: int, code: str
) -> None:
    response = await production.post(
        "/graphql", content=content, headers={**owner.headers, "content-type": JSON}
    )
    assert refusal(response) == (status, code)
    assert "INTERNAL_SERVER_ERROR" not in codes(response)
    assert await firm_name(production, owner) == ORIGINAL_NAME
