"""Evidence packs with the local store, through HTTP: generate, download by the signed link with
the session, and check the bytes against the record; roles; tenant isolation of packs and links;
altered and expired links."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.auth.actor import Role
from app.cli import main
from app.db.tenant import tenant_transaction
from app.evidence import collect, document, download, render, sweep
from app.evidence.local_storage import LocalStorage
from app.ratelimit import Policy
from tests.auth.test_members import change_role, join
from tests.browser import Browser, NewBrowser, browser_for, codes, new_email, signed_up
from tests.conftest import Database
from tests.evidence.support import (
    GENERATE,
    PACK,
    PACKS,
    RETRY,
    audit_of,
    generate,
    generate_then_fail,
    hash_at,
    orphaned_pdf,
    pack_row,
    pdf_text,
    period,
    stored_keys,
    submitted_declaration,
    swept_once_old_enough,
)
from tests.evidence.test_large import firm_with_declarations
from tests.factories import Members, gql
from tests.http.test_headers_everywhere import assert_security_headers
from tests.mail.smtp import SmtpServer
from tests.partners import CREATE_KEY

INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
NEW_COUNTERPARTY = """mutation($i: CounterpartyCreateInput!) {
  createCounterparty(input: $i) { counterparty { id } } }"""
RENAME_COUNTERPARTY = """mutation($id: UUID!, $i: CounterpartyUpdateInput!) {
  updateCounterparty(id: $id, input: $i) { counterparty { name } } }"""


def _path(url: str) -> str:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "testserver"), url
    return parts.path


async def _download_url(firm: Browser, pack_id: str) -> str:
    body = await firm.gql(PACK, {"id": pack_id})
    assert "errors" not in body, body
    url: str = body["data"]["evidencePack"]["downloadUrl"]
    return url


async def test_a_pack_is_generated_downloaded_and_matches_its_record(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Evidence Advisers Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Example")
    bob = await submitted_declaration(browser, smtp, auth_app, "Bob Sample")

    pack = await generate(browser, "Annual F&P review <2026>")
    assert pack["status"] == "READY", pack
    assert pack["failureReason"] is None
    assert pack["scope"] == {**period(), "declarationIds": None, "counterpartyIds": None}
    assert pack["pageCount"] >= 3
    row = await pack_row(superuser_engine, pack["id"])
    assert (row.status, row.sha256.hex(), row.size_bytes) == (
        "ready",
        pack["sha256"],
        pack["sizeBytes"],
    )

    url = await _download_url(browser, pack["id"])
    assert url.startswith("https://testserver/evidence/download/")
    response = await browser.client.get(_path(url))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == f'attachment; filename="{pack["id"]}.pdf"'
    assert response.headers["cache-control"] == "no-store"
    assert_security_headers(response)
    assert hashlib.sha256(response.content).hexdigest() == pack["sha256"] == row.sha256.hex()
    assert len(response.content) == pack["sizeBytes"]

    actions = await audit_of(superuser_engine, pack["id"])
    assert [a.action for a in actions] == [
        "evidence_pack.requested",
        "evidence_pack.generated",
        "evidence_pack.downloaded",
    ]
    generated = actions[1].details
    assert (generated["sha256"], generated["size_bytes"]) == (pack["sha256"], pack["sizeBytes"])
    assert actions[2].details["via"] == "signed_link"

    text = pdf_text(response.content)
    # The pack verified the chain as it stood: its head is the entry just before the pack's own.
    head = await hash_at(superuser_engine, row.firm_id, actions[0].seq - 1)
    for expected in (
        "Evidence Advisers Ltd",
        "Annual F&P review <2026>",  # escaped in the HTML, the same text in the PDF
        alice.recipient_name,
        bob.recipient_name,
        alice.receipt,
        bob.receipt,
        "A careful answer",  # the role question's answer
        "Chain verification: INTACT",
        pack["id"],
        "Page 1 of",
        "declaration.submitted",
    ):
        assert expected in text, expected
    assert re.search(r"Chain head hash\s+" + head, text), head


async def test_the_cover_says_which_declarations_the_scope_holds(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """Counterparties named without declarations narrow the declarations to theirs: the cover
    must not then say "all declarations" (a regulator would read it as none of the firm's own
    people's in the period)."""
    await signed_up(browser, smtp, firm="Scoped Advisers Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Scope")
    made = await browser.gql(
        "mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) "
        "{ counterparty { id } } }",
        {"i": {"kind": "OTHER", "name": "Broker Ltd"}},
    )
    broker = made["data"]["createCounterparty"]["counterparty"]["id"]
    cases = [
        ({}, "All declarations created or submitted in the period", "All counterparties of", True),
        (
            {"counterpartyIds": [broker]},
            "Only those created or submitted in the period for the 1 counterparty named",
            "The 1 counterparty named in the request",
            False,
        ),
        (
            {"declarationIds": [alice.id], "counterpartyIds": [broker]},
            "The 1 declaration named in the request, whatever their dates",
            "The 1 counterparty named in the request",
            True,
        ),
    ]
    for scope, declarations, counterparties, holds_alice in cases:
        pack = await generate(browser, "Scoped", **scope)
        response = await browser.client.get(_path(await _download_url(browser, pack["id"])))
        text = " ".join(pdf_text(response.content).split())
        assert declarations in text, (scope, text[:600])
        assert counterparties in text, scope
        # Alice's declaration is a person's, with no counterparty: out of the second scope.
        assert ("No declarations are in scope." not in text) is holds_alice, scope


async def test_the_appendix_holds_the_entries_about_the_packs_declarations_whenever_made(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """A declaration named by id is in the pack whatever its dates: its audit entries are in
    the appendix too, though they fall outside the pack's period."""
    await signed_up(browser, smtp, firm="Named Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Named")
    last_year = datetime.now(UTC).date() - timedelta(days=365)
    past = {"from": (last_year - timedelta(days=30)).isoformat(), "to": last_year.isoformat()}
    pack = await generate(browser, "Named", **past, declarationIds=[alice.id])
    response = await browser.client.get(_path(await _download_url(browser, pack["id"])))
    appendix = pdf_text(response.content).split("Audit appendix")[-1]
    for action in ("declaration.created", "declaration.sent", "declaration.submitted"):
        assert action in appendix, appendix[:800]
    assert "auth.email_verified" not in appendix  # the firm's other entries: not in the period


async def test_the_appendix_holds_no_entry_of_the_firms_but_about_what_the_pack_holds(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """The firm's trail is its admins' to read: a member makes a pack and a viewer downloads
    it, so its appendix holds the entries about its declarations and counterparties alone, not
    the period's invitations, keys or renames (which any member could read there)."""
    await signed_up(browser, smtp, firm="Kept Trail Ltd")
    invited = {"input": {"email": new_email(), "role": "MEMBER"}}
    assert "errors" not in await browser.gql(INVITE, invited)
    made = await browser.gql(NEW_COUNTERPARTY, {"i": {"name": "Insurer Ltd", "kind": "INSURER"}})
    counterparty = made["data"]["createCounterparty"]["counterparty"]["id"]
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Kept")
    pack = await generate(browser, "Kept", **period(), counterpartyIds=[counterparty])
    response = await browser.client.get(_path(await _download_url(browser, pack["id"])))
    appendix = pdf_text(response.content).split("Audit appendix")[-1]
    assert "counterparty.created" in appendix, appendix[:800]
    for other in ("member.invited", "auth.email_verified", alice.id, "declaration.created"):
        assert other not in appendix, other  # Alice's declaration has no counterparty
    pack = await generate(browser, "Alice's", **period(), declarationIds=[alice.id])
    response = await browser.client.get(_path(await _download_url(browser, pack["id"])))
    appendix = pdf_text(response.content).split("Audit appendix")[-1]
    assert "declaration.submitted" in appendix
    assert "member.invited" not in appendix
    assert "counterparty.created" not in appendix


async def test_a_pack_with_more_audit_entries_than_it_may_hold_is_refused_whole(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An appendix cut short would be a trail with a hole in it: over the limit (10,000; 2 here),
    the pack is refused, naming the period, and nothing is made."""
    await signed_up(browser, smtp, firm="Busy Trail Ltd")
    made = await browser.gql(NEW_COUNTERPARTY, {"i": {"name": "Busy Ltd", "kind": "INSURER"}})
    counterparty = made["data"]["createCounterparty"]["counterparty"]["id"]
    renamed = {"id": counterparty, "i": {"name": "Busier Ltd"}}
    assert "errors" not in await browser.gql(RENAME_COUNTERPARTY, renamed)
    renamed = {"id": counterparty, "i": {"name": "Busiest Ltd"}}
    assert "errors" not in await browser.gql(RENAME_COUNTERPARTY, renamed)  # three about it
    monkeypatch.setattr(collect, "MAX_ENTRIES", 2)
    scope = {"title": "Too long", **period(), "counterpartyIds": [counterparty]}
    body = await browser.gql(GENERATE, {"i": scope})
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert [f["field"] for f in body["errors"][0]["extensions"]["fields"]] == ["from"]
    listed = await browser.gql(PACKS)
    assert listed["data"]["evidencePacks"]["edges"] == []


async def test_a_pack_too_large_to_render_fails_saying_so_and_stores_nothing(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, auth_app: Starlette
) -> None:
    """The renderer's memory grows with the document, so its size is capped (8 MB; 2 kB
    here): over it, the pack fails before rendering, saying why, and nothing is stored."""
    await signed_up(browser, smtp, firm="Wordy Advisers Ltd")
    await submitted_declaration(browser, smtp, auth_app, "Pat Wordy")
    monkeypatch.setattr(render, "MAX_DOCUMENT_BYTES", 2_000)
    with monkeypatch.context() as patched:
        stored = stored_keys(auth_app.state.coverproof.storage, patched)
        pack = await generate(browser, "Too wordy")
    assert pack["status"] == "FAILED", pack
    assert pack["failureReason"].startswith("The pack is too large to render (")
    assert pack["failureReason"].endswith(
        "MB of content, at most 0 MB): choose fewer declarations or a shorter period."
    )
    assert stored == []


async def test_a_pack_says_whether_each_receipt_covers_the_form(
    auth_app: Starlette, members: Members, owner_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A receipt given before receipts covered the form still vouches for its response, and the
    pack says it does not vouch for the form shown beside it; the others say they do."""
    owner = await firm_with_declarations(members, owner_sessions, 3, receipts_before_forms=1)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        made = await gql(client, GENERATE, {"i": {"title": "Receipts", **period()}}, owner)
        pack = made["data"]["generateEvidencePack"]["pack"]
        assert pack["status"] == "READY", made
        read = await gql(client, PACK, {"id": pack["id"]}, owner)
        url = read["data"]["evidencePack"]["downloadUrl"]
        response = await client.get(_path(url), headers=owner.headers)
        listed = await gql(
            client,
            "{ declarations(first: 3) { edges { node { recipientName "
            "response { receiptCoversForm } } } } }",
            {},
            owner,
        )
    covers = {
        e["node"]["recipientName"]: e["node"]["response"]["receiptCoversForm"]
        for e in listed["data"]["declarations"]["edges"]
    }
    assert covers == {"Recipient 000": False, "Recipient 001": True, "Recipient 002": True}
    text = " ".join(pdf_text(response.content).split())
    assert text.count(document.COVERS_RESPONSE) == 1, text
    assert text.count(document.COVERS_FORM) == 2, text
    # The one given before (Recipient 000's) is said so of its own declaration.
    starts = sorted(text.index(f"Recipient {n:03d} <") for n in range(3))
    start = text.index("Recipient 000 <")
    end = next((at for at in starts if at > start), len(text))
    assert document.COVERS_RESPONSE in text[start:end]


async def test_a_pack_reads_the_firm_at_one_moment(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    app_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What commits while a pack is being read is in none of it: a firm renamed after the
    pack's declarations were read still has, in the pack, the name it had when they were."""
    await signed_up(browser, smtp, firm="Moment Advisers Ltd")
    await submitted_declaration(browser, smtp, auth_app, "Alice Moment")
    original = collect._counterparty_names

    async def renamed_meanwhile(session: AsyncSession, *args: Any) -> Any:
        firm_id = uuid.UUID(await session.scalar(text("select current_setting('app.firm_id')")))
        async with tenant_transaction(app_sessions, firm_id) as other:
            rename = text("update firms set name = 'Renamed Meanwhile Ltd' where id = :id")
            await other.execute(rename, {"id": firm_id})
        return await original(session, *args)

    monkeypatch.setattr(collect, "_counterparty_names", renamed_meanwhile)
    pack = await generate(browser, "One moment")
    response = await browser.client.get(_path(await _download_url(browser, pack["id"])))
    text_of_pack = pdf_text(response.content)
    assert "Moment Advisers Ltd" in text_of_pack
    assert "Renamed Meanwhile Ltd" not in text_of_pack


def _slow_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    original = render.render_pdf

    def slow(*args: Any) -> Any:
        time.sleep(1.0)
        return original(*args)

    monkeypatch.setattr(render, "render_pdf", slow)


async def _titled(superuser_engine: AsyncEngine, prefix: str) -> int:
    async with superuser_engine.connect() as conn:
        query = text("select count(*) from evidence_packs where title like :p")
        return int(await conn.scalar(query, {"p": prefix + "%"}) or 0)


async def test_packs_beyond_those_rendering_and_as_many_waiting_are_refused_at_once(
    new_browser: NewBrowser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack's request holds a database connection while it waits to render: beyond the
    render slots and as many waiting, a request is refused (RATE_LIMITED, nothing written)
    instead of queueing, so packs cannot take the pool from every firm's other requests."""
    storage = auth_app.state.coverproof.storage
    slots = storage.render_slots._value
    assert storage.admitted._value == 2 * slots
    firms = [new_browser() for _ in range(2 * slots + 1)]
    for n, firm in enumerate(firms):
        await signed_up(firm, smtp, firm=f"Busy Advisers {n} Ltd")
    _slow_renders(monkeypatch)
    answers = await asyncio.gather(
        *(b.gql(GENERATE, {"i": {"title": f"Busy {n}", **period()}}) for n, b in enumerate(firms))
    )
    refused = [a for a in answers if codes(a) == ["RATE_LIMITED"]]
    made = [a["data"]["generateEvidencePack"]["pack"] for a in answers if "errors" not in a]
    assert (len(refused), len(made)) == (1, 2 * slots), answers
    assert {p["status"] for p in made} == {"READY"}
    assert refused[0]["errors"][0]["extensions"]["retryAfter"] == 60
    assert await _titled(superuser_engine, "Busy ") == 2 * slots  # the refused one left nothing


async def test_one_firm_cannot_hold_every_render_slot(
    new_browser: NewBrowser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A firm may have one pack fewer in progress than there are render slots: its next is
    refused at once (RATE_LIMITED, saying so, nothing written), and another firm's pack, asked
    for meanwhile, is made without waiting for the first firm's."""
    storage = auth_app.state.coverproof.storage
    slots = storage.render_slots._value
    assert slots >= 2
    hoarder, other = new_browser(), new_browser()
    await signed_up(hoarder, smtp, firm="Hoarding Advisers Ltd")
    await signed_up(other, smtp, firm="Waiting Advisers Ltd")
    _slow_renders(monkeypatch)
    answers = await asyncio.gather(
        *(hoarder.gql(GENERATE, {"i": {"title": f"Hoard {n}", **period()}}) for n in range(slots)),
        other.gql(GENERATE, {"i": {"title": "Hoard other", **period()}}),
    )
    *hoarded, others = answers
    refused = [a for a in hoarded if codes(a) == ["RATE_LIMITED"]]
    assert len(refused) == 1, hoarded
    assert "your firm" in refused[0]["errors"][0]["message"]
    assert refused[0]["errors"][0]["extensions"]["retryAfter"] == 60
    assert others["data"]["generateEvidencePack"]["pack"]["status"] == "READY", others
    assert await _titled(superuser_engine, "Hoard ") == slots  # the refused one left nothing
    assert not storage._firms  # every place given back
    again = await hoarder.gql(GENERATE, {"i": {"title": "After", **period()}})
    assert again["data"]["generateEvidencePack"]["pack"]["status"] == "READY", again


async def test_downloads_are_limited_per_caller_so_they_cannot_flood_the_chain(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """Each download is an audit entry: past 30 a minute, a caller is refused (429, with
    Retry-After) and nothing is recorded."""
    await signed_up(browser, smtp, firm="Looping Advisers Ltd")
    pack = await generate(browser, "Looped")
    path = _path(await _download_url(browser, pack["id"]))
    statuses = [(await browser.client.get(path)).status_code for _ in range(30)]
    assert statuses == [200] * 30
    refused = await browser.client.get(path)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert_security_headers(refused)
    downloads = [a for a in await audit_of(superuser_engine, pack["id"]) if "download" in a.action]
    assert len(downloads) == 30


async def test_packs_count_against_the_callers_whole_chain_reads(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pack made or retried verifies the firm's whole chain, the work verifyAuditChain
    and exportAuditLog count: packs count with them, 20 a minute per caller, counted before any
    work, and a pack refused so writes nothing. A pack of an empty period cost nothing else, so
    a member, who may not verify the chain, read it as often as the mutations allowed."""
    await signed_up(browser, smtp, firm="Chain Readers Ltd")
    with monkeypatch.context() as patched:
        patched.setattr(render, "render_pdf", _failing_render)
        failed = await generate(browser, "Failed once")
    retried = await browser.gql(RETRY, {"id": failed["id"]})
    assert retried["data"]["retryEvidencePack"]["pack"]["status"] == "READY", retried
    limit = int(Policy.WHOLE_CHAIN_READS_PER_CALLER.item.amount)
    for _ in range(limit - 2):
        assert "errors" not in await browser.gql("{ verifyAuditChain { ok } }")
    verified = 0
    real_verify = chain.verify

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal verified
        verified += 1
        return await real_verify(*args, **kwargs)

    monkeypatch.setattr(chain, "verify", counted)
    refused = await browser.gql(GENERATE, {"i": {"title": "One too many", **period()}})
    assert codes(refused) == ["RATE_LIMITED"], refused
    assert refused["errors"][0]["extensions"]["retryAfter"] >= 1
    assert verified == 0
    listed = await browser.gql(PACKS)
    assert [e["node"]["id"] for e in listed["data"]["evidencePacks"]["edges"]] == [failed["id"]]
    assert codes(await browser.gql("{ verifyAuditChain { ok } }")) == ["RATE_LIMITED"]


async def test_a_keys_downloads_count_against_its_request_limit(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """A key's 600 requests a minute are every request of it, downloads included: the
    600th is served, the 601st refused (429) and not recorded."""
    await signed_up(browser, smtp, firm="Keyed Downloads Ltd")
    pack = await generate(browser, "Keyed")
    path = _path(await _download_url(browser, pack["id"]))
    made = await browser.gql(CREATE_KEY, {"i": {"name": "reader", "scopes": ["EVIDENCE_READ"]}})
    key = {"authorization": f"Bearer {made['data']['createApiKey']['secret']}"}
    limiter = auth_app.state.coverproof.limiter
    for _ in range(599):  # as if the key had made its other requests this minute
        await limiter.hit(Policy.API_KEY_REQUESTS, made["data"]["createApiKey"]["apiKey"]["id"])
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as partner:
        assert (await partner.get(path, headers=key)).status_code == 200
        refused = await partner.get(path, headers=key)
    assert refused.status_code == 429, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    downloads = [a for a in await audit_of(superuser_engine, pack["id"]) if "download" in a.action]
    assert len(downloads) == 1


def _first_read_held(
    monkeypatch: pytest.MonkeyPatch, storage: Any
) -> tuple[asyncio.Event, asyncio.Event]:
    """The store's first read of a file, held: set once reached, let go by the second event."""
    original, reading, go_on = storage.read, asyncio.Event(), asyncio.Event()

    async def held(*args: Any) -> bytes:
        if not reading.is_set():
            reading.set()
            await go_on.wait()
        return await original(*args)

    monkeypatch.setattr(storage, "read", held)
    return reading, go_on


async def test_a_keys_first_download_reads_the_file_before_it_takes_the_firms_chain_lock(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key's first use and a download are recorded under the firm's chain lock, held to the
    commit: taken before the file's read, every write of the firm waited for the store (the
    lock-order review's third finding). Both are recorded once it is read, the first use
    first."""
    await signed_up(browser, smtp, firm="First Use Ltd")
    pack = await generate(browser, "First use")
    path = _path(await _download_url(browser, pack["id"]))
    made = await browser.gql(CREATE_KEY, {"i": {"name": "reader", "scopes": ["EVIDENCE_READ"]}})
    key = {"authorization": f"Bearer {made['data']['createApiKey']['secret']}"}
    firm_id = (await browser.gql("{ firm { id } }"))["data"]["firm"]["id"]
    reading, go_on = _first_read_held(monkeypatch, auth_app.state.coverproof.storage)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as partner:
        downloading = asyncio.create_task(partner.get(path, headers=key))
        await reading.wait()
        async with superuser_engine.connect() as conn:
            free = await conn.scalar(
                text("select pg_try_advisory_xact_lock(:k)"),
                {"k": chain._lock_key(uuid.UUID(firm_id))},
            )
        go_on.set()
        assert (await downloading).status_code == 200
    assert free, "the firm's chain lock was held while the file was read"
    async with superuser_engine.connect() as conn:
        actions = await conn.scalars(
            text("select action from audit_log where firm_id = :f order by seq desc limit 2"),
            {"f": firm_id},
        )
        assert list(actions)[::-1] == ["api_key.first_used", "evidence_pack.downloaded"]


async def test_a_member_demoted_as_they_download_a_pack_is_refused_not_failed(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    auth_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Demoted while the file was read, the download is refused when it records (0035):
    403 FORBIDDEN, as the API refuses it, not a 500; sent again, as a viewer may, it is
    served (the second review of 0035)."""
    await signed_up(browser, smtp, firm="Demoted Downloads Ltd")
    member = await join(browser, smtp, new_browser(), "MEMBER")
    pack = await generate(browser, "Demoted")
    path = _path(await _download_url(member.browser, pack["id"]))
    reading, go_on = _first_read_held(monkeypatch, auth_app.state.coverproof.storage)
    downloading = asyncio.create_task(member.browser.client.get(path))
    await reading.wait()
    assert "errors" not in await change_role(browser, member.user_id, "VIEWER")
    go_on.set()
    refused = await downloading
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await member.browser.client.get(path)).status_code == 200


async def test_viewers_read_and_download_but_only_members_generate(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    owner = await members.create()
    viewer = await members.create(Role.VIEWER, firm_id=owner.firm_id)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        variables = {"i": {"title": "Viewer try", **period()}}
        assert codes(await gql(client, GENERATE, variables, viewer)) == ["FORBIDDEN"]
        made = await gql(client, GENERATE, variables, owner)
        pack_id = made["data"]["generateEvidencePack"]["pack"]["id"]
        assert codes(await gql(client, RETRY, {"id": pack_id}, viewer)) == ["FORBIDDEN"]
        # A ready pack cannot be retried, whoever asks.
        assert codes(await gql(client, RETRY, {"id": pack_id}, owner)) == ["BAD_USER_INPUT"]
        read = await gql(client, PACK, {"id": pack_id}, viewer)
        url = read["data"]["evidencePack"]["downloadUrl"]
        response = await client.get(_path(url), headers=viewer.headers)
        assert response.status_code == 200
        listed = await gql(client, PACKS, {}, viewer)
        assert [e["node"]["id"] for e in listed["data"]["evidencePacks"]["edges"]] == [pack_id]
    actions = [a.action for a in await audit_of(superuser_engine, pack_id)]
    assert actions[-1] == "evidence_pack.downloaded"


async def test_scope_is_validated_before_anything_is_written(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    backwards = {"title": "Backwards", "from": "2026-02-01", "to": "2026-01-01"}
    assert codes(await browser.gql(GENERATE, {"i": backwards})) == ["BAD_USER_INPUT"]
    blank = {"title": "   ", **period()}
    assert codes(await browser.gql(GENERATE, {"i": blank})) == ["BAD_USER_INPUT"]
    unknown = {"title": "Unknown", **period(), "declarationIds": [str(uuid.uuid4())]}
    body = await browser.gql(GENERATE, {"i": unknown})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["fields"][0]["field"] == "declarationIds"
    listed = await browser.gql(PACKS)
    assert listed["data"]["evidencePacks"]["edges"] == []


async def test_a_pack_title_holds_nothing_that_hides_or_reorders_what_it_says(
    browser: Browser,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    superuser_engine: AsyncEngine,
) -> None:
    """A pack's title heads its cover and every listing, beside names that may hold no bidi
    control and must show something (docs/api.md): the title is held to the same rule."""
    await signed_up(browser, smtp, firm="Titles Ltd")
    for title, says in (
        ("Q1 review \u202edevorppa ton\u202c", "reorder"),  # shows "Q1 review not approved"
        ("\u2066Annual\u2069 F&P", "reorder"),  # an isolate
        ("\u200b\u200b", "show as nothing"),  # shows nothing at all
        ("Q1\u200breview", "show as nothing"),
        ("Q1\u2028review", "control characters"),
        ("Q1\x1b[8mreview", "control characters"),
    ):
        body = await browser.gql(GENERATE, {"i": {"title": title, **period()}})
        assert codes(body) == ["BAD_USER_INPUT"], (title, body)
        [field] = body["errors"][0]["extensions"]["fields"]
        assert field["field"] == "title", body
        assert says in field["message"], body
    listed = await browser.gql(PACKS)
    assert listed["data"]["evidencePacks"]["edges"] == []
    assert (await generate(browser, "Revue Q1 \u00e9t\u00e9 \U0001f44d"))["status"] == "READY"
    # A failed pack whose title was stored before the rule is not made again under it.
    with monkeypatch.context() as patched:
        patched.setattr(render, "render_pdf", _failing_render)
        failed = await generate(browser, "Stored before")
    async with superuser_engine.begin() as conn:
        retitled = {"id": failed["id"], "title": "Q1 \u202edevorppa ton\u202c"}
        await conn.execute(
            text("update evidence_packs set title = :title where id = :id"), retitled
        )
    body = await browser.gql(RETRY, {"id": failed["id"]})
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert [f["field"] for f in body["errors"][0]["extensions"]["fields"]] == ["title"], body
    assert (await pack_row(superuser_engine, failed["id"])).status == "failed"


def _failing_render(*args: Any) -> Any:
    raise render.RenderError("The PDF could not be rendered.")


async def test_another_firm_can_never_list_read_retry_or_download_a_pack(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, members: Members
) -> None:
    await signed_up(browser, smtp, firm="Firm A Ltd")
    pack = await generate(browser, "Firm A's pack")
    url = await _download_url(browser, pack["id"])
    other = await members.create(name="Firm B Ltd")
    firm_b = browser_for(auth_app)
    firm_b.client.headers["cookie"] = other.headers["cookie"]
    async with firm_b.client:
        assert codes(await firm_b.gql(PACK, {"id": pack["id"]})) == ["NOT_FOUND"]
        assert codes(await firm_b.gql(RETRY, {"id": pack["id"]})) == ["NOT_FOUND"]
        listed = await firm_b.gql(PACKS)
        assert listed["data"]["evidencePacks"]["edges"] == []
        # A's genuine link with B's session: refused, and nothing about the pack is said.
        refused = await firm_b.client.get(_path(url))
        assert refused.status_code == 404
        assert pack["id"] not in refused.text
        # A link genuinely signed for B's firm but naming A's pack: RLS hides the pack.
        secret = auth_app.state.coverproof.secret_key
        forged = download.sign(secret, other.firm_id, uuid.UUID(pack["id"]))
        refused = await firm_b.client.get(download.PATH + forged)
        assert refused.status_code == 404
    # A member of A who has not confirmed their email: refused like anyone else.
    firm_a = (await browser.gql("{ firm { id } }"))["data"]["firm"]["id"]
    unverified = await members.create(Role.MEMBER, firm_id=uuid.UUID(firm_a), verified=False)
    waiting = browser_for(auth_app)
    waiting.client.headers["cookie"] = unverified.headers["cookie"]
    async with waiting.client:
        refused = await waiting.client.get(_path(url))
        assert refused.status_code == 404
        assert pack["id"] not in refused.text
    # No session at all: refused too.
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as anonymous:
        assert (await anonymous.get(_path(url))).status_code == 404
    # The owner's own session still works with the same link.
    assert (await browser.client.get(_path(url))).status_code == 200


async def test_another_firms_pack_retried_answers_as_an_unknown_id_whatever_that_firm_does(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    members: Members,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Firm B's pack id, sent to retryEvidencePack by firm A, is answered as an id that exists
    nowhere (NOT_FOUND), even while B retries it: the "being made" lock was taken before the
    pack was looked up, so A was told RATE_LIMITED then, and learnt that the id was another
    firm's pack being made."""
    await signed_up(browser, smtp, firm="Firm B Retrying Ltd")
    real_render, rendering = render.render_pdf, threading.Event()

    def failing(*args: Any) -> Any:
        raise render.RenderError("The PDF could not be rendered.")

    monkeypatch.setattr(render, "render_pdf", failing)
    b_pack = (await generate(browser, "Retried by B"))["id"]

    def slow(*args: Any) -> Any:
        rendering.set()
        time.sleep(1.0)
        return real_render(*args)

    monkeypatch.setattr(render, "render_pdf", slow)
    firm_a = await members.create(name="Firm A Probing Ltd")
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as a:
        unknown = await gql(a, RETRY, {"id": str(uuid.uuid4())}, firm_a)
        assert codes(unknown) == ["NOT_FOUND"], unknown
        b_retry = asyncio.ensure_future(browser.gql(RETRY, {"id": b_pack}))
        assert await asyncio.to_thread(rendering.wait, 30)
        while_b_retries = await gql(a, RETRY, {"id": b_pack}, firm_a)
        assert not b_retry.done()
        assert codes(while_b_retries) == ["NOT_FOUND"], while_b_retries
        assert (await b_retry)["data"]["retryEvidencePack"]["pack"]["status"] == "READY"


class _Past(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - download.MAX_AGE_SECONDS - 5


async def test_altered_expired_and_foreign_links_are_refused(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    pack = await generate(browser, "Links")
    url = await _download_url(browser, pack["id"])
    token = _path(url).removeprefix(download.PATH)
    firm_id = (await pack_row(superuser_engine, pack["id"])).firm_id
    secret = auth_app.state.coverproof.secret_key

    # One character changed in the payload, and one in the middle of the signature.
    altered_payload = ("B" if token[0] != "B" else "C") + token[1:]
    middle = token.rindex(".") + 5
    altered_signature = (
        token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    )
    expired = URLSafeTimedSerializer(secret, salt=download.SALT, signer=_Past).dumps(
        [str(firm_id), pack["id"]]
    )
    wrong_key = URLSafeTimedSerializer("x" * 48, salt=download.SALT).dumps(
        [str(firm_id), pack["id"]]
    )
    wrong_salt = URLSafeTimedSerializer(secret, salt="another").dumps([str(firm_id), pack["id"]])
    for bad in (
        altered_payload,
        altered_signature,
        expired,
        wrong_key,
        wrong_salt,
        "x" * 400,
        "not-a-token",
    ):
        response = await browser.client.get(download.PATH + bad)
        assert response.status_code == 404, bad
    assert download.read(secret, expired) is None
    assert download.read(secret, token) is not None
    # HEAD would send nothing, so it is no download: refused, and not recorded as one.
    head = await browser.client.head(download.PATH + token)
    assert (head.status_code, head.headers["allow"]) == (405, "GET")
    # Only the genuine, fresh link downloads; the refusals above recorded nothing.
    assert (await browser.client.get(download.PATH + token)).status_code == 200
    actions = [a.action for a in await audit_of(superuser_engine, pack["id"])]
    assert actions.count("evidence_pack.downloaded") == 1


async def test_a_stored_file_is_private_and_never_served_once_altered(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    pack = await generate(browser, "Tamper target")
    row = await pack_row(superuser_engine, pack["id"])
    state = auth_app.state.coverproof
    path = state.storage.path(row.storage_key)
    assert path.parent == (state.settings.data_dir / "packs" / str(row.firm_id)).resolve()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    url = await _download_url(browser, pack["id"])
    original = path.read_bytes()
    path.write_bytes(original[:-8] + b"tampered")
    refused = await browser.client.get(_path(url))
    assert refused.status_code == 500
    assert refused.json()["errors"][0]["extensions"]["code"] == "PACK_UNAVAILABLE"
    assert b"tampered" not in refused.content
    path.write_bytes(original)
    assert (await browser.client.get(_path(url))).status_code == 200
    actions = [a.action for a in await audit_of(superuser_engine, pack["id"])]
    assert actions.count("evidence_pack.downloaded") == 1


async def test_a_pack_whose_request_is_refused_leaves_no_file(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pack was made and its PDF stored, then the request's other mutation failed: the
    row is rolled back, and the file it named is deleted with it."""
    await signed_up(browser, smtp, firm="Refused Request Ltd")
    storage = auth_app.state.coverproof.storage
    stored = stored_keys(storage, monkeypatch)
    await generate_then_fail(browser, "Rolled back")
    assert len(stored) == 1
    assert not storage.path(stored[0]).exists()
    async with superuser_engine.connect() as conn:
        rows = await conn.scalar(
            text("select count(*) from evidence_packs where title = 'Rolled back'")
        )
    assert rows == 0


async def test_a_pdf_no_pack_names_is_swept_once_old_enough(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    await signed_up(browser, smtp, firm="Swept Folder Ltd")
    await swept_once_old_enough(auth_app, browser, monkeypatch)


async def test_the_sweep_removes_half_written_files_and_judges_nothing_else(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process that died while writing a PDF leaves its temporary file (never a key): the
    sweep removes it once it is old enough. A file the store never writes, and a PDF under a
    firm it cannot see, are left alone."""
    await signed_up(browser, smtp, firm="Half Written Ltd")
    pack = await generate(browser, "Beside")
    state = auth_app.state.coverproof
    folder = state.storage.path((await pack_row(superuser_engine, pack["id"])).storage_key).parent
    name = f"{uuid.uuid4()}-{'A' * 22}.pdf"
    partial, young = folder / f".{name}.0123abcd.part", folder / f".{name}.89abcdef.part"
    other = folder / "notes.txt"
    nobody = str(uuid.uuid4())
    unseen = state.storage.path(f"{nobody}/{name}")
    unseen.parent.mkdir()
    for path in (partial, young, other, unseen):
        path.write_bytes(b"%PDF-1.4 half")
    hour_ago = time.time() - 3600
    for path in (partial, other, unseen):
        os.utime(path, (hour_ago, hour_ago))
    minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    await sweep.sweep(state.sessions, state.storage, before=minute_ago)
    assert [p.exists() for p in (partial, young, other, unseen)] == [False, True, True, True]
    assert f"stored pack PDFs under {nobody}, a firm not found, left alone" in caplog.text
    for path in (young, other, unseen):
        path.unlink()
    unseen.parent.rmdir()


async def test_a_pdf_whose_pack_may_still_commit_is_never_swept(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """A pack's transaction may stay open longer than the sweep's grace (a document of many
    packs, a slow database): while it holds its storing lock its PDF is left alone, however
    old, though no committed row names it yet."""
    await signed_up(browser, smtp, firm="Slow Commit Ltd")
    state = auth_app.state.coverproof
    firm_id = uuid.UUID((await browser.gql("{ firm { id } }"))["data"]["firm"]["id"])
    pack_id = uuid.uuid4()
    key = state.storage.new_key(firm_id, pack_id)
    data = b"%PDF-1.4 still committing"
    later = datetime.now(UTC) + timedelta(seconds=2)

    class Abandoned(Exception):
        pass

    async def still_committing() -> None:
        async with tenant_transaction(state.sessions, firm_id) as session:
            await sweep.storing(session, pack_id)
            await state.storage.put(key, data, hashlib.sha256(data).digest())
            await sweep.sweep(state.sessions, state.storage, before=later)
            assert await state.storage.read(key) == data
            raise Abandoned  # the process gave up on it; its lock goes with its transaction

    with pytest.raises(Abandoned):
        await still_committing()
    await sweep.sweep(state.sessions, state.storage, before=later)
    assert not state.storage.path(key).exists()


async def test_a_pdf_its_request_is_still_storing_is_never_swept(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack's own request holds its storing lock: a sweep run just after its PDF is stored
    (as though an hour had passed) leaves the PDF, and the pack is READY and downloads."""
    await signed_up(browser, smtp, firm="Racing The Sweep Ltd")
    state = auth_app.state.coverproof
    put = state.storage.put

    async def put_then_sweep(key: str, data: bytes, sha256: bytes) -> None:
        assert await put(key, data, sha256) is None  # a local file has no versions
        later = datetime.now(UTC) + timedelta(seconds=2)
        await sweep.sweep(state.sessions, state.storage, before=later)
        assert await state.storage.read(key) == data

    monkeypatch.setattr(state.storage, "put", put_then_sweep)
    pack = await generate(browser, "Stored as the sweep runs")
    assert pack["status"] == "READY", pack
    downloaded = await browser.client.get(_path(await _download_url(browser, pack["id"])))
    assert hashlib.sha256(downloaded.content).hexdigest() == pack["sha256"]


async def test_the_sweep_reads_the_named_keys_again_under_the_locks(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pack that commits between the sweep's first read and its taking the pack's lock is
    named when read again under the lock: its PDF stays. Here every first read misses every
    pack, as one made just before a commit would."""
    await signed_up(browser, smtp, firm="Committed Meanwhile Ltd")
    pack = await generate(browser, "Committed meanwhile")
    state = auth_app.state.coverproof
    read = sweep._unnamed
    reads: list[int] = []

    async def first_reads_miss(session: AsyncSession, keys: list[str]) -> list[str]:
        reads.append(len(keys))
        return list(keys) if len(reads) % 2 else await read(session, keys)

    monkeypatch.setattr(sweep, "_unnamed", first_reads_miss)
    await sweep.sweep(
        state.sessions, state.storage, before=datetime.now(UTC) + timedelta(seconds=2)
    )
    assert len(reads) >= 2
    key = (await pack_row(superuser_engine, pack["id"])).storage_key
    assert state.storage.path(key).exists()


async def test_the_sweep_command_lists_then_deletes(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    database: Database,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`coverproof packs sweep --dry-run` lists the stored PDFs no pack names and deletes
    nothing (after a restore: what to keep); without it they are deleted, as the server's own
    sweep deletes them."""
    await signed_up(browser, smtp, firm="Swept By Hand Ltd")
    state = auth_app.state.coverproof
    kept = await generate(browser, "Kept by hand")
    orphan = await orphaned_pdf(browser, state.storage, monkeypatch)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    monkeypatch.setenv("COVERPROOF_DATA_DIR", str(state.settings.data_dir))
    command = ["packs", "sweep", "--older-than-minutes", "0"]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*command, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"no pack names {orphan}",
        "1 stored pack PDF(s) no pack names found (nothing deleted)",
    ]
    assert state.storage.path(orphan).exists()
    assert await asyncio.to_thread(main, command) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"deleted {orphan}",
        "1 stored pack PDF(s) no pack names deleted",
    ]
    assert not state.storage.path(orphan).exists()
    assert state.storage.path((await pack_row(superuser_engine, kept["id"])).storage_key).exists()


async def test_a_failed_pack_retried_twice_at_once_is_made_once_and_the_other_refused(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second retry is refused at once (RATE_LIMITED, a few seconds), holding nothing:
    queued on the pack's row, each held a connection of the pool for the whole render."""
    await signed_up(browser, smtp, firm="Twice Retried Ltd")
    original, rendering = render.render_pdf, threading.Event()

    def failing(*args: Any) -> Any:
        raise render.RenderError("The PDF could not be rendered.")

    monkeypatch.setattr(render, "render_pdf", failing)
    pack = await generate(browser, "Retried twice")
    assert pack["status"] == "FAILED", pack

    def slow(*args: Any) -> Any:
        rendering.set()
        time.sleep(1.0)
        return original(*args)

    monkeypatch.setattr(render, "render_pdf", slow)
    first = asyncio.ensure_future(browser.gql(RETRY, {"id": pack["id"]}))
    assert await asyncio.to_thread(rendering.wait, 30)
    second = await browser.gql(RETRY, {"id": pack["id"]})
    assert not first.done()
    assert codes(second) == ["RATE_LIMITED"], second
    assert second["errors"][0]["extensions"]["retryAfter"] == 10
    assert (await first)["data"]["retryEvidencePack"]["pack"]["status"] == "READY"


async def test_a_pack_after_another_mutation_of_its_operation_is_refused(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """The mutation before it appended to the firm's chain, whose lock is held until the
    commit: the pack would render holding every other write of the firm for minutes. Refused
    whole (BAD_USER_INPUT); first in its operation, or alone, it is made."""
    await signed_up(browser, smtp, firm="Second Field Ltd")
    after = """mutation($i: EvidencePackGenerateInput!, $j: EvidencePackGenerateInput!) {
      first: generateEvidencePack(input: $i) { pack { id } }
      second: generateEvidencePack(input: $j) { pack { id } } }"""
    variables = {"i": {"title": "Locked 1", **period()}, "j": {"title": "Locked 2", **period()}}
    body = await browser.gql(after, variables)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert "operation of its own" in body["errors"][0]["message"]
    assert await _titled(superuser_engine, "Locked ") == 0
    assert (await generate(browser, "Locked alone"))["status"] == "READY"


async def test_a_dry_run_removes_nothing_and_no_sweep_a_file_being_written(
    tmp_path: Path,
) -> None:
    """`packs sweep --dry-run` promised to delete nothing, yet removed the half-written files;
    and a sweep with a cut-off of now (`--older-than-minutes 0`) removed one still being
    written, failing its pack. Only one an hour untouched is a dead writer's."""
    storage = LocalStorage(tmp_path / "packs", 2)
    await storage.open()
    folder = storage.root / str(uuid.uuid4())
    folder.mkdir()
    name = f"{uuid.uuid4()}-{'A' * 22}.pdf"
    dead, live = folder / f".{name}.0123abcd.part", folder / f".{name}.89abcdef.part"
    for path in (dead, live):
        path.write_bytes(b"%PDF-half")
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert await sweep.sweep(None, storage, now, dry_run=True) == []  # type: ignore[arg-type]
    assert [dead.exists(), live.exists()] == [True, True]
    assert await sweep.sweep(None, storage, now) == []  # type: ignore[arg-type]
    assert [dead.exists(), live.exists()] == [False, True]


def test_the_sweep_command_refuses_a_cut_off_in_the_future(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["packs", "sweep", "--older-than-minutes", "-5"])
    assert refused.value.code == 2
    assert "must not be negative" in capsys.readouterr().err
