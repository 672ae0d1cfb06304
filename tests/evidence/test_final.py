"""A submitted declaration and a ready evidence pack are final in the database itself (migration
0012): neither the app role, whatever code it runs, nor the tables' owner (short of disabling
the trigger) can change them, while records that are not final yet still move on."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.audit.actions import Action
from app.auth.actor import Actor, ActorType, Role
from app.db.models import Declaration
from app.db.tenant import bind_tenant, tenant_transaction
from app.declarations.public import stored_response_hash
from tests.audit.test_audit_graphql import RENAME
from tests.audit.test_tamper import CHECKPOINT, _refusal, rewrite
from tests.browser import Browser, signed_up
from tests.declarations.test_loop import CREATE, FIT
from tests.evidence.support import (
    GENERATE,
    audit_of,
    generate,
    pack_row,
    period,
    submitted_declaration,
)
from tests.evidence.test_large import firm_with_declarations
from tests.factories import Members, gql
from tests.mail.smtp import SmtpServer


async def _changed(sessions: async_sessionmaker[AsyncSession], firm: uuid.UUID, sql: str) -> int:
    """Run ``sql`` in the firm's tenant context, count the rows it changed, and roll back."""
    async with sessions() as session:
        await session.begin()
        try:
            await bind_tenant(session, firm, None)
            changed: int = (await session.execute(text(sql))).rowcount  # type: ignore[attr-defined]
            return changed
        finally:
            await session.rollback()


async def test_a_submitted_declaration_and_a_ready_pack_cannot_change(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    app_sessions: async_sessionmaker[AsyncSession],
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    await signed_up(browser, smtp, firm="Final Records Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Final")
    pack = await generate(browser, "Final pack")
    assert pack["status"] == "READY", pack
    firm = (await pack_row(superuser_engine, pack["id"])).firm_id
    recipient = {"recipientName": "Pat Draft", "recipientEmail": "pat@example.test"}
    draft = await browser.gql(CREATE, {"i": {"templateId": str(FIT.id), **recipient}})
    assert "errors" not in draft, draft
    draft_id = draft["data"]["createDeclaration"]["declaration"]["id"]

    submitted, ready = "is submitted and cannot change", "is ready and cannot change"
    final = [
        (f"update declarations set signature_name = 'Someone' where id = '{alice.id}'", submitted),
        (f"update declarations set answers = '{{}}' where id = '{alice.id}'", submitted),
        (f"update declarations set status = 'revoked' where id = '{alice.id}'", submitted),
        (f"update evidence_packs set sha256 = sha256('x') where id = '{pack['id']}'", ready),
        (f"update evidence_packs set status = 'failed' where id = '{pack['id']}'", ready),
    ]
    for sessions in (app_sessions, owner_sessions):
        for statement, reason in final:
            message = await _refusal(sessions, firm, statement)
            assert reason in message, (statement, message)
    # The owner may delete (the app role may not at all): the trigger stops it too.
    for statement in (
        f"delete from declarations where id = '{alice.id}'",
        f"delete from evidence_packs where id = '{pack['id']}'",
    ):
        message = await _refusal(owner_sessions, firm, statement)
        assert "cannot change" in message, (statement, message)
    # Nor truncate them away, which fires no row trigger (the app role may not truncate).
    for table in ("declarations", "evidence_packs"):
        message = await _refusal(owner_sessions, firm, f"truncate {table} cascade")
        assert f"{table} holds final records and cannot be truncated" in message, message

    # A draft is not final: it still changes (what it asks stays: 0032), and the owner may
    # still delete it (each rolled back here).
    updated = f"update declarations set status = 'revoked' where id = '{draft_id}'"
    assert await _changed(app_sessions, firm, updated) == 1
    deleted = f"delete from declarations where id = '{draft_id}'"
    assert await _changed(owner_sessions, firm, deleted) == 1


FORM = (
    "(select snapshot from declaration_forms f "
    "where f.firm_id = declarations.firm_id and f.sha256 = declarations.form_key)"
)


async def _altered_past_the_trigger(engine: AsyncEngine, declaration_id: str, sql: str) -> None:
    """Set ``sql`` on a submitted declaration, as only whoever can disable its triggers could;
    or, given a whole statement, run it so."""
    whole = sql.startswith("with ")
    statement = sql if whole else f"update declarations set {sql} where id = :id"
    async with engine.begin() as conn:
        await conn.execute(text("alter table declarations disable trigger user"))
        await conn.execute(text(statement), {"id": uuid.UUID(declaration_id)})
        await conn.execute(text("alter table declarations enable trigger user"))


@pytest.mark.parametrize(
    "altered",
    [
        "signature_name = 'Someone Else'",
        "answers = null, response_sha256 = null",  # nothing left to compare is no match
        # The form it answered, reworded: the receipt covers what was asked, word for word;
        # as a copy of its own (as declarations made before 0036 hold theirs)...
        f"template_snapshot = jsonb_set({FORM}, '{{questions,0,label}}', '\"Ever?\"'), "
        "form_key = null",
        f"template_snapshot = jsonb_set({FORM}, '{{attestation}}', '\"Nothing.\"'), "
        "form_key = null",
        # ...or as another form of the firm's, which it is made to name.
        "with reworded as (insert into declaration_forms (firm_id, snapshot) "
        "select firm_id, jsonb_set(snapshot, '{attestation}', '\"Nothing.\"') "
        "from declaration_forms where (firm_id, sha256) = (select firm_id, form_key "
        "from declarations where id = :id) returning sha256) "
        "update declarations set form_key = (select sha256 from reworded) where id = :id",
    ],
)
async def test_a_pack_refuses_a_response_that_no_longer_matches_its_hash(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    altered: str,
) -> None:
    """Altered past the trigger (by whoever can disable it), a response no longer hashes to
    the SHA-256 its recipient was given and the audit trail holds: a pack will not present it
    as theirs, and fails saying so."""
    await signed_up(browser, smtp, firm="Altered Records Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Altered")
    await _altered_past_the_trigger(superuser_engine, alice.id, altered)
    pack = await generate(browser, "Altered")
    assert pack["status"] == "FAILED", pack
    assert pack["failureReason"] == (
        f"Declaration {alice.id}'s stored response does not match its SHA-256."
    )
    failed = (await audit_of(superuser_engine, pack["id"]))[-1]
    assert (failed.action, failed.details["stage"]) == ("evidence_pack.failed", "collect")


@pytest.mark.parametrize(
    "altered",
    [
        "recipient_name = 'Mallory Forged'",
        "recipient_email = 'mallory@example.test'",
        "submitted_ip = '203.0.113.9'",
    ],
)
async def test_a_pack_refuses_a_recipient_who_is_not_the_one_recorded(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    altered: str,
) -> None:
    """Who declared (the pack prints the recipient's name, address and the submission's IP)
    is outside the receipt, which covers what was declared: altered past the trigger, the pack
    printed "Mallory Forged" beside a valid receipt. The declaration.submitted entry records
    their digest (recipient_sha256), and a pack checks it."""
    await signed_up(browser, smtp, firm="Altered Recipient Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Genuine")
    await _altered_past_the_trigger(superuser_engine, alice.id, altered)
    pack = await generate(browser, "Altered recipient")
    assert pack["status"] == "FAILED", pack
    assert pack["failureReason"] == (
        f"Declaration {alice.id}'s recipient is not the one its declaration.submitted audit "
        "entry recorded."
    )


async def _rewrite(engine: AsyncEngine, declaration_id: str, entry_too: bool) -> None:
    """Past the triggers: sign the response with another name and record the hash that
    now agrees with the row; with ``entry_too``, in its audit entry's details as well."""
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(text("alter table declarations disable trigger user"))
        await session.execute(text("alter table audit_log disable trigger user"))
        row = await session.get(Declaration, uuid.UUID(declaration_id))
        assert row is not None
        row.signature_name = "Someone Else"
        row.response_sha256 = digest = stored_response_hash(row)
        await session.flush()
        if entry_too:
            rewritten = await session.execute(
                text(
                    "update audit_log set details = jsonb_set(details, '{response_sha256}', "
                    "to_jsonb(cast(:digest as text))) "
                    "where target_id = :id and action = 'declaration.submitted'"
                ),
                {"digest": digest.hex() if digest else None, "id": declaration_id},
            )
            assert rewritten.rowcount == 1  # type: ignore[attr-defined]
        await session.execute(text("alter table audit_log enable trigger user"))
        await session.execute(text("alter table declarations enable trigger user"))


async def _failed_at_collect(engine: AsyncEngine, pack: dict[str, Any]) -> str:
    assert pack["status"] == "FAILED", pack
    failed = (await audit_of(engine, pack["id"]))[-1]
    assert (failed.action, failed.details["stage"]) == ("evidence_pack.failed", "collect")
    reason: str = pack["failureReason"]
    return reason


@pytest.mark.parametrize(
    ("entry_too", "reason"),
    [
        (False, "{id}'s SHA-256 does not match its declaration.submitted audit entry."),
        # The entry's shown details rewritten too: they no longer agree with the bytes its
        # hash chains, so verification fails there and no entry vouches for anything.
        (True, "{id} cannot be shown: the audit trail does not verify (at seq "),
    ],
)
async def test_a_pack_refuses_a_response_rewritten_with_its_hash(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    entry_too: bool,
    reason: str,
) -> None:
    """Rewriting a response and its recorded hash together leaves a row that agrees with
    itself; not with the SHA-256 the submission's audit entry chained."""
    await signed_up(browser, smtp, firm="Rewritten Records Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Rewritten")
    await _rewrite(superuser_engine, alice.id, entry_too)
    pack = await generate(browser, "Rewritten")
    shown = await _failed_at_collect(superuser_engine, pack)
    assert shown.startswith("Declaration " + reason.format(id=alice.id)), shown


async def test_a_pack_refuses_a_response_recorded_twice(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """A second ``declaration.submitted`` entry for one declaration (with whatever hash) makes
    its receipt ambiguous: the pack does not pick one."""
    await signed_up(browser, smtp, firm="Twice Recorded Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Twice")
    firm_id = (await _declaration_row(superuser_engine, alice.id)).firm_id
    declaration_id = uuid.UUID(alice.id)
    async with tenant_transaction(owner_sessions, firm_id) as session:
        await chain.record(
            session,
            Actor(ActorType.RECIPIENT, declaration_id, firm_id, Role.VIEWER),
            Action.DECLARATION_SUBMITTED,
            "declaration",
            declaration_id,
            {"response_sha256": alice.receipt, "template_version": FIT.version},
        )
    pack = await generate(browser, "Twice")
    reason = await _failed_at_collect(superuser_engine, pack)
    assert reason == f"Declaration {alice.id} has 2 declaration.submitted audit entries."


async def test_a_pack_refuses_a_response_its_audit_trail_never_recorded(
    auth_app: Starlette,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
) -> None:
    """A submitted row written without its submission (no ``declaration.submitted`` entry)
    is not presented as a recipient's response, however well its own hash agrees."""
    owner = await firm_with_declarations(members, owner_sessions, 1, audited=False)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        body = await gql(client, GENERATE, {"i": {"title": "Unrecorded", **period()}}, owner)
    assert "errors" not in body, body
    reason = await _failed_at_collect(
        superuser_engine, body["data"]["generateEvidencePack"]["pack"]
    )
    assert reason.endswith(" has no verified declaration.submitted audit entry."), reason


async def _declaration_row(engine: AsyncEngine, declaration_id: str) -> Any:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select * from declarations where id = :id"), {"id": uuid.UUID(declaration_id)}
        )
        return rows.one()


async def test_a_pack_refuses_responses_when_a_rewrite_was_rechained_up_to_a_checkpoint(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """The response, its hash and its entry rewritten, and every later entry re-chained: each
    entry checks out until the signed checkpoint after them. The rewritten entry was read by
    then, but a chain that fails vouches for no response."""
    await signed_up(browser, smtp, firm="Rechained Records Ltd")
    alice = await submitted_declaration(browser, smtp, auth_app, "Alice Rechained")
    renamed = await browser.gql(RENAME, {"name": "Rechained Records Group Ltd"})
    assert "errors" not in renamed, renamed  # an entry after the submission's, then signed
    signed = await browser.gql(CHECKPOINT)
    assert "errors" not in signed, signed
    await _rewrite(superuser_engine, alice.id, entry_too=False)
    async with superuser_engine.connect() as conn:
        entry = (
            await conn.execute(
                text(
                    "select e.firm_id, e.seq, e.details, d.response_sha256 from audit_log e "
                    "join declarations d on d.id::text = e.target_id "
                    "where e.target_id = :id and e.action = 'declaration.submitted'"
                ),
                {"id": alice.id},
            )
        ).one()
    forged = {**entry.details, "response_sha256": entry.response_sha256.hex()}
    await rewrite(superuser_engine, entry.firm_id, [entry.seq], relink=True, forged=forged)
    pack = await generate(browser, "Rechained")
    shown = await _failed_at_collect(superuser_engine, pack)
    assert shown.startswith(
        f"Declaration {alice.id} cannot be shown: the audit trail does not verify (at seq "
    ), shown
