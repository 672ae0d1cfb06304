"""Persisted documents: the trusted allow-list (loaded by operators, the only thing API keys may
run), automatic persisted queries for signed-in first-party clients (checked, bounded, never
trusted), and COVERPROOF_PERSISTED_ONLY."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.actor import Role
from app.auth.sessions import COOKIE_NAME
from app.main import create_app
from app.partners import first_party
from app.partners.documents import MAX_DOCUMENT_CHARS, ApqCache, holder
from tests.browser import PASSWORD, browser_for, new_email, signed_up
from tests.conftest import Database, make_settings, started
from tests.factories import Member, Members
from tests.mail.smtp import SmtpServer
from tests.partners import (
    codes,
    count,
    create_key,
    declaration_input,
    doc_id,
    load_trusted,
    partner_client,
    persisted,
    rows,
    run_cli,
    run_persisted,
    session_client,
    tagged,
)

LIST = """query List{tag}($first: Int!) { declarations(first: $first) {
  edges { node { id status } } } }"""
CREATE = """mutation Create{tag}($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id status } } }"""
SEND = "mutation Send{tag}($id: UUID!) { sendDeclaration(id: $id) { declaration { status } } }"
FIRM = "query Firm{tag} { firm { name } }"
LINK = re.compile(r"/respond#token=([^\s\"<]+)")


def apq(document: str, *, digest: str | None = None, with_query: bool = True) -> dict[str, Any]:
    """Apollo's APQ body: the hash, and (to register) the text."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest or doc_id(document)}}
    return (
        {"query": document, "extensions": extensions} if with_query else {"extensions": extensions}
    )


async def declarations_of(engine: AsyncEngine, member: Member) -> int:
    return await count(
        engine, "select count(*) from declarations where firm_id = :firm", firm=member.firm_id
    )


async def key_for(auth_app: Starlette, owner: Member, scopes: list[str]) -> str:
    async with session_client(auth_app, owner) as client:
        secret, _ = await create_key(client, scopes)
    return secret


# --- three ways to name a trusted document --------------------------------------------------


@pytest.mark.parametrize("form", ["documentId", "apollo", "get"])
async def test_a_trusted_query_runs_by_id_in_every_form(
    auth_app: Starlette,
    members: Members,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    create, listing = tagged(CREATE), tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, create, listing)
    owner = await members.create(Role.OWNER)
    secret = await key_for(auth_app, owner, ["DECLARATIONS_READ", "DECLARATIONS_WRITE"])
    async with partner_client(auth_app, secret) as partner:
        made = await persisted(partner, create, {"i": declaration_input()}, form="apollo")
        made_id = made["data"]["createDeclaration"]["declaration"]["id"]
        response = await run_persisted(partner, listing, {"first": 5}, form=form)
        assert response.status_code == 200, response.text
        edges = response.json()["data"]["declarations"]["edges"]
        assert [edge["node"] for edge in edges] == [{"id": made_id, "status": "DRAFT"}]
    # The same document, by id, for a signed-in first-party client.
    async with session_client(auth_app, owner) as client:
        response = await run_persisted(client, listing, {"first": 5}, form=form)
        assert response.json()["data"]["declarations"]["edges"][0]["node"]["id"] == made_id


async def test_a_trusted_mutation_over_get_is_405_and_writes_nothing(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create = tagged(CREATE)
    await load_trusted(monkeypatch, database, tmp_path, create)
    owner = await members.create(Role.OWNER)
    secret = await key_for(auth_app, owner, ["DECLARATIONS_WRITE"])
    async with partner_client(auth_app, secret) as partner:
        response = await run_persisted(partner, create, {"i": declaration_input()}, form="get")
        assert response.status_code == 405, response.text
        assert codes(response.json()) == ["METHOD_NOT_ALLOWED"]
        assert "POST" in response.headers["allow"]
    async with session_client(auth_app, owner) as client:
        response = await run_persisted(client, create, {"i": declaration_input()}, form="get")
        assert response.status_code == 405, response.text
    assert await declarations_of(superuser_engine, owner) == 0


async def test_a_persisted_get_from_a_session_is_private_and_not_stored(
    auth_app: Starlette,
    members: Members,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    firm = tagged(FIRM)
    await load_trusted(monkeypatch, database, tmp_path, firm)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        response = await run_persisted(client, firm, form="get")
        assert response.json() == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
        assert response.headers["cache-control"] == "private, no-store"
        # An APQ-registered document fetched by GET too.
        registered = tagged(FIRM)
        assert "errors" not in (await client.post("/graphql", json=apq(registered))).json()
        extensions = json.dumps(
            {"persistedQuery": {"version": 1, "sha256Hash": doc_id(registered)}}
        )
        response = await client.get("/graphql", params={"extensions": extensions})
        assert response.json() == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
        assert response.headers["cache-control"] == "private, no-store"


# --- API keys run trusted documents only ----------------------------------------------------


async def test_an_api_key_may_not_send_query_text_or_register(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create = tagged(CREATE)
    await load_trusted(monkeypatch, database, tmp_path, create)
    owner = await members.create(Role.OWNER)
    secret = await key_for(auth_app, owner, ["DECLARATIONS_READ", "DECLARATIONS_WRITE"])
    variables = {"i": declaration_input()}
    async with partner_client(auth_app, secret) as partner:
        raw = await partner.post("/graphql", json={"query": tagged(CREATE), "variables": variables})
        assert raw.status_code == 400, raw.text
        assert codes(raw.json()) == ["PERSISTED_QUERY_REQUIRED"]
        # Even the text of a trusted document: a key names documents, it never sends them.
        for document in (tagged(CREATE), create):
            registration = await partner.post(
                "/graphql", json={**apq(document), "variables": variables}
            )
            assert registration.status_code == 400, registration.text
            assert codes(registration.json()) == ["PERSISTED_QUERY_REQUIRED"]
    assert await declarations_of(superuser_engine, owner) == 0
    assert auth_app.state.coverproof.apq.get(holder(owner.cookie), doc_id(create)) is None


@pytest.mark.parametrize("form", ["documentId", "apollo", "get"])
async def test_an_api_key_with_an_unknown_id_gets_persisted_query_not_found(
    auth_app: Starlette, members: Members, form: str
) -> None:
    owner = await members.create(Role.OWNER)
    secret = await key_for(auth_app, owner, ["DECLARATIONS_READ"])
    async with partner_client(auth_app, secret) as partner:
        response = await run_persisted(partner, tagged(LIST), {"first": 1}, form=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert codes(body) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert body["errors"][0]["message"] == "PersistedQueryNotFound"
    assert "data" not in body


async def test_an_apq_registered_document_never_becomes_trusted(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create(Role.OWNER)
    listing = tagged(LIST)
    async with session_client(auth_app, owner) as client:
        registered = await client.post("/graphql", json={**apq(listing), "variables": {"first": 1}})
        assert "errors" not in registered.json(), registered.text
    assert auth_app.state.coverproof.apq.get(holder(owner.cookie), doc_id(listing)) == listing
    secret = await key_for(auth_app, owner, ["DECLARATIONS_READ"])
    async with partner_client(auth_app, secret) as partner:
        for form in ("documentId", "apollo", "get"):
            body = await persisted(partner, listing, {"first": 1}, form=form)
            assert codes(body) == ["PERSISTED_QUERY_NOT_FOUND"], (form, body)
    trusted = await count(
        superuser_engine,
        "select count(*) from trusted_documents where id = :id",
        id=doc_id(listing),
    )
    assert trusted == 0


# --- automatic persisted queries for signed-in first-party clients ---------------------------


async def test_session_apq_not_found_then_registered_then_by_hash_alone(
    auth_app: Starlette, members: Members
) -> None:
    owner = await members.create(Role.OWNER)
    document = tagged(FIRM)
    async with session_client(auth_app, owner) as client:
        first = await client.post("/graphql", json=apq(document, with_query=False))
        assert first.status_code == 200
        assert codes(first.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        assert first.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        registered = await client.post("/graphql", json=apq(document))
        assert registered.json() == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
        by_hash = await client.post("/graphql", json=apq(document, with_query=False))
        assert by_hash.json() == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
        by_id = await run_persisted(client, document)
        assert by_id.json() == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}


@pytest.mark.parametrize("listing", [False, True], ids=["normal-path", "read-lane"])
async def test_a_registered_document_runs_by_hash_only_for_the_session_that_registered_it(
    auth_app: Starlette, members: Members, listing: bool
) -> None:
    """Shared, the cache would tell anyone (another firm, a stranger) whether someone had sent
    a document's exact text: its hash would run rather than answer not found."""
    owner = await members.create(Role.OWNER)
    document, variables = (tagged(LIST), {"first": 1}) if listing else (tagged(FIRM), {})
    by_hash = {**apq(document, with_query=False), "variables": variables}
    async with session_client(auth_app, owner) as client:
        registered = await client.post("/graphql", json={**apq(document), "variables": variables})
        assert "errors" not in registered.json(), registered.text
        lane = auth_app.state.coverproof.fast_path.lane
        assert (await client.post("/graphql", json=by_hash)).json() == registered.json()
        assert auth_app.state.coverproof.fast_path.lane == lane + listing  # the lane answered
    others = [
        await members.create(Role.OWNER),  # another firm
        await members.create(Role.MEMBER, firm_id=owner.firm_id),  # the same firm
        None,  # nobody signed in
    ]
    for other in others:
        async with session_client(auth_app, other) as client:
            response = await client.post("/graphql", json=by_hash)
            assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"], (other, response.text)


async def test_a_registration_whose_hash_does_not_match_is_refused(
    auth_app: Starlette, members: Members
) -> None:
    owner = await members.create(Role.OWNER)
    document, other = tagged(FIRM), tagged(FIRM)
    async with session_client(auth_app, owner) as client:
        for digest in (doc_id(other), doc_id(other).upper(), "0" * 64, "not-a-hash"):
            response = await client.post("/graphql", json=apq(document, digest=digest))
            assert response.status_code == 400, response.text
            assert codes(response.json()) == ["BAD_USER_INPUT"]
        cache = auth_app.state.coverproof.apq
        assert cache.get(holder(owner.cookie), doc_id(other)) is None
        assert cache.get(holder(owner.cookie), doc_id(document)) is None
        later = await client.post("/graphql", json=apq(other, with_query=False))
        assert codes(later.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_an_oversized_document_is_refused(auth_app: Starlette, members: Members) -> None:
    owner = await members.create(Role.OWNER)
    document = tagged(FIRM) + "\n# " + "x" * MAX_DOCUMENT_CHARS
    assert len(document) > MAX_DOCUMENT_CHARS
    async with session_client(auth_app, owner) as client:
        response = await client.post("/graphql", json=apq(document))
        assert response.status_code == 413, response.text
        assert codes(response.json()) == ["PAYLOAD_TOO_LARGE"]
        assert auth_app.state.coverproof.apq.get(holder(owner.cookie), doc_id(document)) is None
        again = await client.post("/graphql", json=apq(document, with_query=False))
        assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_flood_of_registrations_is_rate_limited_and_the_cache_stays_bounded(
    auth_app: Starlette, members: Members
) -> None:
    cache = auth_app.state.coverproof.apq
    owner = await members.create(Role.OWNER)
    documents = [tagged(FIRM) for _ in range(61)]
    async with session_client(auth_app, owner) as client:
        for number, document in enumerate(documents, start=1):
            response = await client.post("/graphql", json=apq(document))
            if number <= 60:
                assert "errors" not in response.json(), (number, response.text)
            assert len(cache) <= cache.max_entries
            assert cache.chars <= cache.max_chars
        assert response.status_code == 429, response.text
        assert codes(response.json()) == ["RATE_LIMITED"]
    assert cache.get(holder(owner.cookie), doc_id(documents[-1])) is None
    assert cache.get(holder(owner.cookie), doc_id(documents[0])) == documents[0]
    # Another user's registrations are counted apart.
    other = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    async with session_client(auth_app, other) as client:
        response = await client.post("/graphql", json=apq(tagged(FIRM)))
        assert "errors" not in response.json(), response.text


async def test_registrations_beyond_the_bounds_evict_the_oldest(
    auth_app: Starlette, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = auth_app.state.coverproof.apq
    monkeypatch.setattr(cache, "max_entries", 5)
    monkeypatch.setattr(cache, "max_chars", 4_000)
    padded = FIRM + "\n# " + "p" * 1_000  # about 1,040 characters each
    owner = await members.create(Role.OWNER)
    documents = [tagged(padded) for _ in range(12)]
    async with session_client(auth_app, owner) as client:
        for document in documents:
            response = await client.post("/graphql", json=apq(document))
            assert "errors" not in response.json(), response.text
            assert len(cache) <= 5
            assert cache.chars <= 4_000
        assert len(cache) == 3  # the size bound bites first
        kept = [d for d in documents if cache.get(holder(owner.cookie), doc_id(d)) is not None]
        assert kept == documents[-3:]
        evicted = await client.post("/graphql", json=apq(documents[0], with_query=False))
        assert codes(evicted.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        small = [tagged(FIRM) for _ in range(7)]
        for document in small:
            assert "errors" not in (await client.post("/graphql", json=apq(document))).json()
        assert len(cache) == 5  # now the count bound
        assert [
            d for d in small if cache.get(holder(owner.cookie), doc_id(d)) is not None
        ] == small[-5:]


H = holder("a session's cookie")


def test_apq_cache_evicts_by_count_least_recently_used_first() -> None:
    cache = ApqCache(max_entries=3, max_chars=10_000)
    for name in "abcd":
        cache.put(H, name, name * 10)
    assert (len(cache), cache.chars) == (3, 30)
    assert cache.get(H, "a") is None
    assert cache.get(H, "b") == "b" * 10  # now the most recently used
    cache.put(H, "e", "e" * 10)
    assert cache.get(H, "c") is None
    assert [cache.get(H, k) is not None for k in "bde"] == [True, True, True]
    cache.put(H, "b", "b" * 10)  # again: no second copy
    assert (len(cache), cache.chars) == (3, 30)


def test_apq_cache_evicts_by_size_and_never_holds_more() -> None:
    cache = ApqCache(max_entries=100, max_chars=100)
    cache.put(H, "a", "a" * 40)
    cache.put(H, "b", "b" * 40)
    cache.put(H, "c", "c" * 40)
    assert cache.get(H, "a") is None
    assert (len(cache), cache.chars) == (2, 80)
    cache.put(H, "huge", "h" * 101)  # bigger than the whole cache: nothing is kept, not even it
    assert cache.chars <= 100
    assert cache.get(H, "huge") is None
    cache.put(H, "d", "d" * 100)
    assert (len(cache), cache.chars) == (1, 100)


# --- loading the allow-list -----------------------------------------------------------------


async def test_manifests_load_in_apollo_format_and_as_a_plain_map(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one, two, three = tagged(FIRM), tagged(LIST), tagged(FIRM)
    apollo = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": doc_id(one), "name": "Firm", "type": "query", "body": one},
            {"id": doc_id(two), "name": "List", "type": "query", "body": two},
        ],
    }
    (tmp_path / "apollo.json").write_text(json.dumps(apollo))
    (tmp_path / "plain.json").write_text(json.dumps({doc_id(three): three}))
    load = ("persisted-queries", "load")
    assert await run_cli(monkeypatch, database, *load, str(tmp_path / "apollo.json")) == 0
    assert "loaded 2 document(s), 2 new" in capsys.readouterr().out
    assert await run_cli(monkeypatch, database, *load, str(tmp_path / "apollo.json")) == 0
    assert "loaded 2 document(s), 0 new" in capsys.readouterr().out
    assert await run_cli(monkeypatch, database, *load, str(tmp_path / "plain.json")) == 0
    assert "loaded 1 document(s), 1 new" in capsys.readouterr().out
    stored = await rows(
        superuser_engine,
        "select id, body, name, operation_type from trusted_documents where id in (:a, :b, :c)",
        a=doc_id(one),
        b=doc_id(two),
        c=doc_id(three),
    )
    assert {(r.id, r.body) for r in stored} == {(doc_id(d), d) for d in (one, two, three)}
    # The plain map declares no type: each is stored with its document's.
    assert {r.operation_type for r in stored} == {"query"}
    owner = await members.create(Role.OWNER)
    secret = await key_for(auth_app, owner, ["DECLARATIONS_READ"])
    async with partner_client(auth_app, secret) as partner:
        body = await persisted(partner, two, {"first": 1})
    assert body == {"data": {"declarations": {"edges": []}}}


# Documents a manifest may not hold, whatever it says of them: each is one query or mutation
# (fragments beside it), as the type an Apollo entry declares says.
NOT_ONE_OPERATION = {
    "not graphql": ("this is not { graphql {tag}", "query"),
    "subscription text": ("subscription Sub{tag} { viewer { role } }", None),
    "mislabelled": (CREATE, "query"),
    "two operations": (FIRM + " " + FIRM.replace("Firm{tag}", "Other{tag}"), "query"),
    "no operation": ("fragment F{tag} on Firm { name }", None),
    "schema": ("type T{tag} { a: Int }", None),
}


@pytest.mark.parametrize(
    "problem",
    [
        "wrong id",
        "uppercase id",
        "subscription",
        "version 2",
        "not a string",
        "too long",
        *NOT_ONE_OPERATION,
    ],
)
async def test_a_bad_manifest_is_refused_whole(
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    good, bad = tagged(FIRM), tagged(LIST)
    bad_id, kind, version = doc_id(bad), "query", 1
    operations: list[dict[str, Any]] = [{"id": doc_id(good), "type": "query", "body": good}]
    if problem == "wrong id":
        bad_id = hashlib.sha256(b"something else").hexdigest()
    elif problem == "uppercase id":
        bad_id = bad_id.upper()
    elif problem == "subscription":
        kind = "subscription"
    elif problem == "version 2":
        version = 2
    elif problem == "too long":
        bad = bad + "\n# " + "x" * MAX_DOCUMENT_CHARS
        bad_id = doc_id(bad)
    elif problem in NOT_ONE_OPERATION:
        text, declared = NOT_ONE_OPERATION[problem]
        bad, kind = tagged(text), declared or "query"
        bad_id = doc_id(bad)
    operations.append({"id": bad_id, "type": kind, "body": bad})
    manifest: Any = {
        "format": "apollo-persisted-query-manifest",
        "version": version,
        "operations": operations,
    }
    if problem == "not a string":
        manifest = {doc_id(good): good, doc_id(bad): {"body": bad}}
    elif problem in NOT_ONE_OPERATION and NOT_ONE_OPERATION[problem][1] is None:
        manifest = {doc_id(good): good, bad_id: bad}  # a plain map, which declares no type
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert await run_cli(monkeypatch, database, "persisted-queries", "load", str(path)) == 2
    captured = capsys.readouterr()
    assert "not loaded" in captured.err
    if problem in NOT_ONE_OPERATION:
        assert bad_id in captured.err  # the entry refused
    assert "loaded" not in captured.out
    stored = await count(
        superuser_engine,
        "select count(*) from trusted_documents where id in (:a, :b, :c)",
        a=doc_id(good),
        b=doc_id(bad),
        c=bad_id,
    )
    assert stored == 0


# --- COVERPROOF_PERSISTED_ONLY --------------------------------------------------------------


@pytest.fixture(scope="module")
async def strict_app(
    database: Database, smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    settings = make_settings(
        database, tmp_path_factory.mktemp("strict"), persisted_only=True, smtp_url=smtp.url
    )
    async for running in started(create_app(settings)):
        yield running


async def test_persisted_only_refuses_query_text_for_every_caller(
    strict_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    firm, create = tagged(FIRM), tagged(CREATE)
    await load_trusted(monkeypatch, database, tmp_path, firm, create)
    owner = await members.create(Role.OWNER)
    async with session_client(strict_app, owner) as client:
        for body in (
            {"query": tagged(FIRM)},
            {"query": firm},  # even a trusted document's text, sent as text
            {"query": tagged(CREATE), "variables": {"i": declaration_input()}},
            {**apq(tagged(FIRM))},  # and APQ registration
        ):
            response = await client.post("/graphql", json=body)
            assert response.status_code == 400, response.text
            assert codes(response.json()) == ["PERSISTED_QUERY_REQUIRED"]
        # Trusted documents run.
        assert (await persisted(client, firm)) == {"data": {"firm": {"name": "Acme Advisers Ltd"}}}
        made = await persisted(client, create, {"i": declaration_input()}, form="apollo")
        assert made["data"]["createDeclaration"]["declaration"]["status"] == "DRAFT"
    # Documents only registered with APQ elsewhere do not run here.
    async with session_client(strict_app, owner) as client:
        unknown = await client.post("/graphql", json=apq(tagged(FIRM), with_query=False))
        assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    async with session_client(strict_app) as anonymous:
        response = await anonymous.post(
            "/graphql",
            json={
                "query": first_party.SIGN_IN,
                "variables": {"email": "nobody@example.test", "password": PASSWORD},
            },
        )
        assert response.status_code == 400, response.text
        assert codes(response.json()) == ["PERSISTED_QUERY_REQUIRED"]
    assert await declarations_of(superuser_engine, owner) == 1


async def test_persisted_only_still_runs_the_apps_own_documents(
    strict_app: Starlette,
    auth_app: Starlette,
    members: Members,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sign in with a password by the shipped document's id.
    signer = browser_for(auth_app)
    async with signer.client:
        email = await signed_up(signer, smtp, firm="Strict Ltd")
    async with session_client(strict_app) as anonymous:
        signed_in = await run_persisted(
            anonymous, first_party.SIGN_IN, {"email": email, "password": PASSWORD}
        )
        body = signed_in.json()
        assert "errors" not in body, body
        assert body["data"]["signInWithPassword"]["emailVerified"] is True
        assert COOKIE_NAME in signed_in.headers["set-cookie"]

    # A real declaration link, answered by the recipients' shipped documents.
    create, send = tagged(CREATE), tagged(SEND)
    await load_trusted(monkeypatch, database, tmp_path, create, send)
    owner = await members.create(Role.OWNER, name="Strict Advisers Ltd")
    recipient = new_email()
    async with session_client(strict_app, owner) as client:
        made = await persisted(client, create, {"i": declaration_input(recipient)})
        declaration_id = made["data"]["createDeclaration"]["declaration"]["id"]
        sent = await persisted(client, send, {"id": declaration_id})
        assert sent["data"]["sendDeclaration"]["declaration"]["status"] == "SENT", sent
    await smtp.wait_for(lambda _: bool(smtp.to(recipient)))
    plain = smtp.to(recipient)[-1].get_body(preferencelist=("plain",))
    assert plain is not None
    mail = plain.get_content()
    found = LINK.search(mail)
    assert found, mail
    token = unquote(found.group(1))

    async with session_client(strict_app) as holder:
        raw = await holder.post(
            "/graphql", json={"query": first_party.RECIPIENT_FORM, "variables": {"t": token}}
        )
        assert codes(raw.json()) == ["PERSISTED_QUERY_REQUIRED"]
        form = await persisted(holder, first_party.RECIPIENT_FORM, {"t": token})
        assert "errors" not in form, form
        assert form["data"]["recipientForm"]["firmName"] == "Strict Advisers Ltd"
        submission = {
            "answers": valid_answers(form["data"]["recipientForm"]["questions"]),
            "attestationAccepted": True,
            "signatureName": "Pat Doe",
            "idempotencyKey": secrets.token_hex(16),  # as the answer page sends it
        }
        done = await persisted(
            holder, first_party.SUBMIT_DECLARATION, {"t": token, "i": submission}
        )
        assert "errors" not in done, done
        assert done["data"]["submitDeclaration"]["responseSha256"]
        again = await persisted(
            holder, first_party.SUBMIT_DECLARATION, {"t": token, "i": submission}
        )
        assert again == done  # the page's retry after a lost answer gets the receipt
    state = await rows(
        superuser_engine, "select status from declarations where id = :id", id=declaration_id
    )
    assert state[0].status == "submitted"


def valid_answers(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """A complete, valid set of answers for the form's questions."""
    answers: dict[str, Any] = {}
    for q in questions:
        kind = q["kind"]
        if kind == "YES_NO":
            answers[q["id"]] = q["explainIf"] != "yes"  # no explanation needed
        elif kind == "CHOICE":
            answers[q["id"]] = q["choices"][0]
        elif kind == "DATE":
            answers[q["id"]] = "2026-01-31"
        elif kind == "MONEY":
            answers[q["id"]] = 100_000
        else:
            answers[q["id"]] = "A careful answer"
    return answers


async def test_anonymous_apq_texts_do_not_grow_the_fast_path_cache(auth_app: Starlette) -> None:
    state = auth_app.state.coverproof.fast_path
    before = len(state.plans)
    transport = httpx.ASGITransport(app=auth_app, client=("127.0.0.77", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as anonymous:
        for n in range(30):
            text = f"query Anon{n} {{ declarations(first: 1) {{ edges {{ node {{ id }} }} }} }}"
            doc = hashlib.sha256(text.encode()).hexdigest()
            payload = {
                "query": text,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": doc}},
            }
            await anonymous.post("/graphql", json=payload)
    assert len(state.plans) == before
    assert len(state.plans) <= state.max_plans
