"""Firm API keys: created by admins and owners, shown once, stored as a SHA-256, limited by scope
on every field, bound to one firm, refused at once when revoked or expired, and never taken from
the URL or alongside a session."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.actor import Role
from app.auth.sessions import COOKIE_NAME
from tests.browser import new_email
from tests.conftest import Database
from tests.factories import Member, Members
from tests.mail.smtp import SmtpServer
from tests.partners import (
    CREATE_KEY,
    LIST_KEYS,
    REVOKE_KEY,
    codes,
    count,
    create_key,
    declaration_input,
    gql,
    listed_keys,
    load_trusted,
    partner_client,
    persisted,
    rows,
    run_persisted,
    session_client,
    tagged,
    trust,
)

KEY = re.compile(r"^cp_live_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
DECLARATIONS = ["DECLARATIONS_READ", "DECLARATIONS_WRITE"]

CREATE = """mutation Create{tag}($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id status recipientEmail } } }"""
SEND = """mutation Send{tag}($id: UUID!) { sendDeclaration(id: $id) {
  declaration { id status sentAt } } }"""
LIST = """query List{tag}($first: Int!) { declarations(first: $first) {
  edges { node { id status recipientEmail } } } }"""
READ = "query Read{tag}($id: UUID!) { declaration(id: $id) { id status recipientEmail } }"
NESTED = """query Nested{tag} { declarations(first: 5) {
  edges { node { id counterparty { name } } } } }"""
COUNTERPARTIES = "query Cps{tag} { counterparties { edges { node { id name } } } }"
CREATE_COUNTERPARTY = """mutation Cp{tag}($i: CounterpartyCreateInput!) {
  createCounterparty(input: $i) { counterparty { id } } }"""


async def owner_and_key(
    auth_app: Starlette, members: Members, scopes: list[str] = DECLARATIONS, **extra: Any
) -> tuple[Member, str, str]:
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        secret, key_id = await create_key(client, scopes, **extra)
    return owner, secret, key_id


async def audit_of(engine: AsyncEngine, target: str) -> list[Any]:
    return await rows(
        engine,
        "select action, actor_type, actor_id, details from audit_log "
        "where target_id = :target order by occurred_at, seq",
        target=target,
    )


async def last_used(engine: AsyncEngine, key_id: str) -> datetime | None:
    found = await rows(engine, "select last_used_at from api_keys where id = :id", id=key_id)
    value: datetime | None = found[0].last_used_at
    return value


async def declarations_of(engine: AsyncEngine, firm_id: uuid.UUID) -> int:
    return await count(
        engine, "select count(*) from declarations where firm_id = :firm", firm=firm_id
    )


# --- creating, listing, storing -------------------------------------------------------------


async def test_create_returns_the_secret_once_and_lists_only_its_prefix(
    auth_app: Starlette, members: Members
) -> None:
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        body = await gql(client, CREATE_KEY, {"i": {"name": "HR system", "scopes": DECLARATIONS}})
        assert "errors" not in body, body
        created = body["data"]["createApiKey"]
        secret = created["secret"]
        shape = KEY.match(secret)
        assert shape, secret
        public_id, tail = shape.groups()
        assert len(base64.urlsafe_b64decode(tail + "=")) == 32  # a 256-bit secret
        assert created["apiKey"]["prefix"] == f"cp_live_{public_id}"
        assert sorted(created["apiKey"]["scopes"]) == DECLARATIONS

        listed = await client.post("/graphql", json={"query": LIST_KEYS})
        keys = listed_keys(listed.json())
        assert [(k["id"], k["prefix"]) for k in keys] == [
            (created["apiKey"]["id"], f"cp_live_{public_id}")
        ]
        assert keys[0]["revokedAt"] is None
        assert keys[0]["lastUsedAt"] is None
        assert tail not in listed.text
        assert secret not in listed.text

        # The type has no field that could ever return it again.
        again = await gql(client, "{ apiKeys { edges { node { id secret } } } }")
        assert "errors" in again
        assert "data" not in again or again["data"] is None
        second, _ = await create_key(client, ["AUDIT_READ"])
        assert second != secret


async def test_only_the_sha256_of_the_key_is_stored(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner, secret, key_id = await owner_and_key(auth_app, members)
    tail = secret[len("cp_live_") + 13 :]  # the secret itself may hold "_"
    assert len(tail) == 43
    async with superuser_engine.connect() as conn:
        row = (
            (await conn.execute(text("select * from api_keys where id = :id"), {"id": key_id}))
            .mappings()
            .one()
        )
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert row["display_prefix"] == secret[:20]
    assert row["created_by"] == owner.user_id
    assert row["firm_id"] == owner.firm_id
    assert sorted(row["scopes"]) == ["declarations:read", "declarations:write"]
    assert row["created_at"] is not None
    assert (row["last_used_at"], row["expires_at"], row["revoked_at"]) == (None, None, None)
    for column, value in row.items():
        shown = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        assert secret.encode() not in shown, column
        assert tail.encode() not in shown, column
    # Nor does the audit trail hold it.
    trail = await rows(
        superuser_engine,
        "select canonical from audit_log where target_id = :id",
        id=key_id,
    )
    assert trail
    assert all(tail.encode() not in bytes(entry.canonical) for entry in trail)


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
async def test_members_and_viewers_cannot_create_list_or_revoke_keys(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine, role: Role
) -> None:
    owner, _, key_id = await owner_and_key(auth_app, members)
    someone = await members.create(role, firm_id=owner.firm_id)
    async with session_client(auth_app, someone) as client:
        created = await gql(client, CREATE_KEY, {"i": {"name": "Mine", "scopes": ["AUDIT_READ"]}})
        assert codes(created) == ["FORBIDDEN"]
        assert codes(await gql(client, LIST_KEYS)) == ["FORBIDDEN"]
        assert codes(await gql(client, REVOKE_KEY, {"id": key_id})) == ["FORBIDDEN"]
    keys = await rows(
        superuser_engine,
        "select id, revoked_at from api_keys where firm_id = :firm",
        firm=owner.firm_id,
    )
    assert [(str(k.id), k.revoked_at) for k in keys] == [(key_id, None)]


async def test_admins_may_manage_keys(auth_app: Starlette, members: Members) -> None:
    owner = await members.create(Role.OWNER)
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    async with session_client(auth_app, admin) as client:
        _, key_id = await create_key(client, ["EVIDENCE_READ"])
        listed = await gql(client, LIST_KEYS)
        assert [k["id"] for k in listed_keys(listed)] == [key_id]
        revoked = await gql(client, REVOKE_KEY, {"id": key_id})
        assert revoked["data"]["revokeApiKey"]["apiKey"]["revokedAt"] is not None


PAGE_OF_KEYS = """query($first: Int!, $after: String) { apiKeys(first: $first, after: $after) {
  edges { cursor node { id revokedAt } } pageInfo { hasNextPage endCursor } } }"""


async def test_keys_are_listed_a_page_at_a_time_newest_first_revoked_ones_too(
    auth_app: Starlette, members: Members
) -> None:
    """Listed whole, the ten thousand keys an admin can make in under two hours took seconds
    and megabytes on the event loop every firm shares (a review)."""
    admin = await members.create(Role.ADMIN)
    async with session_client(auth_app, admin) as client:
        made = [(await create_key(client, ["EVIDENCE_READ"]))[1] for _ in range(5)]
        assert "errors" not in await gql(client, REVOKE_KEY, {"id": made[1]})
        listed, after = [], None
        while True:
            body = await gql(client, PAGE_OF_KEYS, {"first": 2, "after": after})
            page = body["data"]["apiKeys"]
            assert len(page["edges"]) <= 2
            listed += [edge["node"] for edge in page["edges"]]
            after = page["pageInfo"]["endCursor"]
            if not page["pageInfo"]["hasNextPage"]:
                break
        assert [key["id"] for key in listed] == made[::-1]
        assert [key["revokedAt"] is not None for key in listed] == [
            False,
            False,
            False,
            True,
            False,
        ]
        for variables in ({"first": 0}, {"first": 101}, {"first": 2, "after": "not a cursor"}):
            refused = await gql(client, PAGE_OF_KEYS, variables)
            assert codes(refused) == ["BAD_USER_INPUT"], refused


async def test_an_owner_cannot_list_or_revoke_another_firms_key(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    _, secret, key_id = await owner_and_key(auth_app, members)
    stranger = await members.create(Role.OWNER, name="Stranger Ltd")
    async with session_client(auth_app, stranger) as client:
        assert listed_keys(await gql(client, LIST_KEYS)) == []
        assert codes(await gql(client, REVOKE_KEY, {"id": key_id})) == ["NOT_FOUND"]
    assert await last_used(superuser_engine, key_id) is None
    async with partner_client(auth_app, secret) as partner:
        assert "errors" not in await persisted(partner, listing, {"first": 1})


async def test_create_refuses_bad_input(auth_app: Starlette, members: Members) -> None:
    owner = await members.create(Role.OWNER)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    async with session_client(auth_app, owner) as client:
        for bad in (
            {"name": "Past", "scopes": DECLARATIONS, "expiresAt": past},
            {"name": "No scopes", "scopes": []},
            {"name": "  ", "scopes": DECLARATIONS},
            {"name": "n" * 101, "scopes": DECLARATIONS},
        ):
            assert codes(await gql(client, CREATE_KEY, {"i": bad})) == ["BAD_USER_INPUT"], bad
        assert listed_keys(await gql(client, LIST_KEYS)) == []


@pytest.mark.parametrize(
    "name",
    [
        "HR \u202etsys\u202c feed",
        "HR \u2066system\u2069",
        "HR\u200f system",
        "HR\nsystem",
        "\u200b\u200b",
    ],
    ids=["override", "isolate", "direction-mark", "line-feed", "shows-nothing"],
)
async def test_a_key_name_is_shown_as_stored(
    auth_app: Starlette, members: Members, name: str
) -> None:
    """A key's name is listed to admins and names the actor of every entry the key made, in
    auditEntries and in the evidence pack's audit appendix: held to the rule of the other names
    a pack prints (no bidi control, no control character, something shown)."""
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        body = await gql(client, CREATE_KEY, {"i": {"name": name, "scopes": DECLARATIONS}})
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert [f["field"] for f in body["errors"][0]["extensions"]["fields"]] == ["name"]
        assert listed_keys(await gql(client, LIST_KEYS)) == []


async def test_a_key_may_expire_at_the_end_of_the_calendar_and_any_offset_is_read_as_utc(
    auth_app: Starlette, members: Members
) -> None:
    """9999-12-31T23:59:59Z, the usual "never", is taken; a moment given at another offset is
    kept, and answered, as the same moment in UTC. One without an offset is refused."""
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        for sent, kept in (
            ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59+00:00"),
            ("2031-06-01T09:30:00+01:00", "2031-06-01T08:30:00+00:00"),
        ):
            body = await gql(
                client,
                CREATE_KEY,
                {"i": {"name": "Far", "scopes": DECLARATIONS, "expiresAt": sent}},
            )
            assert body["data"]["createApiKey"]["apiKey"]["expiresAt"] == kept, body
        listed = listed_keys(await gql(client, LIST_KEYS))
        assert sorted(k["expiresAt"] for k in listed) == [
            "2031-06-01T08:30:00+00:00",
            "9999-12-31T23:59:59+00:00",
        ]
        naive = {"name": "Naive", "scopes": DECLARATIONS, "expiresAt": "2031-06-01T09:30:00"}
        assert codes(await gql(client, CREATE_KEY, {"i": naive})) == ["BAD_USER_INPUT"]


# --- the partner flow -----------------------------------------------------------------------


async def test_partner_key_runs_create_send_and_list_end_to_end(
    auth_app: Starlette,
    members: Members,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create, send, listing, read = (tagged(d) for d in (CREATE, SEND, LIST, READ))
    await load_trusted(monkeypatch, database, tmp_path, create, send, listing, read)
    owner, secret, key_id = await owner_and_key(auth_app, members)
    recipient = new_email()

    async with partner_client(auth_app, secret) as partner:
        made = await persisted(partner, create, {"i": declaration_input(recipient)})
        assert "errors" not in made, made
        declaration = made["data"]["createDeclaration"]["declaration"]
        assert (declaration["status"], declaration["recipientEmail"]) == ("DRAFT", recipient)

        sent = await persisted(partner, send, {"id": declaration["id"]}, form="apollo")
        assert "errors" not in sent, sent
        assert sent["data"]["sendDeclaration"]["declaration"]["status"] == "SENT"
        await smtp.wait_for(lambda _: bool(smtp.to(recipient)))

        listed = await persisted(partner, listing, {"first": 10}, form="get")
        assert "errors" not in listed, listed
        nodes = [edge["node"] for edge in listed["data"]["declarations"]["edges"]]
        assert nodes == [{"id": declaration["id"], "status": "SENT", "recipientEmail": recipient}]
        one = await persisted(partner, read, {"id": declaration["id"]})
        assert one["data"]["declaration"]["status"] == "SENT"

    trail = await audit_of(superuser_engine, declaration["id"])
    assert [(e.action, e.actor_type, e.actor_id) for e in trail] == [
        ("declaration.created", "api_key", key_id),
        ("declaration.sent", "api_key", key_id),
    ]
    key_trail = await audit_of(superuser_engine, key_id)
    assert [(e.action, e.actor_type) for e in key_trail] == [
        ("api_key.created", "user"),
        ("api_key.first_used", "api_key"),
    ]
    assert key_trail[0].actor_id == str(owner.user_id)
    assert await last_used(superuser_engine, key_id) is not None


async def test_creation_first_use_and_revocation_are_audited_once_each(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        secret, key_id = await create_key(client, ["DECLARATIONS_READ"])
        async with partner_client(auth_app, secret) as partner:
            # A refused request is no use: it is rolled back, first use and all.
            unknown = await persisted(partner, tagged(LIST))
            assert codes(unknown) == ["PERSISTED_QUERY_NOT_FOUND"]
            for _ in range(3):
                ok = await persisted(partner, listing, {"first": 1})
                assert "errors" not in ok, ok
        revoked = await gql(client, REVOKE_KEY, {"id": key_id})
        assert "errors" not in revoked, revoked

    trail = await audit_of(superuser_engine, key_id)
    assert [(e.action, e.actor_type, e.actor_id) for e in trail] == [
        ("api_key.created", "user", str(owner.user_id)),
        ("api_key.first_used", "api_key", key_id),
        ("api_key.revoked", "user", str(owner.user_id)),
    ]
    assert trail[0].details["prefix"] == secret[:20]
    assert trail[0].details["scopes"] == ["declarations:read"]


async def test_concurrent_first_requests_audit_first_use_exactly_once(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    _, secret, key_id = await owner_and_key(auth_app, members)
    async with partner_client(auth_app, secret) as partner:
        results = await asyncio.gather(
            *(persisted(partner, listing, {"first": 1}) for _ in range(6))
        )
    assert all("errors" not in r for r in results), results
    first_uses = await count(
        superuser_engine,
        "select count(*) from audit_log where target_id = :id and action = 'api_key.first_used'",
        id=key_id,
    )
    assert first_uses == 1


# --- scopes ---------------------------------------------------------------------------------


async def test_a_key_cannot_use_fields_outside_its_scopes(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing, create_cp = tagged(COUNTERPARTIES), tagged(CREATE_COUNTERPARTY)
    read_decls = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing, create_cp, read_decls)
    owner, secret, _ = await owner_and_key(auth_app, members, ["DECLARATIONS_WRITE"])
    async with partner_client(auth_app, secret) as partner:
        refused = await persisted(partner, listing)
        assert codes(refused) == ["FORBIDDEN"]
        assert refused.get("data") is None
        wrote = await persisted(partner, create_cp, {"i": {"name": "Acme", "kind": "OTHER"}})
        assert codes(wrote) == ["FORBIDDEN"]
        # declarations:write does not imply declarations:read.
        assert codes(await persisted(partner, read_decls, {"first": 1})) == ["FORBIDDEN"]
    written = await count(
        superuser_engine,
        "select count(*) from counterparties where firm_id = :firm",
        firm=owner.firm_id,
    )
    assert written == 0


UPDATE_COUNTERPARTY = """mutation Up{tag}($id: UUID!, $i: CounterpartyUpdateInput!) {
  updateCounterparty(id: $id, input: $i) { counterparty { %s } } }"""
CREATE_SELECTING = """mutation Made{tag}($i: DeclarationCreateInput!) { createDeclaration(input: $i)
  { declaration { %s } } }"""


async def test_a_write_scope_alone_answers_a_mutation_with_ids_and_nothing_it_may_not_read(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payload would otherwise read for a key what its scopes do not let it read: a
    counterparty "updated" with nothing, a declaration replayed by its idempotency key, answers
    and all. Refused before the mutation runs (after it, its write would stand), on the write
    lane as on the normal path; the ids of what it wrote it is given."""
    peek_cp = tagged(UPDATE_COUNTERPARTY % "id notes")
    touch_cp = tagged(UPDATE_COUNTERPARTY % "id")
    peek, made = tagged(CREATE_SELECTING % "id status"), tagged(CREATE_SELECTING % "id")
    aside = tagged(CREATE_SELECTING % "... on Declaration { recipientEmail } id")
    await load_trusted(monkeypatch, database, tmp_path, peek_cp, touch_cp, peek, made, aside)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        created = await gql(
            client,
            CREATE_COUNTERPARTY.replace("{tag}", ""),
            {"i": {"name": "Secret Introducer", "kind": "OTHER", "notes": "confidential terms"}},
        )
        counterparty = created["data"]["createCounterparty"]["counterparty"]["id"]
        secret, _ = await create_key(client, ["COUNTERPARTIES_WRITE", "DECLARATIONS_WRITE"])
    async with partner_client(auth_app, secret) as partner:
        refused = await persisted(partner, peek_cp, {"id": counterparty, "i": {}})
        assert codes(refused) == ["FORBIDDEN"], refused
        assert "counterparties:read" in refused["errors"][0]["message"]
        touched = await persisted(partner, touch_cp, {"id": counterparty, "i": {}})
        assert touched["data"]["updateCounterparty"]["counterparty"] == {"id": counterparty}
        before = await count(
            superuser_engine,
            "select count(*) from declarations where firm_id = :f",
            f=owner.firm_id,
        )
        for document in (peek, aside):
            for _ in range(2):  # the normal path, then the write lane, which hands it over
                assert codes(await persisted(partner, document, {"i": declaration_input()})) == [
                    "FORBIDDEN"
                ]
        after = await count(
            superuser_engine,
            "select count(*) from declarations where firm_id = :f",
            f=owner.firm_id,
        )
        assert after == before  # refused before anything was written
        lane = auth_app.state.coverproof.fast_path
        writes = lane.writes
        for _ in range(2):
            wrote = await persisted(partner, made, {"i": declaration_input()})
            assert set(wrote["data"]["createDeclaration"]["declaration"]) == {"id"}, wrote
        assert lane.writes > writes  # the lane answered with the id too


ADMIN_FIELDS = {
    "viewer": ("query Viewer{tag} { viewer { role user { email } } }", None),
    "members": ("query Members{tag} { members { email role } }", None),
    "firm": ("query Firm{tag} { firm { id name } }", None),
    "apiKeys": ("query Keys{tag} { apiKeys { edges { node { id prefix } } } }", None),
    "updateFirm": (
        "mutation Firm{tag}($i: FirmUpdateInput!) { updateFirm(input: $i) { firm { name } } }",
        {"i": {"name": "Taken Over Ltd"}},
    ),
    "createApiKey": (
        "mutation Key{tag}($i: ApiKeyCreateInput!) { createApiKey(input: $i) { secret } }",
        {"i": {"name": "Escalated", "scopes": ["AUDIT_READ"]}},
    ),
}


@pytest.mark.parametrize("field", list(ADMIN_FIELDS))
async def test_a_key_with_every_scope_cannot_reach_admin_fields(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
) -> None:
    template, variables = ADMIN_FIELDS[field]
    document = tagged(template)
    await load_trusted(monkeypatch, database, tmp_path, document)
    every = [
        "DECLARATIONS_READ",
        "DECLARATIONS_WRITE",
        "COUNTERPARTIES_READ",
        "COUNTERPARTIES_WRITE",
        "AUDIT_READ",
        "EVIDENCE_READ",
    ]
    owner, secret, key_id = await owner_and_key(auth_app, members, every)
    async with partner_client(auth_app, secret) as partner:
        body = await persisted(partner, document, variables)
    assert codes(body) == ["FORBIDDEN"], body
    assert not any((body.get("data") or {}).values()), body  # null, or {"viewer": null}
    firm = await rows(superuser_engine, "select name from firms where id = :id", id=owner.firm_id)
    assert firm[0].name == "Acme Advisers Ltd"
    keys = await rows(
        superuser_engine, "select id from api_keys where firm_id = :firm", firm=owner.firm_id
    )
    assert [str(k.id) for k in keys] == [key_id]


async def test_a_nested_field_needs_its_own_scope(
    auth_app: Starlette,
    members: Members,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create, nested = tagged(CREATE), tagged(NESTED)
    await load_trusted(monkeypatch, database, tmp_path, create, nested)
    owner, secret, _ = await owner_and_key(auth_app, members)
    async with session_client(auth_app, owner) as client:
        wider, _ = await create_key(client, [*DECLARATIONS, "COUNTERPARTIES_READ"])
    async with partner_client(auth_app, secret) as partner:
        made = await persisted(partner, create, {"i": declaration_input()})
        assert "errors" not in made, made
        body = await persisted(partner, nested)
    assert codes(body) == ["FORBIDDEN"], body
    assert body["errors"][0]["path"] == ["declarations", "edges", 0, "node", "counterparty"]
    assert "counterparties:read" in body["errors"][0]["message"]
    async with partner_client(auth_app, wider) as partner:
        allowed = await persisted(partner, nested)
    assert "errors" not in allowed, allowed
    assert allowed["data"]["declarations"]["edges"][0]["node"]["counterparty"] is None


# --- one firm -------------------------------------------------------------------------------


async def test_a_key_cannot_see_or_send_another_firms_declaration(
    auth_app: Starlette,
    members: Members,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send, read = tagged(SEND), tagged(READ)
    await load_trusted(monkeypatch, database, tmp_path, send, read)
    other = await members.create(Role.OWNER, name="Other Firm Ltd")
    recipient = new_email()
    async with session_client(auth_app, other) as client:
        made = await gql(client, tagged(CREATE), {"i": declaration_input(recipient)})
        theirs = made["data"]["createDeclaration"]["declaration"]["id"]
    _, secret, _ = await owner_and_key(auth_app, members)
    async with partner_client(auth_app, secret) as partner:
        assert codes(await persisted(partner, read, {"id": theirs})) == ["NOT_FOUND"]
        assert codes(await persisted(partner, send, {"id": theirs})) == ["NOT_FOUND"]
    state = await rows(
        superuser_engine, "select status, sent_at from declarations where id = :id", id=theirs
    )
    assert (state[0].status, state[0].sent_at) == ("draft", None)
    assert [e.action for e in await audit_of(superuser_engine, theirs)] == ["declaration.created"]
    assert smtp.to(recipient) == []


# --- refused keys ---------------------------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create, listing = tagged(CREATE), tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, create, listing)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        secret, key_id = await create_key(client, DECLARATIONS)
        async with partner_client(auth_app, secret) as partner:
            assert "errors" not in await persisted(partner, listing, {"first": 1})
            revoked = await gql(client, REVOKE_KEY, {"id": key_id})
            assert revoked["data"]["revokeApiKey"]["apiKey"]["revokedAt"] is not None
            for document, variables in (
                (listing, {"first": 1}),
                (create, {"i": declaration_input()}),
            ):
                response = await run_persisted(partner, document, variables)
                assert response.status_code == 401
                assert codes(response.json()) == ["UNAUTHENTICATED"]
        assert codes(await gql(client, REVOKE_KEY, {"id": key_id})) == ["NOT_FOUND"]
    assert await declarations_of(superuser_engine, owner.firm_id) == 0


async def test_an_expired_key_is_refused(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create, listing = tagged(CREATE), tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, create, listing)
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    owner, secret, key_id = await owner_and_key(auth_app, members, expiresAt=soon)
    async with partner_client(auth_app, secret) as partner:
        assert "errors" not in await persisted(partner, listing, {"first": 1})
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("update api_keys set expires_at = now() - interval '1 second' where id = :id"),
                {"id": key_id},
            )
        for document, variables in ((listing, {"first": 1}), (create, {"i": declaration_input()})):
            response = await run_persisted(partner, document, variables)
            assert response.status_code == 401
            assert codes(response.json()) == ["UNAUTHENTICATED"]
    assert await declarations_of(superuser_engine, owner.firm_id) == 0


async def test_a_key_with_a_session_cookie_is_refused(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create = tagged(CREATE)
    await load_trusted(monkeypatch, database, tmp_path, create)
    owner, secret, _ = await owner_and_key(auth_app, members)
    async with partner_client(auth_app, secret) as partner:
        response = await partner.post(
            "/graphql",
            json={"query": create, "variables": {"i": declaration_input()}},
            headers=owner.headers,
        )
        assert response.status_code == 400
        assert codes(response.json()) == ["BAD_REQUEST"]
        partner.cookies.set(COOKIE_NAME, owner.cookie)
        response = await run_persisted(partner, create, {"i": declaration_input()})
        assert response.status_code == 400
        assert codes(response.json()) == ["BAD_REQUEST"]
    assert await declarations_of(superuser_engine, owner.firm_id) == 0


@pytest.mark.parametrize("parameter", ["access_token", "api_key"])
async def test_a_key_in_the_url_authenticates_nothing(
    auth_app: Starlette,
    members: Members,
    superuser_engine: AsyncEngine,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parameter: str,
) -> None:
    create, listing = tagged(CREATE), tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, create, listing)
    owner, secret, key_id = await owner_and_key(auth_app, members)
    digest = hashlib.sha256(create.encode()).hexdigest()
    async with session_client(auth_app) as anonymous:
        response = await anonymous.post(
            f"/graphql?{parameter}={secret}",
            json={"documentId": f"sha256:{digest}", "variables": {"i": declaration_input()}},
        )
        assert codes(response.json()) == ["UNAUTHENTICATED"], response.text
        listing_id = hashlib.sha256(listing.encode()).hexdigest()
        response = await anonymous.get(
            "/graphql",
            params={
                "documentId": f"sha256:{listing_id}",
                "variables": '{"first": 1}',
                parameter: secret,
            },
        )
        assert codes(response.json()) == ["UNAUTHENTICATED"], response.text
        assert response.json().get("data") is None
    assert await declarations_of(superuser_engine, owner.firm_id) == 0
    assert await last_used(superuser_engine, key_id) is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic {key}",
        "Token {key}",
        "{key}",
        "Bearer {key}x",
        "Bearer cp_live_abc_def",
        "Bearer cp_live_abcdefghijkm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Bearer {key},{key}",
    ],
)
async def test_a_malformed_or_unknown_authorization_header_is_401(
    auth_app: Starlette, members: Members, header: str
) -> None:
    _, secret, _ = await owner_and_key(auth_app, members)
    async with session_client(auth_app) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ declarations { edges { node { id } } } }"},
            headers={"authorization": header.format(key=secret)},
        )
    assert response.status_code == 401, response.text
    assert codes(response.json()) == ["UNAUTHENTICATED"]
    assert "data" not in response.json()


async def test_each_key_is_rate_limited_on_its_own(
    auth_app: Starlette,
    members: Members,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = tagged(LIST)
    await load_trusted(monkeypatch, database, tmp_path, listing)
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        busy, _ = await create_key(client, ["DECLARATIONS_READ"])
        calm, _ = await create_key(client, ["DECLARATIONS_READ"])
    for _ in range(30):  # API_KEY_REQUESTS is 600 a minute, from any number of addresses
        async with partner_client(auth_app, busy) as partner:
            batch = await asyncio.gather(
                *(run_persisted(partner, listing, {"first": 1}) for _ in range(20))
            )
            assert all(r.status_code == 200 for r in batch), [r.text for r in batch]
    async with partner_client(auth_app, busy) as partner:
        refused = await run_persisted(partner, listing, {"first": 1})
        assert refused.status_code == 429, refused.text
        assert codes(refused.json()) == ["RATE_LIMITED"]
        assert refused.json()["errors"][0]["message"] == "Too many requests; try again later."
    async with partner_client(auth_app, calm) as partner:
        assert "errors" not in await persisted(partner, listing, {"first": 1})


SEND_WITH_COUNTERPARTY = """mutation SendNested{tag}($id: UUID!) { sendDeclaration(id: $id) {
  declaration { id counterparty { id } } } }"""
SEND_PLAIN = """mutation SendPlain{tag}($id: UUID!) { sendDeclaration(id: $id) {
  declaration { id } } }"""
SEND_SKIPPING = """mutation SendSkip{tag}($id: UUID!, $cp: Boolean!) { sendDeclaration(id: $id) {
  declaration { id counterparty @include(if: $cp) { id } } } }"""
CREATE_DRAFT = """mutation Draft{tag}($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id } } }"""


async def test_a_mutation_selecting_a_field_the_key_may_not_read_is_refused_before_it_runs(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """A key without counterparties:read sending a declaration and selecting its counterparty
    is refused before the send: refused after it, the send was rolled back but the mail
    limits it counted (outside the database) stayed spent, and five such refusals used up
    the recipient's hour, with nothing sent and nothing on the record."""
    create, nested, plain = tagged(CREATE_DRAFT), tagged(SEND_WITH_COUNTERPARTY), tagged(SEND_PLAIN)
    skipping = tagged(SEND_SKIPPING)
    await trust(superuser_engine, [create, nested, plain, skipping])
    owner = await members.create(Role.OWNER)
    async with session_client(auth_app, owner) as client:
        secret, _ = await create_key(client, ["DECLARATIONS_READ", "DECLARATIONS_WRITE"])
    email = new_email()
    async with partner_client(auth_app, secret) as partner:
        drafts = []
        for _ in range(6):
            made = await persisted(partner, create, {"i": declaration_input(email)})
            drafts.append(made["data"]["createDeclaration"]["declaration"]["id"])
        for ident in drafts[:5]:
            refused = await persisted(partner, nested, {"id": ident})
            assert codes(refused) == ["FORBIDDEN"], refused
            assert "counterparties:read" in refused["errors"][0]["message"]
        sent = await persisted(partner, plain, {"id": drafts[5]})
        # A field the executor skips (@include false) needs no scope; included, it does.
        other = await persisted(partner, create, {"i": declaration_input(new_email())})
        ident = other["data"]["createDeclaration"]["declaration"]["id"]
        refused = await persisted(partner, skipping, {"id": ident, "cp": True})
        assert codes(refused) == ["FORBIDDEN"], refused
        skipped = await persisted(partner, skipping, {"id": ident, "cp": False})
    assert "errors" not in sent, sent
    assert "errors" not in skipped, skipped
    leaving = "select count(*) from declarations where recipient_email = :e and status <> 'draft'"
    assert await count(superuser_engine, leaving, e=email) == 1
