"""The compiled fast path answers byte for byte as the normal executor does (a differential
test over persisted documents and fixtures full of edge cases), and falls back otherwise."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.declarations import service
from app.declarations.templates import load_builtins, snapshot
from app.main import create_app
from app.partners.documents import document_id
from app.ratelimit.limiter import key_digest
from app.ratelimit.policies import Policy
from app.schema.fastpath import FastPathState
from tests.conftest import Database, http_client, make_settings, started
from tests.factories import Member, Members
from tests.partners import key_headers, trust

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
ALL_LEAVES = (
    "id templateId templateVersion recipientName recipientEmail counterpartyId dueDate "
    "status createdAt sentAt openedAt submittedAt revokedAt lastRemindedAt reminderCount "
    "linkExpiresAt"
)
DOCUMENTS = [
    f"query All {{ declarations(first: 50) {{ edges {{ node {{ {ALL_LEAVES} }} }} }} }}",
    "query Page($n: Int!, $after: String) { declarations(first: $n, after: $after) { "
    "pageInfo { hasNextPage endCursor } edges { cursor node { id recipientName status } } } }",
    "query Aliased { list: declarations(first: 4) { more: pageInfo { next: hasNextPage } "
    "rows: edges { n: node { who: recipientName when: createdAt due: dueDate } c: cursor } } }",
    "query Default { declarations { edges { node { id createdAt } } } }",
    "query OnlyInfo { declarations(first: 2) { pageInfo { endCursor hasNextPage } } }",
]
FALLBACKS = [
    "query Fragment { declarations(first: 3) { edges { node { ...F } } } } "
    "fragment F on Declaration { id }",
    "query Typename { declarations(first: 3) { __typename edges { node { id } } } }",
    "query Nested { declarations(first: 3) { edges { node { id counterparty { name } } } } }",
    "query Directive($s: Boolean!) { declarations(first: 3) { edges { node { id "
    "recipientName @skip(if: $s) } } } }",
    "query TooMany { declarations(first: 101) { edges { node { id } } } }",
    # A second cursor, aliased: the node once took its place.
    "query TwoCursors { declarations(first: 3) { edges { a: cursor b: cursor node { id } } } }",
    "query Strict($n: Int!, $after: String!) { declarations(first: $n, after: $after) { "
    "edges { node { id } } } }",
]
NAMES = [
    'quote " backslash \\ slash /',
    "newline\nand tab\tand bell \u0007 and nul-less control \u001f",
    "line separators \u2028 and \u2029",
    "emoji 👩‍⚖️ and astral \U0001d54f and accents Ł é",
    "</script><script>alert(1)</script>",
    "",
]


async def _fixtures(superuser: AsyncEngine, firm_id: uuid.UUID) -> None:
    snap = json.dumps(snapshot(FIT.spec, template_id=FIT.id, version=FIT.version, key=FIT.key))
    base = datetime(2026, 5, 27, 12, 0, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    moments = [
        base,
        base.replace(microsecond=999999),
        base.replace(microsecond=1),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(999, 5, 27, 12, 0, 0, 100000, tzinfo=UTC),
    ]
    for n, name in enumerate(NAMES * 2):
        at = moments[n % len(moments)] + timedelta(seconds=n if n % len(moments) == 0 else 0)
        rows.append(
            {
                "id": uuid.uuid4(),
                "firm": firm_id,
                "name": name or "x",
                "email": f"r{n}@example.test",
                "status": ["draft", "sent", "opened", "submitted", "revoked", "sent"][n % 6],
                "created": at,
                "due": [None, date(1, 1, 1), date(9999, 12, 31), date(2026, 2, 28)][n % 4],
                "sent": None if n % 3 == 0 else base - timedelta(microseconds=n),
                "expires": [None, base + timedelta(days=3650), datetime(2000, 1, 1, tzinfo=UTC)][
                    n % 3
                ],
                "snap": snap,
                "count": n,
            }
        )
    async with superuser.begin() as conn:
        await conn.execute(
            text(
                "insert into declarations (id, firm_id, template_id, template_version, "
                "template_snapshot, recipient_name, recipient_email, status, created_at, "
                "due_date, sent_at, token_expires_at, reminder_count) values (:id, :firm, "
                f"'{FIT.id}', 1, cast(:snap as jsonb), :name, :email, :status, :created, "
                ":due, :sent, :expires, :count)"
            ),
            rows,
        )


async def _both(
    client: httpx.AsyncClient,
    state: FastPathState,
    member: Member | None,
    payload: dict[str, Any],
    **kwargs: Any,
) -> tuple[httpx.Response, httpx.Response]:
    headers = {**(member.headers if member else {}), **kwargs.pop("headers", {})}
    state.enabled = False
    normal = await client.post("/graphql", json=payload, headers=headers, **kwargs)
    state.enabled = True
    fast = await client.post("/graphql", json=payload, headers=headers, **kwargs)
    return normal, fast


async def _lane_alike(
    client: httpx.AsyncClient,
    state: FastPathState,
    member: Member | None,
    payload: dict[str, Any],
    **kwargs: Any,
) -> None:
    """The answer the read lane gives is the executor's, byte for byte (and it was the lane's)."""
    before, lane = state.fast, state.lane
    normal, fast = await _both(client, state, member, payload, **kwargs)
    assert normal.status_code == fast.status_code == 200
    assert "errors" not in normal.json(), normal.text
    assert fast.content == normal.content, payload
    assert (state.fast, state.lane) == (before + 1, lane + 1), payload


async def test_every_persisted_document_answers_byte_for_byte_as_the_executor_does(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _fixtures(superuser_engine, owner.firm_id)
    await trust(superuser_engine, DOCUMENTS)
    cases: list[dict[str, Any]] = []
    for body in DOCUMENTS:
        cases.append({"documentId": "sha256:" + document_id(body), "variables": {"n": 3}})
    page = "sha256:" + document_id(DOCUMENTS[1])
    first = await client.post(
        "/graphql", json={"documentId": page, "variables": {"n": 4}}, headers=owner.headers
    )
    cursor = first.json()["data"]["declarations"]["pageInfo"]["endCursor"]
    cases += [
        {"documentId": page, "variables": {"n": 4, "after": cursor}},
        {"documentId": page, "variables": {"n": 100, "after": None}},
        {"documentId": page, "variables": {"n": 2}, "operationName": "Page"},
        {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": page[7:]}},
            "variables": {"n": 7},
        },
    ]
    for payload in cases:
        await _lane_alike(client, state, owner, payload)
    listed = (await client.post("/graphql", json=cases[0], headers=owner.headers)).json()["data"][
        "declarations"
    ]["edges"]
    assert {edge["node"]["recipientName"] for edge in listed} >= {n for n in NAMES if n}


async def test_anything_unusual_falls_back_with_the_normal_answer(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    unverified = await members.create(verified=False, firm_id=owner.firm_id)
    dead = dataclasses.replace(owner, cookie="a-session-that-never-was")
    await _fixtures(superuser_engine, owner.firm_id)
    await trust(superuser_engine, DOCUMENTS + FALLBACKS)
    page = "sha256:" + document_id(DOCUMENTS[1])
    strict = "sha256:" + document_id(FALLBACKS[-1])
    cases: list[tuple[Member | None, dict[str, Any]]] = [
        (owner, {"documentId": "sha256:" + document_id(body), "variables": {"s": True}})
        for body in FALLBACKS
    ]
    cases += [
        (owner, {"documentId": page, "variables": {"n": "5"}}),
        (owner, {"documentId": page, "variables": {"n": 5, "after": "not a cursor"}}),
        (owner, {"documentId": page, "variables": {}}),
        (None, {"documentId": page, "variables": {"n": 5}}),
        (unverified, {"documentId": page, "variables": {"n": 5}}),
        (owner, {"query": DOCUMENTS[0]}),  # text, not persisted: never the fast path
        (owner, {"documentId": page, "variables": {"n": 5}, "operationName": "Other"}),
        # A non-null variable sent as null: the executor's refusal, not the first page.
        (owner, {"documentId": strict, "variables": {"n": 5, "after": None}}),
        (dead, {"documentId": page, "variables": {"n": 5}}),
    ]
    for member, payload in cases:
        before = state.fast
        normal, fast = await _both(client, state, member, payload)
        assert fast.status_code == normal.status_code
        assert fast.content == normal.content, payload
        assert state.fast == before, payload


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"documentId": "sha256:x", "variables": []}', {"content-type": "application/json"}),
        (b'{"documentId": "sha256:x", "extensions": "x"}', {"content-type": "application/json"}),
        (b"documentId=sha256:x", {"content-type": "application/x-www-form-urlencoded"}),
        (b'{"documentId": "sha256:x"}', {"content-type": "text/plain"}),
        (b'{"documentId": 5}', {"content-type": "application/json"}),
        (b"[]", {"content-type": "application/json"}),
    ],
)
async def test_odd_requests_answer_the_same_either_way(
    client: httpx.AsyncClient,
    members: Members,
    state: FastPathState,
    content: bytes,
    headers: dict[str, str],
) -> None:
    owner = await members.create()
    state.enabled = False
    normal = await client.post("/graphql", content=content, headers={**owner.headers, **headers})
    state.enabled = True
    fast = await client.post("/graphql", content=content, headers={**owner.headers, **headers})
    assert normal.status_code == fast.status_code
    assert normal.status_code >= 400
    assert normal.content == fast.content


async def test_a_partner_key_takes_the_lane_after_its_audited_first_use(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _fixtures(superuser_engine, owner.firm_id)
    await trust(superuser_engine, DOCUMENTS)
    headers, key_id = await key_headers(app, owner, ["DECLARATIONS_READ"])
    page = {"documentId": "sha256:" + document_id(DOCUMENTS[1]), "variables": {"n": 3}}
    lane = state.lane
    first = await client.post("/graphql", json=page, headers=headers)
    assert "errors" not in first.json(), first.text
    assert state.lane == lane  # a first use is the normal path's: it is audited there
    for body in DOCUMENTS:
        payload = {"documentId": "sha256:" + document_id(body), "variables": {"n": 3}}
        await _lane_alike(client, state, None, payload, headers=headers)
    async with superuser_engine.connect() as conn:
        first_uses = await conn.scalar(
            text(
                "select count(*) from audit_log where action = 'api_key.first_used' "
                "and target_id = :key"
            ),
            {"key": key_id},
        )
    assert first_uses == 1


async def test_a_key_the_normal_path_would_refuse_falls_back_to_its_answer(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await trust(superuser_engine, DOCUMENTS)
    narrow, _ = await key_headers(app, owner, ["COUNTERPARTIES_READ"])
    revoked, revoked_id = await key_headers(app, owner, ["DECLARATIONS_READ"])
    page = {"documentId": "sha256:" + document_id(DOCUMENTS[1]), "variables": {"n": 3}}
    for headers in (narrow, revoked):
        await client.post("/graphql", json=page, headers=headers)  # each key's first use
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("update api_keys set revoked_at = now() where id = :id"), {"id": revoked_id}
        )
    cases = [
        narrow,
        revoked,
        {"authorization": "Bearer not-a-key"},
        {**narrow, **owner.headers},  # a key and a session at once
    ]
    for headers in cases:
        before = state.lane
        normal, fast = await _both(client, state, None, page, headers=headers)
        assert normal.status_code == fast.status_code, headers
        assert normal.content == fast.content, headers
        assert "errors" in normal.json(), normal.text
        assert state.lane == before, headers


OPTIONAL_FIRST = (
    "query OptionalFirst($n: Int) { declarations(first: $n) { edges { node { id } } } }"
)


async def test_a_null_for_an_optional_first_is_the_callers_error_either_way(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``$n: Int`` may stand for ``first: Int! = 20`` (as code generators write it), and a
    JavaScript client sends null for a variable it leaves unset: the executor refuses the null,
    the caller's mistake (BAD_USER_INPUT, nothing logged), and both lanes answer alike, for a
    member and for a key."""
    owner = await members.create()
    await trust(superuser_engine, [OPTIONAL_FIRST])
    key, _ = await key_headers(app, owner, ["DECLARATIONS_READ"])
    payload = {"documentId": "sha256:" + document_id(OPTIONAL_FIRST), "variables": {"n": None}}
    await client.post("/graphql", json=payload, headers=key)  # the key's first use
    for member, headers in ((owner, {}), (None, key)):
        with caplog.at_level(logging.ERROR, logger="coverproof.errors"):
            normal, fast = await _both(client, state, member, payload, headers=headers)
        assert (normal.status_code, normal.content) == (fast.status_code, fast.content)
        assert [e["extensions"] for e in normal.json()["errors"]] == [{"code": "BAD_USER_INPUT"}]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_key_the_lane_counted_and_handed_over_is_counted_once(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = await members.create()
    await trust(superuser_engine, DOCUMENTS)
    headers, key_id = await key_headers(app, owner, ["DECLARATIONS_READ"])
    page = {"documentId": "sha256:" + document_id(DOCUMENTS[1]), "variables": {"n": 3}}
    limiter = app.state.coverproof.limiter
    item = limiter._item(Policy.API_KEY_REQUESTS)

    async def used() -> int:
        stats = await limiter._strategy.get_window_stats(item, key_digest(key_id))
        return int(item.amount - stats.remaining)

    await client.post("/graphql", json=page, headers=headers)  # the key's first use
    assert await used() == 1
    real = service.lane_page_rows

    async def lost(*args: Any) -> Any:  # the database goes away after the key was counted
        monkeypatch.setattr(service, "lane_page_rows", real)
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")

    monkeypatch.setattr(service, "lane_page_rows", lost)
    handed_over = state.lane_fallback
    response = await client.post("/graphql", json=page, headers=headers)
    assert "errors" not in response.json(), response.text  # the normal path answered
    assert state.lane_fallback == handed_over + 1
    assert await used() == 2  # once, not twice
    lane = state.lane
    await client.post("/graphql", json=page, headers=headers)
    assert (state.lane, await used()) == (lane + 1, 3)


@pytest.mark.parametrize(
    "parameters",
    [
        "sslmode=disable&application_name=coverproof-test",
        "ssl=disable&prepared_statement_cache_size=0",
    ],
    ids=["libpq", "asyncpg"],
)
async def test_a_database_url_with_parameters_serves_both_pools(
    database: Database,
    tmp_path: Path,
    members: Members,
    superuser_engine: AsyncEngine,
    parameters: str,
) -> None:
    """The ORM's pool and the lanes' read the URL alike, as SQLAlchemy does, libpq's
    ``sslmode`` too: the lanes' read it as a DSN, so no spelling of TLS worked for both.
    ``sslmode=require``, which docs/deployment.md gave, stopped the server starting;
    ``ssl=require`` turned the lanes off. (The test server has no TLS, so the URL asks for
    none: the parameter is read, not passed on as a setting.)"""
    joined = "&" if "?" in database.app_url else "?"
    url = f"{database.app_url}{joined}{parameters}"
    owner = await members.create()
    await _fixtures(superuser_engine, owner.firm_id)
    await trust(superuser_engine, DOCUMENTS)
    payload = {"documentId": "sha256:" + document_id(DOCUMENTS[1]), "variables": {"n": 3}}
    async for app in started(create_app(make_settings(database, tmp_path, database_url=url))):
        state: FastPathState = app.state.coverproof.fast_path
        async with http_client(app) as client:
            await client.post("/graphql", json=payload, headers=owner.headers)  # first: loads it
            await _lane_alike(client, state, owner, payload)
        assert state.lane_fallback == 0
