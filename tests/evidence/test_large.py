"""Big packs: 500 declarations render (quickly enough for a request), and rendering runs off
the event loop, so the server keeps answering while a big pack is made."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, ActorType, Role
from app.db.models import Counterparty, Declaration
from app.db.tenant import tenant_transaction
from app.declarations import forms
from app.declarations.public import receipt_hash, stored_response_hash
from app.declarations.templates import QuestionKind, load_builtins, snapshot
from app.evidence import collect, render
from app.evidence.content import PackContent
from app.evidence.render import RenderedPack
from app.evidence.signature import PackSigner
from tests.declarations.test_loop import FIT
from tests.evidence.support import GENERATE, audit_of, pdf_text, period
from tests.factories import Member, Members, gql


def _answers() -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for q in FIT.spec.questions:
        if q.kind is QuestionKind.yes_no:
            answers[q.id] = False
        elif q.kind is QuestionKind.choice:
            answers[q.id] = q.choices[0] if q.choices else ""
        elif q.kind is QuestionKind.date:
            answers[q.id] = "2026-01-31"
        elif q.kind is QuestionKind.money:
            answers[q.id] = 123_456
        else:
            answers[q.id] = f"Answer to {q.id}"
    return answers


async def firm_with_declarations(
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    count: int,
    *,
    audited: bool = True,
    receipts_before_forms: int = 0,
    answers: dict[str, Any] | None = None,
) -> Member:
    """A firm whose owner has ``count`` submitted declarations, written straight into the
    database (as the owner role, inside the firm's tenant context) to keep the test fast, each
    with the ``declaration.submitted`` audit entry a submission writes (unless ``audited`` is
    false). The first ``receipts_before_forms`` were given receipts as they were before
    receipts covered the form. Each answers ``answers``, or else a short answer to each
    question."""
    owner = await members.create(name=f"Big Pack {count} Ltd")
    pinned = snapshot(FIT.spec, template_id=FIT.id, version=FIT.version, key=FIT.key)
    now = datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4(),
            "firm_id": owner.firm_id,
            "template_id": FIT.id,
            "template_version": FIT.version,
            "recipient_name": f"Recipient {n:03d}",
            "recipient_email": f"recipient-{n:03d}@example.test",
            "status": "submitted",
            "created_at": now,
            "sent_at": now,
            "submitted_at": now,
            "reminder_count": 0,
            "answers": _answers() if answers is None else answers,
            "attestation_accepted": True,
            "signature_name": f"Recipient {n:03d}",
            "submitted_ip": "192.0.2.1",
        }
        for n in range(count)
    ]
    for n, row in enumerate(rows):  # what the recipient would have been given: packs check it
        declaration = Declaration(**row, template_snapshot=pinned)
        row["response_sha256"] = (
            receipt_hash(declaration, row["answers"], True, row["signature_name"], now, form=False)
            if n < receipts_before_forms
            else stored_response_hash(declaration)
        )
    async with tenant_transaction(owner_sessions, owner.firm_id) as session:
        await _submitted(session, owner, pinned, rows, audited)
    return owner


async def _submitted(
    session: AsyncSession,
    owner: Member,
    pinned: dict[str, Any],
    rows: list[dict[str, Any]],
    audited: bool = True,
) -> None:
    """Write ``rows``, submitted declarations of the form ``pinned``, with the
    ``declaration.submitted`` entry each submission writes (unless not ``audited``)."""
    key, version = await forms.keep(session, owner.firm_id, pinned), pinned["version"]
    await session.execute(insert(Declaration), [{**r, "form_key": key} for r in rows])
    for row in rows if audited else []:
        await chain.record(
            session,
            Actor(ActorType.RECIPIENT, row["id"], owner.firm_id, Role.VIEWER),
            Action.DECLARATION_SUBMITTED,
            "declaration",
            row["id"],
            {"response_sha256": row["response_sha256"].hex(), "template_version": version},
        )


@pytest.fixture
async def big_client(auth_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", timeout=120
    ) as c:
        yield c


async def test_a_pack_of_500_declarations_renders(
    big_client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await firm_with_declarations(members, owner_sessions, 500)
    # How long it takes is the benchmark's to say (bench/: the pack against a bare render).
    body = await gql(big_client, GENERATE, {"i": {"title": "Everything", **period()}}, owner)
    assert "errors" not in body, body
    pack = body["data"]["generateEvidencePack"]["pack"]
    assert pack["status"] == "READY", pack
    assert pack["pageCount"] > 10
    read = await gql(
        big_client,
        "query($id: UUID!) { evidencePack(id: $id) { downloadUrl } }",
        {"id": pack["id"]},
        owner,
    )
    url = read["data"]["evidencePack"]["downloadUrl"]
    response = await big_client.get(url.removeprefix("https://testserver"), headers=owner.headers)
    assert hashlib.sha256(response.content).hexdigest() == pack["sha256"]
    text = pdf_text(response.content, first=25)  # the summary, and the appendix's last page
    assert "Summary: 500 declaration(s)" in text
    assert "Recipient 000" in text
    assert "Recipient 499" in text
    assert "Answer to role" in text
    assert f"Page {pack['pageCount']} of {pack['pageCount']}" in text


async def test_the_server_keeps_answering_while_a_big_pack_renders(
    big_client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = await firm_with_declarations(members, owner_sessions, 100)
    rendering, rendered = threading.Event(), threading.Event()
    real = render.render_pdf

    def observed(pack: PackContent, signer: PackSigner) -> RenderedPack:
        rendering.set()
        try:
            return real(pack, signer)
        finally:
            rendered.set()

    monkeypatch.setattr(render, "render_pdf", observed)
    variables = {"i": {"title": "Busy", **period()}}
    generating = asyncio.create_task(gql(big_client, GENERATE, variables, owner))
    while not rendering.is_set():
        assert not generating.done(), generating.result()
        await asyncio.sleep(0.01)
    health = await big_client.get("/healthz")
    assert health.status_code == 200
    # It answered while the render was still going (how fast is the benchmark's to say).
    assert not rendered.is_set()
    body = await generating
    assert body["data"]["generateEvidencePack"]["pack"]["status"] == "READY", body
    assert rendered.is_set()


async def test_a_pack_past_its_content_limit_is_refused_before_the_rest_is_read(
    big_client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    superuser_engine: AsyncEngine,
) -> None:
    """The content limit bounds what a refused pack costs, not its scope: declarations are read
    a batch at a time and counted as they are, and once what they print passes the limit (1 MB
    here) the pack fails, saying so, before the rest are read. Read whole first, 1,000
    declarations of 80 kB answers took some 0.85 GB of one request before it was refused."""
    monkeypatch.setattr(render, "MAX_DOCUMENT_BYTES", 2**20)
    answers = {f"q{i}": "&" * 20_000 for i in range(4)}  # unnamed by the form: printed too
    owner = await firm_with_declarations(members, owner_sessions, 60, answers=answers)
    read = 0
    real = collect._declaration

    def counted(*args: Any) -> Any:
        nonlocal read
        read += 1
        return real(*args)

    monkeypatch.setattr(collect, "_declaration", counted)
    body = await gql(big_client, GENERATE, {"i": {"title": "Too long", **period()}}, owner)
    pack = body["data"]["generateEvidencePack"]["pack"]
    assert pack["status"] == "FAILED", body
    assert re.fullmatch(
        r"The pack is too large to render \(at least 1\.\d MB of content, at most 1 MB\): "
        r"choose fewer declarations or a shorter period\.",
        pack["failureReason"],
    ), pack
    assert read <= 14, read  # 13 of 80 kB fit in 1 MB, no more
    failed = (await audit_of(superuser_engine, pack["id"]))[-1]
    assert failed.details == {"reason": pack["failureReason"], "stage": "render"}


async def test_cover_confirmations_are_checked_a_batch_at_a_time(
    big_client: httpx.AsyncClient,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack checks every PI cover confirmation of each counterparty in it against its
    receipt, whatever its date, though none is printed: they were read whole, all at once, and
    uncounted (60 of 320 kB here, a firm's years of them in life), whatever the pack's limit
    (found by a second review). Read a batch at a time, no more than a batch is held."""
    owner = await members.create(name="Covered Ltd")
    pi = next(b for b in load_builtins() if b.key == "pi_cover")
    pinned = snapshot(pi.spec, template_id=pi.id, version=pi.version, key=pi.key)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    counterparty = uuid.uuid4()
    answers = {"period_end": "2030-01-01", **{f"q{i}": "x" * 80_000 for i in range(4)}}
    rows = [
        {
            "id": uuid.uuid4(),
            "firm_id": owner.firm_id,
            "template_id": pi.id,
            "template_version": pi.version,
            "recipient_name": "Broker",
            "recipient_email": "broker@example.test",
            "counterparty_id": counterparty,
            "status": "submitted",
            "created_at": long_ago,
            "sent_at": long_ago,
            "submitted_at": long_ago,
            "reminder_count": 0,
            "answers": answers,
            "attestation_accepted": True,
            "signature_name": "Broker",
        }
        for _ in range(60)
    ]
    for row in rows:
        row["response_sha256"] = stored_response_hash(Declaration(**row, template_snapshot=pinned))
    async with tenant_transaction(owner_sessions, owner.firm_id) as session:
        await session.execute(
            insert(Counterparty).values(
                id=counterparty,
                firm_id=owner.firm_id,
                name="Broker Ltd",
                kind="introducer",
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
        await _submitted(session, owner, pinned, rows)
    loaded: list[weakref.ref[Declaration]] = []
    held = 0

    def on_load(target: Declaration, _: object) -> None:
        loaded.append(weakref.ref(target))

    real = collect._Receipts.check

    def check(receipts: Any, declaration: Declaration) -> None:
        nonlocal held
        held = max(held, sum(ref() is not None for ref in loaded))
        real(receipts, declaration)

    monkeypatch.setattr(collect._Receipts, "check", check)
    event.listen(Declaration, "load", on_load)
    try:
        variables = {"i": {"title": "One broker", "counterpartyIds": [str(counterparty)]}}
        body = await gql(big_client, GENERATE, {"i": {**variables["i"], **period()}}, owner)
    finally:
        event.remove(Declaration, "load", on_load)
    assert body["data"]["generateEvidencePack"]["pack"]["status"] == "READY", body
    assert len(loaded) == 60
    assert held <= collect.BATCH, held
