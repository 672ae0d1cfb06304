"""The audit trail through GraphQL: browsing with filters and cursors, who may use it, firm
isolation, signed checkpoints and the published key, and the periodic checkpointer."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import canonical, chain, checkpoints
from app.audit import service as audit_service
from app.audit.actions import Action
from app.audit.signing import checkpoint_payload, verify_signature
from app.auth.actor import Actor, ActorType, Role
from app.db import calls
from app.db.engine import create_engine, session_factory
from app.db.models import AuditCheckpoint
from app.db.tenant import (
    bind_tenant,
    checkpointer_transaction,
    tenant_transaction,
    transaction,
)
from app.declarations.templates import load_builtins
from tests.audit.test_tamper import (
    CHECKPOINT,
    VERIFY,
    Trail,
    append,
    new_trail,
    sign_head,
    signing_key,
    tamper,
)
from tests.conftest import Database
from tests.factories import Member, Members, codes, gql
from tests.partners import doc_id, trust

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
RENAME = "mutation($name: String!) { updateFirm(input: {name: $name}) { firm { name } } }"
CREATE_DECLARATION = """mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id } } }"""
ENTRIES = """query($first: Int!, $after: String, $filter: AuditEntryFilterInput) {
  auditEntries(first: $first, after: $after, filter: $filter) {
    edges { cursor node { seq occurredAt actor { type id displayName } action targetType
      targetId details ip prevHash hash } }
    pageInfo { hasNextPage endCursor } } }"""
CHECKPOINTS = "{ auditCheckpoints { id seq headHash signedAt keyId signature } }"
EXPORT = "{ exportAuditLog { keyId jsonl } }"
KEY_URL = "/.well-known/coverproof-audit-key"


async def page(
    client: httpx.AsyncClient,
    member: Member,
    first: int = 100,
    after: str | None = None,
    **filters: Any,
) -> dict[str, Any]:
    body = await gql(
        client, ENTRIES, {"first": first, "after": after, "filter": filters or None}, member
    )
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["auditEntries"]
    return result


def seqs(result: dict[str, Any]) -> list[int]:
    return [edge["node"]["seq"] for edge in result["edges"]]


async def rename(client: httpx.AsyncClient, member: Member, name: str) -> None:
    body = await gql(client, RENAME, {"name": name}, member)
    assert body == {"data": {"updateFirm": {"firm": {"name": name}}}}, body


def recomputed_hash(firm_id: uuid.UUID, node: dict[str, Any]) -> str:
    """SHA-256(prevHash || canonical bytes of the fields as the API shows them)."""
    body = canonical.entry_body(
        firm_id=str(firm_id),
        seq=node["seq"],
        occurred_at=datetime.fromisoformat(node["occurredAt"]),
        actor_type=node["actor"]["type"].lower(),
        actor_id=node["actor"]["id"],
        action=node["action"],
        target_type=node["targetType"],
        target_id=node["targetId"],
        details=node["details"],
        ip=node["ip"],
    )
    return canonical.chain_hash(bytes.fromhex(node["prevHash"]), canonical.encode(body)).hex()


# --- 11. browsing ----------------------------------------------------------------------------


async def test_entries_come_newest_first_with_cursors_filters_names_and_their_chain(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await members.create(Role.OWNER)
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    firm = owner.firm_id
    await rename(client, owner, "Browse One Ltd")  # 1
    await rename(client, owner, "Browse Two Ltd")  # 2
    body = await gql(  # 3
        client,
        CREATE_DECLARATION,
        {
            "i": {
                "templateId": str(FIT.id),
                "recipientName": "Pat Doe",
                "recipientEmail": "p@x.test",
            }
        },
        admin,
    )
    declaration = body["data"]["createDeclaration"]["declaration"]["id"]
    recipient = Actor(
        ActorType.RECIPIENT, uuid.UUID(declaration), firm, Role.VIEWER, "198.51.100.7"
    )
    system = Actor(ActorType.SYSTEM, uuid.uuid4(), firm, Role.OWNER)
    async with tenant_transaction(app_sessions, firm) as session:
        await chain.record(
            session, recipient, Action.DECLARATION_OPENED, "declaration", declaration
        )
    async with tenant_transaction(app_sessions, firm) as session:
        await chain.record(
            session, system, Action.DECLARATION_REMINDED, "declaration", declaration, {"count": 1}
        )
    await rename(client, owner, "Browse Three Ltd")  # 6
    await rename(client, admin, "Browse Four Ltd")  # 7

    everything = await page(client, admin)
    assert seqs(everything) == [7, 6, 5, 4, 3, 2, 1]
    assert everything["pageInfo"] == {"hasNextPage": False, "endCursor": "1"}
    nodes = {edge["node"]["seq"]: edge["node"] for edge in everything["edges"]}
    assert all(edge["cursor"] == str(edge["node"]["seq"]) for edge in everything["edges"])

    # Who, what, on what, from where.
    assert nodes[1]["actor"] == {
        "type": "USER",
        "id": str(owner.user_id),
        "displayName": owner.email,
    }
    assert nodes[7]["actor"] == {
        "type": "USER",
        "id": str(admin.user_id),
        "displayName": admin.email,
    }
    assert nodes[3]["actor"] == {
        "type": "USER",
        "id": str(admin.user_id),
        "displayName": admin.email,
    }
    assert nodes[4]["actor"] == {"type": "RECIPIENT", "id": declaration, "displayName": "Pat Doe"}
    assert nodes[5]["actor"] == {
        "type": "SYSTEM",
        "id": str(system.id),
        "displayName": "CoverProof",
    }
    assert [nodes[n]["action"] for n in range(1, 8)] == [
        "firm.updated",
        "firm.updated",
        "declaration.created",
        "declaration.opened",
        "declaration.reminded",
        "firm.updated",
        "firm.updated",
    ]
    assert (nodes[2]["targetType"], nodes[2]["targetId"]) == ("firm", str(firm))
    assert (nodes[4]["targetType"], nodes[4]["targetId"]) == ("declaration", declaration)
    assert nodes[2]["details"] == {
        "changes": {"name": {"from": "Browse One Ltd", "to": "Browse Two Ltd"}}
    }
    assert nodes[3]["details"] == {"template_id": str(FIT.id), "version": FIT.version}
    assert nodes[5]["details"] == {"count": 1}
    assert (nodes[1]["ip"], nodes[4]["ip"], nodes[5]["ip"]) == ("127.0.0.1", "198.51.100.7", None)

    # The hashes shown are the chain: 64 hex digits, each entry linked to the one before, and
    # each the hash of the fields exactly as shown.
    assert nodes[1]["prevHash"] == "00" * 32
    for n in range(1, 8):
        assert len(nodes[n]["hash"]) == 64
        assert int(nodes[n]["hash"], 16) >= 0
        assert nodes[n]["hash"] == recomputed_hash(firm, nodes[n])
        if n > 1:
            assert nodes[n]["prevHash"] == nodes[n - 1]["hash"]
    verified = (await gql(client, VERIFY, None, admin))["data"]["verifyAuditChain"]
    assert (verified["ok"], verified["headSeq"]) == (True, 7)

    # Paging with the seq cursor.
    first = await page(client, admin, first=3)
    assert (seqs(first), first["pageInfo"]) == ([7, 6, 5], {"hasNextPage": True, "endCursor": "5"})
    second = await page(client, admin, first=3, after="5")
    assert (seqs(second), second["pageInfo"]) == (
        [4, 3, 2],
        {"hasNextPage": True, "endCursor": "2"},
    )
    last = await page(client, admin, first=3, after="2")
    assert (seqs(last), last["pageInfo"]) == ([1], {"hasNextPage": False, "endCursor": "1"})
    empty = await page(client, admin, first=3, after="1")
    assert (seqs(empty), empty["pageInfo"]) == ([], {"hasNextPage": False, "endCursor": None})
    # Not a seq: digits outside ASCII, or past a bigint, are refused, not a 500.
    for forged in ("\u00b2", "9999999999999999999", "-1", "1.5", ""):
        body = await gql(client, ENTRIES, {"first": 3, "after": forged}, admin)
        assert codes(body) == ["BAD_USER_INPUT"], (forged, body)

    # Filters, alone and together.
    assert seqs(await page(client, admin, action="firm.updated")) == [7, 6, 2, 1]
    assert seqs(await page(client, admin, action="declaration.opened")) == [4]
    assert seqs(await page(client, admin, targetType="declaration")) == [5, 4, 3]
    assert seqs(await page(client, admin, targetType="firm", targetId=str(firm))) == [7, 6, 2, 1]
    assert seqs(await page(client, admin, targetId=declaration)) == [5, 4, 3]
    assert seqs(await page(client, admin, actorId=str(owner.user_id))) == [6, 2, 1]
    assert seqs(await page(client, admin, actorId=str(admin.user_id))) == [7, 3]
    assert seqs(await page(client, admin, actorId=declaration)) == [4]
    window = {"from": nodes[3]["occurredAt"], "to": nodes[6]["occurredAt"]}
    assert seqs(await page(client, admin, **window)) == [5, 4, 3]  # `to` is exclusive
    assert seqs(await page(client, admin, action="firm.updated", **window)) == []
    assert seqs(await page(client, admin, **{"from": nodes[6]["occurredAt"]})) == [7, 6]
    assert seqs(await page(client, admin, to=nodes[2]["occurredAt"])) == [1]
    assert seqs(await page(client, admin, first=1, actorId=str(owner.user_id), after="6")) == [2]
    assert seqs(await page(client, admin, action="no.such.action")) == []


async def test_a_partner_key_is_named_by_its_name_and_prefix_and_its_creator_is_listed(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An entry a partner's key made shows the key's name and public prefix, as the key list
    does (revoked keys too), not a bare id; the key list says which member created it."""
    admin = await members.create(Role.ADMIN)
    made = await gql(
        client,
        "mutation($i: ApiKeyCreateInput!) { createApiKey(input: $i) { apiKey { id prefix } } }",
        {"i": {"name": "Payroll sync", "scopes": ["DECLARATIONS_READ"]}},
        admin,
    )
    assert "errors" not in made, made
    key = made["data"]["createApiKey"]["apiKey"]
    partner = Actor(ActorType.API_KEY, uuid.UUID(key["id"]), admin.firm_id, Role.MEMBER)
    async with tenant_transaction(app_sessions, admin.firm_id) as session:
        await chain.record(session, partner, Action.DECLARATION_REMINDED, "declaration", "d-1")
    revoked = await gql(
        client, "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id } } }", key, admin
    )
    assert "errors" not in revoked, revoked
    actors = [edge["node"]["actor"] for edge in (await page(client, admin))["edges"]]
    assert [a for a in actors if a["type"] == "API_KEY"] == [
        {
            "type": "API_KEY",
            "id": key["id"],
            "displayName": f"Payroll sync ({key['prefix']})",
        }
    ]
    query = "{ apiKeys { edges { node { id createdBy } } } }"
    listed = await gql(client, query, member=admin)
    assert listed["data"]["apiKeys"]["edges"] == [
        {"node": {"id": key["id"], "createdBy": str(admin.user_id)}}
    ]


@pytest.mark.parametrize(
    ("first", "after"),
    [(101, None), (0, None), (-1, None), (10, "abc"), (10, "-5"), (10, "9" * 20)],
    ids=["101", "0", "negative", "letters", "negative-cursor", "huge-cursor"],
)
async def test_a_page_size_over_100_or_a_foreign_cursor_is_refused(
    client: httpx.AsyncClient, members: Members, first: int, after: str | None
) -> None:
    admin = await members.create(Role.ADMIN)
    body = await gql(client, ENTRIES, {"first": first, "after": after}, admin)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body.get("data") is None


@pytest.mark.parametrize("field", ["action", "actorId", "targetType", "targetId"])
async def test_a_filter_longer_than_anything_recorded_is_refused(
    client: httpx.AsyncClient, members: Members, field: str
) -> None:
    """Up to 400 characters, a filter that matches nothing is an empty page; past it, refused."""
    admin = await members.create(Role.ADMIN)
    query = """query($f: AuditEntryFilterInput) { auditEntries(filter: $f, first: 10) {
        edges { cursor } } }"""
    fits = await gql(client, query, {"f": {field: "x" * 400}}, admin)
    assert fits == {"data": {"auditEntries": {"edges": []}}}, fits
    body = await gql(client, query, {"f": {field: "x" * 401}}, admin)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["fields"][0]["field"] == f"filter.{field}", body


async def test_a_page_of_100_is_allowed(client: httpx.AsyncClient, members: Members) -> None:
    admin = await members.create(Role.ADMIN)
    body = await gql(client, ENTRIES, {"first": 100}, admin)
    assert body == {
        "data": {
            "auditEntries": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        }
    }


# --- 12. admins and owners only --------------------------------------------------------------

OPERATIONS = {
    "auditEntries": "{ auditEntries(first: 10) { edges { cursor } } }",
    "verifyAuditChain": "{ verifyAuditChain { ok } }",
    "auditCheckpoints": "{ auditCheckpoints { id } }",
    "exportAuditLog": "{ exportAuditLog { jsonl } }",
    "createAuditCheckpoint": "mutation { createAuditCheckpoint { checkpoint { id } } }",
}


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
async def test_members_and_viewers_are_forbidden_the_audit_trail(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    role: Role,
) -> None:
    trail = await new_trail(members, app_sessions, 2)
    member = await members.create(role, firm_id=trail.firm_id)
    for name, query in OPERATIONS.items():
        body = await gql(client, query, None, member)
        assert codes(body) == ["FORBIDDEN"], (name, body)
        assert body.get("data") is None, (name, body)
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        made = (await session.execute(select(AuditCheckpoint))).scalars().all()
    assert made == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OWNER])
async def test_admins_and_owners_may_use_the_audit_trail(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    role: Role,
) -> None:
    trail = await new_trail(members, app_sessions, 2)
    member = await members.create(role, firm_id=trail.firm_id)
    for name, query in OPERATIONS.items():
        body = await gql(client, query, None, member)
        assert "errors" not in body, (name, body)
        assert body["data"][name] is not None, (name, body)


async def test_signing_an_empty_trail_is_refused(
    client: httpx.AsyncClient, members: Members
) -> None:
    admin = await members.create(Role.ADMIN)
    body = await gql(client, CHECKPOINT, None, admin)
    assert codes(body) == ["BAD_USER_INPUT"], body


# --- 13. one firm's trail is invisible to another --------------------------------------------


async def test_a_firm_reads_verifies_and_exports_only_its_own_trail(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = signing_key(app)
    a = await new_trail(members, app_sessions, 6)
    a_checkpoint = await sign_head(app_sessions, a, key)
    b = await new_trail(members, app_sessions, 3)
    b_checkpoint = await sign_head(app_sessions, b, key)

    b_entries = await page(client, b.admin)
    assert seqs(b_entries) == [3, 2, 1]
    assert {edge["node"]["targetId"] for edge in b_entries["edges"]} == {str(b.firm_id)}
    assert {edge["node"]["actor"]["id"] for edge in b_entries["edges"]} == {str(b.owner.user_id)}
    assert seqs(await page(client, b.admin, actorId=str(a.owner.user_id))) == []
    assert seqs(await page(client, b.admin, targetId=str(a.firm_id))) == []
    assert seqs(await page(client, b.admin, first=10, after="7")) == [3, 2, 1]
    assert seqs(await page(client, a.admin)) == [6, 5, 4, 3, 2, 1]

    b_list = (await gql(client, CHECKPOINTS, None, b.admin))["data"]["auditCheckpoints"]
    assert [cp["id"] for cp in b_list] == [str(b_checkpoint.id)]
    a_list = (await gql(client, CHECKPOINTS, None, a.admin))["data"]["auditCheckpoints"]
    assert [cp["id"] for cp in a_list] == [str(a_checkpoint.id)]

    verified = (await gql(client, VERIFY, None, b.admin))["data"]["verifyAuditChain"]
    assert (verified["ok"], verified["entriesChecked"], verified["checkpointsChecked"]) == (
        True,
        3,
        1,
    )

    exported = (await gql(client, EXPORT, None, b.admin))["data"]["exportAuditLog"]
    assert exported["keyId"] == key.key_id
    items = [json.loads(line) for line in exported["jsonl"].splitlines()]
    assert [item["type"] for item in items] == [
        "header",
        "entry",
        "entry",
        "entry",
        "checkpoint",
        "signature",
    ]
    assert items[0]["firm_id"] == str(b.firm_id)
    assert items[-1]["key_id"] == key.key_id
    entries = [item for item in items if item["type"] == "entry"]
    assert [json.loads(item["canonical"])["firm_id"] for item in entries] == [str(b.firm_id)] * 3
    assert str(a.firm_id) not in exported["jsonl"]
    assert str(a.owner.user_id) not in exported["jsonl"]
    assert [(item["id"], item["firm_id"]) for item in items if item["type"] == "checkpoint"] == [
        (str(b_checkpoint.id), str(b.firm_id))
    ]


async def test_tampering_with_one_firm_leaves_anothers_verification_alone(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    a = await new_trail(members, app_sessions, 3)
    b = await new_trail(members, app_sessions, 3)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 2"],
        {"firm": a.firm_id},
    )
    a_result = (await gql(client, VERIFY, None, a.admin))["data"]["verifyAuditChain"]
    assert (a_result["ok"], a_result["failure"]["seq"]) == (False, 2)
    b_result = (await gql(client, VERIFY, None, b.admin))["data"]["verifyAuditChain"]
    assert (b_result["ok"], b_result["entriesChecked"], b_result["failure"]) == (True, 3, None)


# --- 14. checkpoints and the published key ---------------------------------------------------


async def test_checkpoints_are_signed_once_per_head_listed_newest_first_and_verifiable(
    client: httpx.AsyncClient,
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    first = (await gql(client, CHECKPOINT, None, trail.admin))["data"]["createAuditCheckpoint"]
    again = (await gql(client, CHECKPOINT, None, trail.owner))["data"]["createAuditCheckpoint"]
    assert first == again  # nothing new since: the same checkpoint, and nothing recorded
    assert first["checkpoint"]["seq"] == 4  # the three entries and the request's own
    await append(app_sessions, trail.actor, 2, start=4)
    newer = (await gql(client, CHECKPOINT, None, trail.admin))["data"]["createAuditCheckpoint"]
    assert newer["checkpoint"]["seq"] == 7
    assert newer["checkpoint"]["id"] != first["checkpoint"]["id"]

    listed = (await gql(client, CHECKPOINTS, None, trail.admin))["data"]["auditCheckpoints"]
    assert [(cp["id"], cp["seq"]) for cp in listed] == [
        (newer["checkpoint"]["id"], 7),
        (first["checkpoint"]["id"], 4),
    ]
    edges = (await page(client, trail.admin))["edges"]
    assert [e["node"]["seq"] for e in edges] == [7, 6, 5, 4, 3, 2, 1]
    requests = {
        e["node"]["seq"]: (e["node"]["action"], e["node"]["actor"]["id"], e["node"]["targetId"])
        for e in edges
        if e["node"]["targetType"] == "audit_checkpoint"
    }
    assert requests == {
        4: ("audit.checkpoint_created", str(trail.admin.user_id), first["checkpoint"]["id"]),
        7: ("audit.checkpoint_created", str(trail.admin.user_id), newer["checkpoint"]["id"]),
    }
    hashes = {e["node"]["seq"]: e["node"]["hash"] for e in edges}

    response = await client.get(KEY_URL)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    published = serialization.load_pem_public_key(response.content)
    assert isinstance(published, Ed25519PublicKey)
    raw = published.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == key.public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    for cp in listed:
        assert cp["keyId"] == key.key_id
        assert cp["headHash"] == hashes[cp["seq"]]
        signature = base64.b64decode(cp["signature"], validate=True)
        assert len(signature) == 64
        payload = checkpoint_payload(
            trail.firm_id,
            cp["seq"],
            bytes.fromhex(cp["headHash"]),
            datetime.fromisoformat(cp["signedAt"]),
        )
        published.verify(signature, payload)  # raises InvalidSignature if not
        assert not verify_signature(published, payload.replace(b'"seq":', b'"seq":1'), signature)

    jwk_response = await client.get(f"{KEY_URL}.jwk")
    assert jwk_response.status_code == 200
    assert jwk_response.headers["content-type"].startswith("application/jwk+json")
    jwk = jwk_response.json()
    assert (jwk["kty"], jwk["crv"], jwk["kid"]) == ("OKP", "Ed25519", key.key_id)
    assert jwk["x"] == base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "=" not in jwk["x"]
    assert "d" not in jwk  # never the private part


# --- 15. the periodic checkpointer -----------------------------------------------------------


async def _checkpoints_of(
    sessions: async_sessionmaker[AsyncSession], trail: Trail
) -> list[AuditCheckpoint]:
    async with tenant_transaction(sessions, trail.firm_id) as session:
        rows = await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
        return list(rows.scalars())


async def _all_checkpoints(owner_sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many checkpoints every firm has in all (the owner role may count them all)."""
    async with transaction(owner_sessions) as session:
        count = await session.execute(select(func.count()).select_from(AuditCheckpoint))
        return int(count.scalar_one())


async def test_the_periodic_checkpointer_signs_moved_chains_only(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = signing_key(app)
    moved = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, moved, key)
    await append(app_sessions, moved.actor, 2, start=4)
    never = await new_trail(members, app_sessions, 2)  # never signed
    still = await new_trail(members, app_sessions, 2)
    signed_before = await sign_head(app_sessions, still, key)
    empty = await new_trail(members, app_sessions, 0)

    before = await _all_checkpoints(owner_sessions)
    signed = await checkpoints.checkpoint_due_firms(app_sessions, key)
    assert signed >= 2  # moved and never (and any other firm's chain that moved)
    # It counts exactly the checkpoints it created, over every firm.
    assert signed == await _all_checkpoints(owner_sessions) - before

    moved_cps = await _checkpoints_of(app_sessions, moved)
    assert [(cp.seq, cp.created_by) for cp in moved_cps] == [(3, "system"), (5, "system")]
    assert [(cp.seq, cp.created_by) for cp in await _checkpoints_of(app_sessions, never)] == [
        (2, "system")
    ]
    assert [cp.id for cp in await _checkpoints_of(app_sessions, still)] == [signed_before.id]
    assert await _checkpoints_of(app_sessions, empty) == []
    for trail in (moved, never):
        async with tenant_transaction(app_sessions, trail.firm_id) as session:
            result = await chain.verify(session, trail.firm_id, key.trusted)
        assert (result.ok, result.checkpoints_checked) == (
            True,
            len(await _checkpoints_of(app_sessions, trail)),
        )
    newest = moved_cps[-1]
    assert newest.key_id == key.key_id
    assert verify_signature(
        key.public,
        checkpoint_payload(moved.firm_id, newest.seq, newest.head_hash, newest.signed_at),
        newest.signature,
    )

    # Nothing moved since: the next run signs nothing, for these firms or any other.
    before = await _all_checkpoints(owner_sessions)
    assert await checkpoints.checkpoint_due_firms(app_sessions, key) == 0
    assert await _all_checkpoints(owner_sessions) == before
    assert [cp.id for cp in await _checkpoints_of(app_sessions, moved)] == [c.id for c in moved_cps]
    assert [cp.id for cp in await _checkpoints_of(app_sessions, still)] == [signed_before.id]


async def test_only_the_checkpointer_lists_every_firms_chain_head(
    members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The list of every firm's chain head (which firms exist, how active each is) is the
    periodic checkpointer's alone: a request's transaction, bound to its firm or not yet
    bound, is refused it, loudly (an empty list would look like nothing to sign)."""
    trail = await new_trail(members, app_sessions, 2)
    async with checkpointer_transaction(app_sessions) as session:
        heads = {head.firm_id: head.head_seq for head in await calls.chain_heads(session, ())}
    assert heads[trail.firm_id] == 2

    async def bound() -> None:
        async with tenant_transaction(app_sessions, trail.firm_id) as session:
            await calls.chain_heads(session, ())

    async def unbound() -> None:
        async with transaction(app_sessions) as session:
            await calls.chain_heads(session, ())

    async def marked_then_bound() -> None:
        async with checkpointer_transaction(app_sessions) as session:
            await bind_tenant(session, trail.firm_id, None)
            await calls.chain_heads(session, ())

    for attempt in (bound, unbound, marked_then_bound):
        with pytest.raises(DBAPIError, match="listed to the checkpointer alone"):
            await attempt()


async def test_the_checkpointer_lists_heads_on_a_connection_left_holding_a_firm(
    members: Members, app_sessions: async_sessionmaker[AsyncSession], database: Database
) -> None:
    """A firm set for a pooled connection's whole session (never by our code; code the owner
    can change runs in the app's session) no longer stops the checkpointer, whose transaction
    binds no firm whatever the session holds."""
    trail = await new_trail(members, app_sessions, 1)
    engine = create_engine(database.app_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            keep = "select set_config('app.firm_id', :firm, false)"
            await session.execute(text(keep), {"firm": str(trail.firm_id)})
            await session.commit()
        async with checkpointer_transaction(sessions) as session:
            heads = {head.firm_id: head.head_seq for head in await calls.chain_heads(session, ())}
        assert heads[trail.firm_id] == 1
    finally:
        await engine.dispose()


async def test_signers_racing_each_other_and_appends_sign_each_head_once(
    app: Starlette, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Signers of one firm (admins' createAuditCheckpoint, the periodic checkpointer of another
    process) racing one another and the firm's appends queue on its chain lock: none fails,
    whoever comes second gets the checkpoint already made for that head, and every checkpoint
    matches the chain. The first round signs a never-signed chain, the later ones extend one."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    returned: set[uuid.UUID] = set()
    for n in range(6):
        *signed, _ = await asyncio.gather(
            *(sign_head(app_sessions, trail, key) for _ in range(4)),
            append(app_sessions, trail.actor, 1, start=4 + n),
        )
        by_seq: dict[int, set[uuid.UUID]] = {}
        for checkpoint in signed:
            by_seq.setdefault(checkpoint.seq, set()).add(checkpoint.id)
        assert all(len(ids) == 1 for ids in by_seq.values()), by_seq
        assert set(by_seq) <= {3 + n, 4 + n}, by_seq
        returned |= {checkpoint.id for checkpoint in signed}
    stored = await _checkpoints_of(app_sessions, trail)
    assert {cp.id for cp in stored} == returned
    async with tenant_transaction(app_sessions, trail.firm_id) as session:
        result = await chain.verify(session, trail.firm_id, key.trusted)
    assert (result.ok, result.head_seq, result.checkpoints_checked) == (True, 9, len(stored))


async def test_a_first_checkpoint_signed_by_another_as_one_looks_is_not_taken_for_a_revoked_one(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A never-signed chain: a signer finds no checkpoint of ours, and another signer commits
    the first one just then. The signer must not mistake it for a revoked key's (and refuse
    with AUDIT_CHAIN_BROKEN, as the race above once did): it gets that checkpoint."""
    key = signing_key(app)
    trail = await new_trail(members, app_sessions, 3)
    first_look = checkpoints.newest
    others: list[AuditCheckpoint] = []

    async def then_another_signs(*args: Any, **kwargs: Any) -> AuditCheckpoint | None:
        found = await first_look(*args, **kwargs)
        if not others:
            monkeypatch.setattr(checkpoints, "newest", first_look)  # the other looks plainly
            others.append(await sign_head(app_sessions, trail, key))  # committed meanwhile
        return found

    monkeypatch.setattr(checkpoints, "newest", then_another_signs)
    signed = await sign_head(app_sessions, trail, key)
    assert [cp.seq for cp in others] == [3]
    assert signed.id == others[0].id


async def test_the_periodic_checkpointer_never_signs_a_chain_cut_below_its_checkpoint(
    app: Starlette,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A chain whose tail was cut below its last checkpoint is never signed (a checkpoint of
    the shorter chain would vouch for the cut), run after run, and the log says why; a run
    counts only what it signed, and still signs the other firms."""
    key = signing_key(app)
    cut = await new_trail(members, app_sessions, 3)
    await sign_head(app_sessions, cut, key)
    await tamper(
        superuser_engine,
        ["delete from audit_log where firm_id = :firm and seq = 3"],
        {"firm": cut.firm_id},
    )
    honest = await new_trail(members, app_sessions, 2)
    for _ in range(2):
        before = await _all_checkpoints(owner_sessions)
        signed = await checkpoints.checkpoint_due_firms(app_sessions, key)
        assert signed == await _all_checkpoints(owner_sessions) - before
        assert [cp.seq for cp in await _checkpoints_of(app_sessions, cut)] == [3]
    assert [cp.seq for cp in await _checkpoints_of(app_sessions, honest)] == [2]
    assert (
        f"audit chain of firm {cut.firm_id} not signed: "
        "The audit trail ends at seq 2, before its checkpoint at seq 3."
    ) in caplog.text


async def test_taking_an_export_is_recorded_and_a_get_takes_none(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
) -> None:
    """Who took which export is on the trail: its dates, the head it reaches and its SHA-256
    (the digest its trailer signs). Recording is a change, so a GET, which prefetchers send
    unasked, is refused (405) and records nothing."""
    admin = await members.create(Role.ADMIN)
    window = {"from": "2020-01-01T00:00:00Z", "to": None}
    body = await gql(
        client,
        "query($from: DateTime, $to: DateTime) { exportAuditLog(from: $from, to: $to) "
        "{ keyId jsonl } }",
        window,
        admin,
    )
    assert "errors" not in body, body
    lines = [json.loads(line) for line in body["data"]["exportAuditLog"]["jsonl"].splitlines()]
    (newest, *_) = (await page(client, admin))["edges"]
    assert newest["node"]["action"] == "audit.exported"
    assert newest["node"]["actor"]["id"] == str(admin.user_id)
    assert newest["node"]["details"] == {
        "from": lines[0]["from"],
        "to": None,
        "head_seq": lines[0]["head_seq"],
        "sha256": lines[-1]["sha256"],
    }
    assert newest["node"]["seq"] == lines[0]["head_seq"] + 1  # after the export, not in it

    document = "query ExportByGet { exportAuditLog { jsonl } }"
    await trust(superuser_engine, [document])
    before = (await page(client, admin))["edges"]
    fetched = await client.get(
        "/graphql",
        params={"documentId": f"sha256:{doc_id(document)}", "variables": "{}"},
        headers=admin.headers,
    )
    assert fetched.status_code == 405, fetched.text
    assert codes(fetched.json()) == ["METHOD_NOT_ALLOWED"]
    assert (await page(client, admin))["edges"] == before


@pytest.mark.parametrize("cap", ["MAX_EXPORT_LINES", "MAX_EXPORT_BYTES"])
async def test_an_export_too_large_for_one_request_is_refused_and_unrecorded(
    client: httpx.AsyncClient,
    members: Members,
    app_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    cap: str,
) -> None:
    """Built in the request's memory, an export is bounded by lines and by bytes (3 lines, or
    1 kB, here): past either, it is refused, saying where to go, and nothing is recorded."""
    trail = await new_trail(members, app_sessions, 6)
    before = (await page(client, trail.admin))["edges"]
    monkeypatch.setattr(audit_service, cap, 3 if cap == "MAX_EXPORT_LINES" else 1000)
    body = await gql(client, EXPORT, None, trail.admin)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["message"] == (
        "Too large for one request; narrow the dates or use the CLI."
    )
    assert (await page(client, trail.admin))["edges"] == before


async def test_checkpoints_are_listed_a_page_of_signed_seqs_at_a_time(
    client: httpx.AsyncClient, members: Members, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The list grew by one an hour for good (the periodic checkpointer): it is paged, newest
    first, by signed seq."""
    trail = await new_trail(members, app_sessions, 3)
    signed = []
    for start in (4, 7, 10):
        made = await gql(client, CHECKPOINT, None, trail.admin)
        signed.append(made["data"]["createAuditCheckpoint"]["checkpoint"]["seq"])
        await append(app_sessions, trail.actor, 2, start=start)
    assert signed == [4, 7, 10]
    query = "query($f: Int!, $b: Long) { auditCheckpoints(first: $f, beforeSeq: $b) { seq } }"

    async def listed(first: int, before: int | None = None) -> list[int]:
        body = await gql(client, query, {"f": first, "b": before}, trail.admin)
        return [cp["seq"] for cp in body["data"]["auditCheckpoints"]]

    assert await listed(2) == [10, 7]
    assert await listed(2, 7) == [4]
    assert await listed(2, 4) == []
    for first in (0, 501):
        body = await gql(client, query, {"f": first, "b": None}, trail.admin)
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["fields"][0]["field"] == "first"
