"""Idempotent creates: a retry with the same key returns the first result and writes nothing."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.declarations.templates import load_builtins
from tests.factories import Members, codes, gql

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
CREATE = """mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id recipientName } } }"""
COUNTERPARTY = """mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) {
  counterparty { id name } } }"""
BULK = """mutation($i: BulkDeclarationCreateInput!) { bulkCreateDeclarations(input: $i) {
  declarations { id } } }"""


async def _count(superuser: AsyncEngine, firm: uuid.UUID, sql: str) -> int:
    async with superuser.connect() as conn:
        return int((await conn.execute(text(sql), {"firm": firm})).scalar_one())


async def test_a_retried_create_returns_the_first_result_and_writes_nothing(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    key = str(uuid.uuid4())
    draft = {
        "templateId": str(FIT.id),
        "recipientName": "Pat Doe",
        "recipientEmail": "pat@example.test",
        "idempotencyKey": key,
    }
    first = await gql(client, CREATE, {"i": draft}, owner)
    again = await gql(client, CREATE, {"i": draft}, owner)
    assert first == again
    assert "errors" not in first
    declarations = "select count(*) from declarations where firm_id = :firm"
    audit = "select count(*) from audit_log where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, declarations) == 1
    entries = await _count(superuser_engine, owner.firm_id, audit)
    # Concurrent retries too: one creation at most.
    party = {"name": "Acme Introducers", "kind": "INTRODUCER", "idempotencyKey": key + "-cp"}
    results = await asyncio.gather(
        *(gql(client, COUNTERPARTY, {"i": party}, owner) for _ in range(5))
    )
    ids = {r["data"]["createCounterparty"]["counterparty"]["id"] for r in results}
    assert len(ids) == 1
    parties = "select count(*) from counterparties where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, parties) == 1
    assert await _count(superuser_engine, owner.firm_id, audit) == entries + 1
    # Without a key, each call creates.
    plain = {k: v for k, v in draft.items() if k != "idempotencyKey"}
    await gql(client, CREATE, {"i": plain}, owner)
    await gql(client, CREATE, {"i": plain}, owner)
    assert await _count(superuser_engine, owner.firm_id, declarations) == 3


async def test_a_key_is_per_firm_and_actor_and_per_operation(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    a = await members.create()
    b = await members.create()
    key = "shared-key-1"
    draft = {
        "templateId": str(FIT.id),
        "recipientName": "Sam",
        "recipientEmail": "sam@example.test",
        "idempotencyKey": key,
    }
    first_a = await gql(client, CREATE, {"i": draft}, a)
    first_b = await gql(client, CREATE, {"i": draft}, b)
    id_a = first_a["data"]["createDeclaration"]["declaration"]["id"]
    id_b = first_b["data"]["createDeclaration"]["declaration"]["id"]
    assert id_a != id_b
    bulk = {
        "templateId": str(FIT.id),
        "recipients": [{"name": "X", "email": "x@example.test"}],
        "send": False,
        "idempotencyKey": key,
    }
    refused = await gql(client, BULK, {"i": bulk}, a)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    other_key = {**bulk, "idempotencyKey": "bulk-key-1"}
    once = await gql(client, BULK, {"i": other_key}, a)
    twice = await gql(client, BULK, {"i": other_key}, a)
    assert once == twice
    assert len(once["data"]["bulkCreateDeclarations"]["declarations"]) == 1


TEMPLATE = (
    """mutation($i: TemplateInput!) { createTemplate(input: $i) { template { id version } } }"""
)
PACK = """mutation($i: EvidencePackGenerateInput!) { generateEvidencePack(input: $i) {
  pack { id status } } }"""


async def test_templates_and_evidence_packs_are_created_once_per_key(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    template = {
        "name": "Gifts register",
        "audience": "PERSON",
        "attestation": "I confirm these answers.",
        "questions": [{"id": "q1", "label": "Any gifts?", "kind": "yes_no"}],
        "idempotencyKey": "template-1",
    }
    first = await gql(client, TEMPLATE, {"i": template}, owner)
    assert first == await gql(client, TEMPLATE, {"i": template}, owner)
    assert "errors" not in first, first
    templates = "select count(*) from declaration_templates where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, templates) == 1
    today = "2026-11-29"
    pack = {"from": today, "to": today, "title": "Quarterly pack", "idempotencyKey": "pack-1"}
    made = await gql(client, PACK, {"i": pack}, owner)
    assert "errors" not in made, made
    assert made == await gql(client, PACK, {"i": pack}, owner)
    packs = "select count(*) from evidence_packs where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, packs) == 1
