"""Idempotent creates: a retry with the same key returns the first result and writes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import idempotency
from app.declarations.templates import load_builtins
from app.errors import RateLimited
from app.evidence import render
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


GIFTS = {  # a firm template's input
    "name": "Gifts register",
    "audience": "PERSON",
    "attestation": "I confirm these answers.",
    "questions": [{"id": "q1", "label": "Any gifts?", "kind": "yes_no"}],
}
TEMPLATE = (
    """mutation($i: TemplateInput!) { createTemplate(input: $i) { template { id version } } }"""
)
PACK = """mutation($i: EvidencePackGenerateInput!) { generateEvidencePack(input: $i) {
  pack { id status } } }"""


async def test_templates_and_evidence_packs_are_created_once_per_key(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    template = {**GIFTS, "idempotencyKey": "template-1"}
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


VERSION = """mutation($t: UUID!, $i: TemplateInput!) {
  createTemplateVersion(templateId: $t, input: $i)
  { template { id version name } } }"""


async def test_a_retried_template_version_returns_the_first_version_and_writes_nothing(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    made = await gql(client, TEMPLATE, {"i": GIFTS}, owner)
    template = made["data"]["createTemplate"]["template"]["id"]
    versions = "select count(*) from template_versions where firm_id = :firm"
    entries = (
        "select count(*) from audit_log where firm_id = :firm "
        "and action = 'template.version_created'"
    )
    second = {**GIFTS, "name": "Gifts register (2)", "idempotencyKey": "version-1"}
    first = await gql(client, VERSION, {"t": template, "i": second}, owner)
    assert first["data"]["createTemplateVersion"]["template"]["version"] == 2, first
    assert first == await gql(client, VERSION, {"t": template, "i": second}, owner)
    assert await _count(superuser_engine, owner.firm_id, versions) == 2
    assert await _count(superuser_engine, owner.firm_id, entries) == 1
    # Concurrent retries of another key make one version between them.
    third = {**GIFTS, "idempotencyKey": "version-2"}
    results = await asyncio.gather(
        *(gql(client, VERSION, {"t": template, "i": third}, owner) for _ in range(5))
    )
    assert {r["data"]["createTemplateVersion"]["template"]["version"] for r in results} == {3}
    assert await _count(superuser_engine, owner.firm_id, versions) == 3
    assert await _count(superuser_engine, owner.firm_id, entries) == 2
    # The first key, replayed after a later version, still answers with the version it made.
    replayed = await gql(client, VERSION, {"t": template, "i": second}, owner)
    assert replayed["data"]["createTemplateVersion"]["template"]["version"] == 2
    # The key is refused for another template, and for another kind of request.
    other = await gql(client, TEMPLATE, {"i": GIFTS}, owner)
    other_id = other["data"]["createTemplate"]["template"]["id"]
    refused = await gql(client, VERSION, {"t": other_id, "i": second}, owner)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    wrong_kind = await gql(client, TEMPLATE, {"i": second}, owner)
    assert codes(wrong_kind) == ["BAD_USER_INPUT"]
    assert await _count(superuser_engine, owner.firm_id, versions) == 4  # v1 of the other only
    # Without a key, each call makes a version.
    await gql(client, VERSION, {"t": template, "i": GIFTS}, owner)
    await gql(client, VERSION, {"t": template, "i": GIFTS}, owner)
    assert await _count(superuser_engine, owner.firm_id, versions) == 6


async def test_a_create_whose_commit_failed_is_made_by_its_retry_once(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """The uncertain case that did not commit: the key was not kept with it, so the retry
    creates, once, and later retries replay it."""
    owner = await members.create()
    async with superuser_engine.begin() as conn:
        await conn.execute(text("create table test_refuse_commit (armed boolean not null)"))
        await conn.execute(text("insert into test_refuse_commit values (true)"))
        await conn.execute(
            text(
                "create function test_refuse_commit() returns trigger language plpgsql "
                "security definer as $$ begin if (select armed from test_refuse_commit) "
                "then raise exception 'refused at commit'; end if; return new; end $$"
            )
        )
        await conn.execute(
            text(
                "create constraint trigger test_refuse_commit after insert on declarations "
                "deferrable initially deferred for each row execute function test_refuse_commit()"
            )
        )
    draft = {
        "templateId": str(FIT.id),
        "recipientName": "Uncertain",
        "recipientEmail": "uncertain@example.test",
        "idempotencyKey": "uncertain-1",
    }
    declarations = "select count(*) from declarations where firm_id = :firm"
    keys = "select count(*) from idempotency_keys where firm_id = :firm"
    try:
        failed = await gql(client, CREATE, {"i": draft}, owner)
        assert codes(failed) == ["INTERNAL_SERVER_ERROR"], failed
        assert await _count(superuser_engine, owner.firm_id, declarations) == 0
        assert await _count(superuser_engine, owner.firm_id, keys) == 0
        async with superuser_engine.begin() as conn:
            await conn.execute(text("update test_refuse_commit set armed = false"))
        made = await gql(client, CREATE, {"i": draft}, owner)
        assert "errors" not in made, made
        assert made == await gql(client, CREATE, {"i": draft}, owner)
    finally:
        async with superuser_engine.begin() as conn:
            await conn.execute(text("drop trigger test_refuse_commit on declarations"))
            await conn.execute(text("drop function test_refuse_commit()"))
            await conn.execute(text("drop table test_refuse_commit"))
    assert await _count(superuser_engine, owner.firm_id, declarations) == 1
    assert await _count(superuser_engine, owner.firm_id, keys) == 1


async def test_a_key_sent_again_with_other_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    draft = {
        "templateId": str(FIT.id),
        "recipientName": "Pat Doe",
        "recipientEmail": "pat@example.test",
        "idempotencyKey": "  draft-1 ",
    }
    first = await gql(client, CREATE, {"i": draft}, owner)
    assert "errors" not in first, first
    # The same request (its key's surrounding space aside) replays; other input is refused.
    assert first == await gql(client, CREATE, {"i": {**draft, "idempotencyKey": "draft-1"}}, owner)
    for changed in ({"recipientName": "Someone Else"}, {"dueDate": "2099-01-01"}):
        refused = await gql(client, CREATE, {"i": {**draft, **changed}}, owner)
        assert codes(refused) == ["BAD_USER_INPUT"], refused
        assert refused["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    declarations = "select count(*) from declarations where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, declarations) == 1
    # A template's key is held to the same rules as every other key.
    for bad in ("", "   ", "k" * 101):
        refused = await gql(client, TEMPLATE, {"i": {**GIFTS, "idempotencyKey": bad}}, owner)
        assert codes(refused) == ["BAD_USER_INPUT"], refused
        assert refused["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    made = await gql(client, TEMPLATE, {"i": {**GIFTS, "idempotencyKey": "t-1"}}, owner)
    other = await gql(
        client, TEMPLATE, {"i": {**GIFTS, "name": "Other", "idempotencyKey": "t-1"}}, owner
    )
    assert "errors" not in made, made
    assert codes(other) == ["BAD_USER_INPUT"], other
    templates = "select count(*) from declaration_templates where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, templates) == 1


async def test_concurrent_pack_requests_with_one_key_make_one_pack(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A duplicate of a pack being made is refused at once (RATE_LIMITED, a few seconds to
    wait), holding nothing: waiting on the first's key, each held a connection of the pool for
    the whole render, and a few took the pool from every firm. Asked again, it answers with
    the first's pack."""
    owner = await members.create()
    original, rendering = render.render_pdf, threading.Event()

    def slow(*args: Any) -> Any:
        rendering.set()
        time.sleep(1.0)
        return original(*args)

    monkeypatch.setattr(render, "render_pdf", slow)
    pack = {"from": "2026-11-28", "to": "2026-11-29", "title": "Raced", "idempotencyKey": "race"}
    first = asyncio.ensure_future(gql(client, PACK, {"i": pack}, owner))
    assert await asyncio.to_thread(rendering.wait, 30)
    duplicates = await asyncio.gather(*(gql(client, PACK, {"i": pack}, owner) for _ in range(3)))
    assert not first.done()  # answered while the first renders
    for duplicate in duplicates:
        assert codes(duplicate) == ["RATE_LIMITED"], duplicate
        assert duplicate["errors"][0]["extensions"]["retryAfter"] == 10
    made = (await first)["data"]["generateEvidencePack"]["pack"]["id"]
    again = await gql(client, PACK, {"i": pack}, owner)
    assert again["data"]["generateEvidencePack"]["pack"]["id"] == made
    packs = "select count(*) from evidence_packs where firm_id = :firm"
    assert await _count(superuser_engine, owner.firm_id, packs) == 1


async def test_a_retried_template_returns_the_version_it_made_not_a_later_one(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """The first answer lost, a version made since by another admin, the retry answers with
    the template as the first attempt made it (version 1, its name), as a retried version does.
    And the trail keeps each version's name and audience, which only the template's row held
    until the next version replaced them."""
    owner = await members.create()
    query = """mutation($i: TemplateInput!) { createTemplate(input: $i) {
      template { id version name questions { label } } } }"""
    template = {**GIFTS, "idempotencyKey": "template-replayed"}
    first = await gql(client, query, {"i": template}, owner)
    template_id = first["data"]["createTemplate"]["template"]["id"]
    renamed = {**GIFTS, "name": "Hospitality register", "audience": "COUNTERPARTY"}
    assert "errors" not in await gql(client, VERSION, {"t": template_id, "i": renamed}, owner)
    assert await gql(client, query, {"i": template}, owner) == first
    async with superuser_engine.connect() as conn:
        details = await conn.scalar(
            text(
                "select details from audit_log where firm_id = :firm "
                "and action = 'template.version_created'"
            ),
            {"firm": owner.firm_id},
        )
    assert details == {"version": 2, "name": "Hospitality register", "audience": "counterparty"}


async def test_a_template_key_kept_before_requests_were_fingerprinted_replays_what_was_stored(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Such a key replays whatever request comes with it: its answer is the template stored,
    never the retry's spec, which was never stored (the second review's third finding)."""
    owner = await members.create()
    query = """mutation($i: TemplateInput!) { createTemplate(input: $i) {
      template { id version name questions { id } } } }"""
    first = await gql(client, query, {"i": {**GIFTS, "idempotencyKey": "old-key"}}, owner)
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "update idempotency_keys set result = result - 'request_sha256' "
                "where firm_id = :firm and key = 'old-key'"
            ),
            {"firm": owner.firm_id},
        )
    other = {**GIFTS, "name": "Never stored", "idempotencyKey": "old-key"}
    other["questions"] = [{"id": "second", "label": "Other?", "kind": "yes_no"}]
    assert await gql(client, query, {"i": other}, owner) == first


async def test_a_version_key_kept_before_requests_were_fingerprinted_replays_what_was_stored(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Such a key answers the version it made, as stored, whatever spec comes with it; sent for
    another template, it is refused as a different request (the review of c8ae083's fix)."""
    owner = await members.create()
    made = await gql(client, TEMPLATE, {"i": GIFTS}, owner)
    template_id = made["data"]["createTemplate"]["template"]["id"]
    other = await gql(client, TEMPLATE, {"i": GIFTS}, owner)
    other_id = other["data"]["createTemplate"]["template"]["id"]
    query = """mutation($t: UUID!, $i: TemplateInput!) { createTemplateVersion(templateId: $t,
      input: $i) { template { id version questions { id } } } }"""
    second = {**GIFTS, "idempotencyKey": "old-version-key"}
    first = await gql(client, query, {"t": template_id, "i": second}, owner)
    assert first["data"]["createTemplateVersion"]["template"]["version"] == 2, first
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "update idempotency_keys set result = result - 'request_sha256' "
                "where firm_id = :firm and key = 'old-version-key'"
            ),
            {"firm": owner.firm_id},
        )
    changed = {**second, "questions": [{"id": "second", "label": "Other?", "kind": "yes_no"}]}
    assert await gql(client, query, {"t": template_id, "i": changed}, owner) == first
    elsewhere = await gql(client, query, {"t": other_id, "i": changed}, owner)
    assert codes(elsewhere) == ["BAD_USER_INPUT"], elsewhere


async def test_a_key_in_use_by_a_pack_being_made_holds_up_no_other_write(
    client: httpx.AsyncClient,
    members: Members,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A create sent with the key of a pack being made (another kind of request) took the
    firm's chain lock, then waited on the pack's key, uncommitted, for the whole render: every
    write of the firm waited behind it. It is refused at once, as a duplicate of the pack is:
    twenty such, asked again for 0.2 s each with the firm's lock held, held another write of
    the firm for some 4 s (found by a second review of e5eda35)."""
    owner = await members.create()
    original, rendering, go_on = render.render_pdf, threading.Event(), threading.Event()

    def held(*args: Any) -> Any:
        rendering.set()
        go_on.wait(60)
        return original(*args)

    monkeypatch.setattr(render, "render_pdf", held)
    pack = {"from": "2026-11-28", "to": "2026-11-29", "title": "Held", "idempotencyKey": "shared"}
    making = asyncio.ensure_future(gql(client, PACK, {"i": pack}, owner))
    try:
        assert await asyncio.to_thread(rendering.wait, 30)
        reused = {"name": "Reused Ltd", "kind": "INSURER", "idempotencyKey": "shared"}
        reusing = asyncio.gather(
            *(gql(client, COUNTERPARTY, {"i": reused}, owner) for _ in range(20))
        )
        await asyncio.sleep(0.1)  # they queue on the firm's lock
        started = time.monotonic()
        other = {"name": "Other Ltd", "kind": "INSURER"}
        created = await gql(client, COUNTERPARTY, {"i": other}, owner)
        waited = time.monotonic() - started
        assert [codes(body) for body in await reusing] == [["RATE_LIMITED"]] * 20
        assert "errors" not in created, created
        assert waited < 1.0, f"another write of the firm waited {waited:.2f} s"
    finally:
        go_on.set()
    assert "errors" not in await making


async def test_a_key_still_held_by_a_duplicate_that_committed_answers_its_result(
    superuser_engine: AsyncEngine, members: Members
) -> None:
    """A duplicate next for the firm's lock can find the key's still held for an instant after
    the first committed (PostgreSQL releases a transaction's advisory locks one at a time as it
    commits): its result, committed, is what it answers, not RATE_LIMITED (one of five
    concurrent retries, now and then, on a busy machine). Held by a request still under way, the
    key refuses it at once."""
    owner = await members.create()
    actor = SimpleNamespace(firm_id=owner.firm_id, id=owner.user_id)
    request = {"name": "Acme"}
    holding, asking = AsyncSession(superuser_engine), AsyncSession(superuser_engine)
    async with holding, asking, holding.begin():
        await idempotency.hold(holding, actor, "committed")  # type: ignore[arg-type]
        await idempotency.hold(holding, actor, "under way")  # type: ignore[arg-type]
        async with AsyncSession(superuser_engine) as first, first.begin():
            await idempotency.remember(first, actor, "committed", "op", request, {"id": "1"})  # type: ignore[arg-type]
        async with asking.begin():
            kept = await idempotency.replay(asking, actor, "committed", "op", request)  # type: ignore[arg-type]
            assert kept is not None
            assert kept["id"] == "1"
        async with asking.begin():
            started = time.monotonic()
            with pytest.raises(RateLimited):
                await idempotency.replay(asking, actor, "under way", "op", request)  # type: ignore[arg-type]
            assert time.monotonic() - started < 0.05


def _old_lock(firm: uuid.UUID, actor: uuid.UUID, key: str) -> int:
    scoped = b"\0".join((firm.bytes, str(actor).encode(), key.encode()))
    return int.from_bytes(hashlib.sha256(scoped).digest()[:4], "big", signed=True)


async def test_another_firms_key_in_use_refuses_none_of_this_firms(
    superuser_engine: AsyncEngine,
) -> None:
    """Keys in use were locked by 32 bits of their hash, in one space: two firms' unrelated
    keys that hashed alike refused each other RATE_LIMITED (found here by trying keys)."""
    a = SimpleNamespace(firm_id=uuid.UUID(int=1), id=uuid.UUID(int=2))
    b = SimpleNamespace(firm_id=uuid.UUID(int=3), id=uuid.UUID(int=4))
    seen = {_old_lock(a.firm_id, a.id, f"a-{n}"): f"a-{n}" for n in range(150_000)}
    pair = next(
        (seen[lock], f"b-{n}")
        for n in range(400_000)
        if (lock := _old_lock(b.firm_id, b.id, f"b-{n}")) in seen
    )
    first, second = AsyncSession(superuser_engine), AsyncSession(superuser_engine)
    async with first, second, first.begin(), second.begin():
        await idempotency.hold(first, a, pair[0])  # type: ignore[arg-type]
        await idempotency.hold(second, b, pair[1])  # type: ignore[arg-type]
