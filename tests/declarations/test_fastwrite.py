"""The write lane creates exactly what the normal path creates (a differential test: the
answers, the declaration rows and the chained audit entries of both paths are compared), hands
everything else to the normal path with nothing written, counts the mutation once, and never
hands over a request whose commit may have happened."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from limits.errors import StorageError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app import calendar, idempotency
from app.audit import chain
from app.auth.actor import Role
from app.declarations.templates import load_builtins
from app.http import persisted
from app.partners import first_party
from app.partners.documents import document_id
from app.ratelimit.limiter import key_digest
from app.ratelimit.policies import Policy
from app.schema.fastpath import FastPathState, compile_plan
from tests.factories import Member, Members, until_lock_waited
from tests.partners import key_headers, trust

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
ALL_LEAVES = (
    "id templateId templateVersion recipientName recipientEmail counterpartyId dueDate "
    "status createdAt sentAt openedAt submittedAt revokedAt lastRemindedAt reminderCount "
    "linkExpiresAt"
)
CREATE = (
    "mutation Create($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    f"{{ declaration {{ {ALL_LEAVES} }} }} }}"
)
DOCUMENTS = [
    CREATE,
    "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) { declaration { id } } }",
    "mutation Aliased($input: DeclarationCreateInput!) { made: createDeclaration(input: $input) "
    "{ d: declaration { who: recipientName state: status when: createdAt id } } }",
]
# A key's scopes for writing these and reading their payloads (beyond the id, the read scope).
WRITES = ["DECLARATIONS_WRITE", "DECLARATIONS_READ"]
# Compiled for no lane: each is answered by the executor alone.
NOT_COMPILED = [
    "mutation Two($i: DeclarationCreateInput!) { a: createDeclaration(input: $i) "
    "{ declaration { id } } b: createDeclaration(input: $i) { declaration { id } } }",
    "mutation Fragment($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { ...F } } } fragment F on Declaration { id }",
    "mutation Typename($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ __typename declaration { id } } }",
    "mutation Nested($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id counterparty { name } } } }",
    'mutation Literal { createDeclaration(input: {templateId: "'
    + str(FIT.id)
    + '", recipientName: "Lit", recipientEmail: "lit@example.test"}) { declaration { id } } }',
]
NAMES = [
    "Pat Doe",
    '  quote " backslash \\ and spaces  ',
    "emoji 👩‍⚖️ and accents Ł é",
    "</script><script>alert(1)</script>",
]
# Columns each path sets afresh; everything else must be identical.
FRESH_DECLARATION = {"id", "created_at"}
FRESH_ENTRY = {"id", "seq", "occurred_at", "target_id", "prev_hash", "hash", "canonical"}
GOOD = {"templateId": str(FIT.id), "recipientName": "Pat", "recipientEmail": "p@example.test"}
VERIFY = "{ verifyAuditChain { ok entriesChecked failure { seq reason } } }"


def _persisted(body: str, variables: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"documentId": "sha256:" + document_id(body), "variables": variables, **extra}


async def _gql(client: httpx.AsyncClient, member: Member, query: str, variables: Any) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=member.headers
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _row(superuser: AsyncEngine, table: str, column: str, value: object) -> dict[str, Any]:
    async with superuser.connect() as conn:
        found = await conn.execute(
            text(f"select * from {table} where {column} = :v"),
            {"v": str(value)},
        )
        rows = [dict(row._mapping) for row in found]
    assert len(rows) == 1, (table, value, rows)
    return rows[0]


async def _held(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser: AsyncEngine,
    documents: list[str],
) -> None:
    """Trust ``documents`` and have the app hold them: a process loads a trusted document on
    its first request for it, on the normal path, and a lane answers only one it holds. Loaded
    by a viewer of another firm, whom the normal path refuses, so nothing is written."""
    await trust(superuser, documents)
    viewer = await members.create(Role.VIEWER)
    for body in documents:
        payload = _persisted(body, {"i": GOOD, "input": GOOD})
        loaded = await client.post("/graphql", json=payload, headers=viewer.headers)
        assert loaded.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", loaded.text
        held = persisted.held(app.state.coverproof, document_id(body), False, viewer.cookie)
        assert held == body


def _without(row: dict[str, Any], fresh: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in fresh}


def _answer(response: httpx.Response) -> Any:
    """The answer with what each path makes afresh (the id, the moment) named, not compared."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    ((root, payload),) = body["data"].items()
    ((key, node),) = payload.items()
    fresh = {k: v for k, v in node.items() if k in ("id", "createdAt", "when")}
    return {root: {key: {**node, **dict.fromkeys(fresh, "fresh")}}}, node


async def _created_alike(
    client: httpx.AsyncClient,
    superuser: AsyncEngine,
    state: FastPathState,
    member: Member,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    """The lane's draft is the executor's: the same answer, row and audit entry (for the
    member's session, or for ``headers``: a key of the member's firm)."""
    made: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for fast in (False, True):
        state.enabled = fast
        writes = state.writes
        response = await client.post("/graphql", json=payload, headers=headers or member.headers)
        assert state.writes == writes + fast, (fast, payload, response.text)
        answer, node = _answer(response)
        declaration_id = node["id"]
        row = await _row(superuser, "declarations", "id", declaration_id)
        entry = await _row(superuser, "audit_log", "target_id", declaration_id)
        if "createdAt" in node:
            assert datetime.fromisoformat(node["createdAt"]) == row["created_at"]
        assert entry["firm_id"] == row["firm_id"] == member.firm_id
        made.append((answer, _without(row, FRESH_DECLARATION), _without(entry, FRESH_ENTRY)))
    (normal_answer, normal_row, normal_entry), (lane_answer, lane_row, lane_entry) = made
    assert lane_answer == normal_answer, payload
    assert lane_row == normal_row, payload
    assert lane_entry == normal_entry, payload


async def _template(client: httpx.AsyncClient, owner: Member, name: str) -> str:
    """A firm template of one yes/no question, made by ``owner``; its id."""
    made = await _gql(
        client,
        owner,
        "mutation($i: TemplateInput!) { createTemplate(input: $i) { template { id } } }",
        {
            "i": {
                "name": name,
                "audience": "PERSON",
                "questions": [{"id": "q1", "label": "Fit?", "kind": "yes_no"}],
                "attestation": "True.",
            }
        },
    )
    template_id: str = made["createTemplate"]["template"]["id"]
    return template_id


async def test_the_lane_creates_what_the_executor_creates(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    member = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    own = await _template(client, owner, "Our own")
    counterparty = await _gql(
        client,
        owner,
        "mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) "
        "{ counterparty { id } } }",
        {"i": {"kind": "OTHER", "name": "Broker Ltd"}},
    )
    counterparty_id = counterparty["createCounterparty"]["counterparty"]["id"]
    due = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    inputs: list[dict[str, Any]] = [
        {"templateId": str(FIT.id), "recipientName": name, "recipientEmail": "Pat@Example.TEST"}
        for name in NAMES
    ]
    inputs += [
        {
            "templateId": own,
            "recipientName": "Own Template",
            "recipientEmail": "own@example.test",
            "counterpartyId": counterparty_id,
            "dueDate": due,
            "linkDays": 14,
            "idempotencyKey": None,
        },
        {
            "templateId": str(FIT.id).replace("-", "").upper(),  # the UUID scalar parses it
            "recipientName": "Today",
            "recipientEmail": "today@example.test",
            "dueDate": calendar.today().isoformat(),  # London's day, as the service judges it
        },
    ]
    for body in DOCUMENTS:
        variable = "input" if "$input" in body else "i"
        for fields in inputs if body == CREATE else inputs[:1]:
            for who in (owner, member):
                payload = _persisted(body, {variable: fields})
                await _created_alike(client, superuser_engine, state, who, payload)
    await _created_alike(
        client,
        superuser_engine,
        state,
        owner,
        _persisted(CREATE, {"i": inputs[0]}, operationName="Create"),
    )
    verified = await _gql(client, owner, VERIFY, None)
    assert verified["verifyAuditChain"]["ok"] is True, verified
    # Each form kept once, whichever path wrote the declarations (0036): the built-in's, and
    # the firm's own template's.
    async with superuser_engine.connect() as conn:
        forms = await conn.scalar(
            text("select count(*) from declaration_forms where firm_id = :f"),
            {"f": owner.firm_id},
        )
    assert forms == 2
    # The lane told the witness of its entries, as the normal path does (app/audit/witness.py).
    async with superuser_engine.connect() as conn:
        head = (
            await conn.execute(
                text("select seq, hash from audit_log where firm_id = :f order by seq desc"),
                {"f": owner.firm_id},
            )
        ).first()
    assert head is not None
    kept = await app.state.coverproof.witness.newest(str(owner.firm_id))
    assert kept is not None
    assert (kept.runs[-1].seq, kept.runs[-1].hash, kept.diverged) == (*head, None)
    writes = state.writes
    made = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": inputs[0]}), headers=member.headers
    )
    assert "errors" not in made.json(), made.text
    assert state.writes == writes + 1  # the lane's
    kept = await app.state.coverproof.witness.newest(str(owner.firm_id))
    assert kept is not None
    assert (kept.runs[-1].seq, kept.diverged) == (head[0] + 1, None)


async def test_anything_else_is_the_normal_paths_to_answer_with_nothing_written(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    viewer = await members.create(Role.VIEWER, firm_id=owner.firm_id)
    unverified = await members.create(Role.MEMBER, firm_id=owner.firm_id, verified=False)
    stranger = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    theirs = await _gql(
        client,
        stranger,
        "mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) "
        "{ counterparty { id } } }",
        {"i": {"kind": "OTHER", "name": "Not yours"}},
    )
    their_counterparty = theirs["createCounterparty"]["counterparty"]["id"]
    their_template = await _template(client, stranger, "Not yours either")
    past = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    cases: list[tuple[Member | None, dict[str, Any]]] = [
        (viewer, _persisted(CREATE, {"i": GOOD})),
        (unverified, _persisted(CREATE, {"i": GOOD})),
        (None, _persisted(CREATE, {"i": GOOD})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "recipientEmail": "not an address"}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "recipientName": "   "}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "recipientName": "line \u2028 separated"}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "dueDate": past}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "dueDate": "2026-13-01"}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "linkDays": 91}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "templateId": str(uuid.uuid4())}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "counterpartyId": their_counterparty}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "templateId": their_template}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "unknown": 1}})),
        (owner, _persisted(CREATE, {"i": {**GOOD, "templateId": 5}})),
        (owner, _persisted(CREATE, {"i": None})),
        (owner, _persisted(CREATE, {})),
        (owner, _persisted(CREATE, {"i": GOOD}, operationName="Other")),
    ]
    for member, payload in cases:
        headers = member.headers if member else {}
        responses = []
        for fast in (False, True):
            state.enabled = fast
            writes = state.writes
            responses.append(await client.post("/graphql", json=payload, headers=headers))
            assert state.writes == writes, payload
        normal, fast_answer = responses
        assert normal.status_code == fast_answer.status_code, payload
        assert fast_answer.content == normal.content, payload
        assert "errors" in normal.json(), (payload, normal.text)
    # A persisted mutation over GET is refused as the normal path refuses it.
    get = await client.get(
        "/graphql", params={"documentId": "sha256:" + document_id(CREATE)}, headers=owner.headers
    )
    assert get.status_code == 405, get.text
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert count == 0  # not one draft from any of them


async def test_documents_the_lane_does_not_compile_are_the_executors(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, NOT_COMPILED)
    for body in NOT_COMPILED:
        payload = _persisted(body, {} if "$i" not in body else {"i": GOOD})
        counters = (state.writes, state.write_fallback)
        response = await client.post("/graphql", json=payload, headers=owner.headers)
        assert "errors" not in response.json(), (body, response.text)
        assert (state.writes, state.write_fallback) == counters, body


async def test_an_idempotency_key_is_the_normal_paths_and_replays(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    payload = _persisted(
        CREATE,
        {
            "i": {
                "templateId": str(FIT.id),
                "recipientName": "Once",
                "recipientEmail": "once@example.test",
                "idempotencyKey": "retry-" + uuid.uuid4().hex,
            }
        },
    )
    writes, handed_over = state.writes, state.write_fallback
    first = await client.post("/graphql", json=payload, headers=owner.headers)
    again = await client.post("/graphql", json=payload, headers=owner.headers)
    assert "errors" not in first.json(), first.text
    ids = {r.json()["data"]["createDeclaration"]["declaration"]["id"] for r in (first, again)}
    assert len(ids) == 1
    assert (state.writes, state.write_fallback) == (writes, handed_over + 2)


async def test_the_lane_counts_a_mutation_once_even_when_it_hands_it_over(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    viewer = await members.create(Role.VIEWER, firm_id=owner.firm_id)
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    limiter = app.state.coverproof.limiter
    item = limiter._item(Policy.MUTATIONS_PER_USER)

    async def used(member: Member) -> int:
        stats = await limiter._strategy.get_window_stats(item, key_digest(str(member.user_id)))
        return int(item.amount - stats.remaining)

    writes = state.writes
    made = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=owner.headers
    )
    assert "errors" not in made.json(), made.text
    assert (state.writes, await used(owner)) == (writes + 1, 1)
    unknown = {**GOOD, "templateId": str(uuid.uuid4())}  # counted in the lane, then handed over
    refused = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": unknown}), headers=owner.headers
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND", refused.text
    assert await used(owner) == 2
    forbidden = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=viewer.headers
    )
    assert forbidden.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", forbidden.text
    assert await used(viewer) == 1


async def test_a_count_whose_answer_was_lost_is_not_counted_again(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    state: FastPathState,
) -> None:
    """Redis counted the mutation and its answer was lost (a connection reset): the lane fails
    the request (nothing written) rather than hand it to the normal path, which counted it
    again; and fails it as the normal path's resolver does, to the byte."""
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    limiter = app.state.coverproof.limiter
    item, hit = limiter._item(Policy.MUTATIONS_PER_USER), limiter.hit

    async def lost(policy: Policy, key: str, cost: int = 1) -> None:
        await hit(policy, key, cost)
        if policy is Policy.MUTATIONS_PER_USER:
            raise StorageError(ConnectionResetError("the answer was lost"))

    monkeypatch.setattr(limiter, "hit", lost)
    answers = []
    for fast in (True, False):
        state.enabled = fast
        answer = await client.post(
            "/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=owner.headers
        )
        body = answer.json()
        request_id = body["errors"][0]["extensions"].pop("requestId")
        assert request_id == answer.headers["x-request-id"]
        answers.append((answer.status_code, body))
        stats = await limiter._strategy.get_window_stats(item, key_digest(str(owner.user_id)))
        assert item.amount - stats.remaining == 1 + (not fast), fast
    assert answers[0] == answers[1]
    assert answers[0][0] == 200
    assert answers[0][1]["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert count == 0


async def test_a_limit_the_lane_meets_is_refused_as_the_normal_path_refuses_it(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    limiter = app.state.coverproof.limiter
    item = limiter._item(Policy.MUTATIONS_PER_USER)
    for _ in range(item.amount):
        assert await limiter._strategy.hit(item, key_digest(str(owner.user_id)))
    writes = state.writes
    refused = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=owner.headers
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED", refused.text
    assert state.writes == writes
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert count == 0


async def test_a_failed_commit_is_never_handed_over_to_write_again(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    """A commit that fails (here a deferred check refuses it) may, in general, have happened:
    the lane answers it as the normal path answers a failed commit, and writes nothing twice."""
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    name = "Refused At Commit " + uuid.uuid4().hex
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "create or replace function test_refuse_at_commit() returns trigger "
                "language plpgsql as $$ begin if new.recipient_name like 'Refused At Commit %' "
                "then raise exception 'refused at commit'; end if; return new; end $$"
            )
        )
        await conn.execute(
            text(
                "create constraint trigger test_refuse_at_commit after insert on declarations "
                "deferrable initially deferred for each row "
                "execute function test_refuse_at_commit()"
            )
        )
    try:
        refused = {"templateId": str(FIT.id), "recipientName": name, "recipientEmail": "r@e.test"}
        writes, handed_over = state.writes, state.write_fallback
        response = await client.post(
            "/graphql", json=_persisted(CREATE, {"i": refused}), headers=owner.headers
        )
        assert response.status_code == 500, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert (state.writes, state.write_fallback) == (writes, handed_over)
        state.enabled = False
        normal = await client.post(
            "/graphql", json=_persisted(CREATE, {"i": refused}), headers=owner.headers
        )
        assert (normal.status_code, normal.content) == (response.status_code, response.content)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(text("drop trigger test_refuse_at_commit on declarations"))
            await conn.execute(text("drop function test_refuse_at_commit()"))
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where recipient_name = :n"), {"n": name}
        )
    assert count == 0


async def test_a_partner_key_writes_through_the_lane_after_its_audited_first_use(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    headers, key_id = await key_headers(app, owner, WRITES)
    writes = state.writes
    first = await client.post("/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=headers)
    assert "errors" not in first.json(), first.text
    assert state.writes == writes  # a first use is the normal path's: it is audited there
    for body in DOCUMENTS:
        variable = "input" if "$input" in body else "i"
        payload = _persisted(body, {variable: GOOD})
        await _created_alike(client, superuser_engine, state, owner, payload, headers)
    async with superuser_engine.connect() as conn:
        actors = (
            await conn.execute(
                text(
                    "select actor_type, actor_id, count(*) from audit_log "
                    "where action = 'declaration.created' and firm_id = :f "
                    "group by actor_type, actor_id"
                ),
                {"f": owner.firm_id},
            )
        ).all()
        first_uses = await conn.scalar(
            text(
                "select count(*) from audit_log "
                "where action = 'api_key.first_used' and target_id = :k"
            ),
            {"k": key_id},
        )
    assert [tuple(row) for row in actors] == [("api_key", key_id, 1 + 2 * len(DOCUMENTS))]
    assert first_uses == 1


async def test_a_key_the_normal_path_would_refuse_is_refused_there_with_nothing_written(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    reader, _ = await key_headers(app, owner, ["DECLARATIONS_READ"])
    revoked, revoked_id = await key_headers(app, owner, WRITES)
    payload = _persisted(CREATE, {"i": GOOD})
    for headers in (reader, revoked):
        await client.post("/graphql", json=payload, headers=headers)  # each key's first use
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("update api_keys set revoked_at = now() where id = :id"), {"id": revoked_id}
        )
        await conn.execute(
            text("delete from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    cases = [
        reader,
        revoked,
        {"authorization": "Bearer not-a-key"},
        {**reader, **owner.headers},  # a key and a session at once
    ]
    for headers in cases:
        responses = []
        for fast in (False, True):
            state.enabled = fast
            writes = state.writes
            responses.append(await client.post("/graphql", json=payload, headers=headers))
            assert state.writes == writes, headers
        normal, fast_answer = responses
        assert (normal.status_code, normal.content) == (
            fast_answer.status_code,
            fast_answer.content,
        )
        assert "errors" in normal.json(), normal.text
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert count == 0


async def test_a_keys_requests_and_mutations_are_counted_once_when_handed_over(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    headers, key_id = await key_headers(app, owner, WRITES)
    limiter = app.state.coverproof.limiter

    async def used(policy: Policy) -> int:
        item = limiter._item(policy)
        stats = await limiter._strategy.get_window_stats(item, key_digest(key_id))
        return int(item.amount - stats.remaining)

    await client.post("/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=headers)
    assert (await used(Policy.API_KEY_REQUESTS), await used(Policy.MUTATIONS_PER_USER)) == (1, 1)
    writes = state.writes
    made = await client.post("/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=headers)
    assert "errors" not in made.json(), made.text
    assert state.writes == writes + 1
    assert (await used(Policy.API_KEY_REQUESTS), await used(Policy.MUTATIONS_PER_USER)) == (2, 2)
    unknown = {**GOOD, "templateId": str(uuid.uuid4())}  # counted in the lane, then handed over
    refused = await client.post(
        "/graphql", json=_persisted(CREATE, {"i": unknown}), headers=headers
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND", refused.text
    assert (await used(Policy.API_KEY_REQUESTS), await used(Policy.MUTATIONS_PER_USER)) == (3, 3)


def test_no_document_the_app_ships_is_answered_by_a_lane() -> None:
    """The differential tests above cover every document a lane answers; the app's own pages'
    documents (trusted by id) compile to no plan, so none escapes them."""
    assert all(compile_plan(d.body) is None for d in first_party.DOCUMENTS.values())
    assert compile_plan(CREATE) is not None  # while the ones tested here do


async def test_a_key_over_its_request_limit_is_refused_alike_with_nothing_written(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    headers, key_id = await key_headers(app, owner, WRITES)
    payload = _persisted(CREATE, {"i": GOOD})
    await client.post("/graphql", json=payload, headers=headers)  # the key's first use
    limiter = app.state.coverproof.limiter
    item = limiter._item(Policy.API_KEY_REQUESTS)
    while await limiter._strategy.hit(item, key_digest(key_id)):
        pass
    responses = []
    for fast in (False, True):
        state.enabled = fast
        writes = state.writes
        responses.append(await client.post("/graphql", json=payload, headers=headers))
        assert state.writes == writes
    normal, fast_answer = responses
    assert normal.status_code == fast_answer.status_code == 429, normal.text
    assert normal.content == fast_answer.content
    assert normal.headers.get("retry-after") == fast_answer.headers.get("retry-after")
    async with superuser_engine.connect() as conn:
        count = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert count == 1  # the first use's, and nothing after it


async def test_the_lane_takes_the_firms_row_before_its_chain_lock_as_update_firm_does(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
) -> None:
    """updateFirm locks the firm's row, then its chain; a lane write that took the chain lock
    before its insert's key-share lock on that row would deadlock with it."""
    owner = await members.create()
    await _held(app, client, members, superuser_engine, DOCUMENTS)
    writes = state.writes
    async with superuser_engine.connect() as conn:
        await conn.execute(
            text("select id from firms where id = :id for update"), {"id": owner.firm_id}
        )
        creating = asyncio.create_task(
            client.post("/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=owner.headers)
        )
        await until_lock_waited(superuser_engine)
        free = await conn.scalar(
            text("select pg_try_advisory_xact_lock(:key)"), {"key": chain._lock_key(owner.firm_id)}
        )
        await conn.commit()
    made = await creating
    assert free, "the lane held the firm's chain lock while it waited for the firm's row"
    assert "errors" not in made.json(), made.text
    assert state.writes == writes + 1  # the lane's write, not the executor's


NORMAL_CREATE = (
    "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) { declaration { id } } }"
)


async def test_a_lane_create_and_a_normal_one_of_a_new_form_wait_in_turn_not_on_each_other(
    app: Starlette,
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    state: FastPathState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two declarations of a form in a firm at once, one on the normal path with an
    idempotency key, paused once it holds the firm's chain lock (to look for its first result),
    one on the lane: the lane added the form, then waited for the lock, while the other, holding
    the lock, went on to add the same form, and waited on the lane's; PostgreSQL broke the
    deadlock after a second, the firm's writes stalled behind it (found by a review of 0036). A
    create with a key now adds its form before it looks for its first result: the lane waits
    for that form, then for the lock, in turn."""
    owner = await members.create()
    other = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    await _held(app, client, members, superuser_engine, [CREATE])
    state.enabled = True
    reached, gate = asyncio.Event(), asyncio.Event()
    replay = idempotency.replay

    async def held_replay(*args: Any, **kwargs: Any) -> Any:
        first = await replay(*args, **kwargs)
        reached.set()
        await gate.wait()  # the normal path holds the firm's chain lock here
        return first

    monkeypatch.setattr(idempotency, "replay", held_replay)
    keyed = {**GOOD, "recipientName": "Keyed", "idempotencyKey": "first-of-its-form"}
    normal = asyncio.create_task(
        client.post(
            "/graphql",
            json={"query": NORMAL_CREATE, "variables": {"i": keyed}},
            headers=owner.headers,
        )
    )
    try:
        await asyncio.wait_for(reached.wait(), 10)
        writes = state.writes
        lane = asyncio.create_task(
            client.post("/graphql", json=_persisted(CREATE, {"i": GOOD}), headers=other.headers)
        )
        await until_lock_waited(superuser_engine)
    finally:
        gate.set()
    started = time.monotonic()
    responses = await asyncio.gather(lane, normal)
    elapsed = time.monotonic() - started
    for response in responses:
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text
    assert state.writes == writes + 1, "the lane's transaction was broken, and fell back"
    assert elapsed < 0.9, f"the firm's writes stalled {elapsed:.2f} s on a deadlock"
