"""A declaration moves only as the app moves it, and only its live link submits it (migration
0013): the app role, whatever code it runs, can neither create a declaration already sent or
answered, nor move one any other way, nor answer one without its live link; the owner
(migrations, an import of earlier records) still can. Every statement here is rolled back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tenant import bind_tenant
from tests.audit.test_tamper import _refusal
from tests.browser import Browser, new_email, signed_up
from tests.declarations.test_firm_side import firm_of
from tests.declarations.test_loop import CREATE, FIT, sent_declaration
from tests.evidence.test_final import _changed
from tests.mail.smtp import SmtpServer

Sessions = async_sessionmaker[AsyncSession]
ANSWERED = {
    "status": "'submitted'",
    "answers": "'{}'",
    "attestation_accepted": "true",
    "signature_name": "'Forger'",
    "submitted_at": "now()",
    "response_sha256": "sha256('forged')",
}
AS_DRAFT = "must be created as a draft"
NO_LINK = "can be submitted only through its live link"


def _submit(declaration_id: str, **changed: str) -> str:
    """The update a submission makes (``changed`` replacing some of its values)."""
    values = ", ".join(f"{column} = {value}" for column, value in {**ANSWERED, **changed}.items())
    return f"update declarations set {values} where id = '{declaration_id}'"


def _copy(source: str, status: str, answered: bool) -> str:
    """An insert of a new declaration made from ``source``'s, in ``status``."""
    columns = (
        "id, firm_id, template_id, template_version, template_snapshot, form_key, "
        "recipient_name, recipient_email, status, created_at, reminder_count"
    )
    values = (
        "gen_random_uuid(), firm_id, template_id, template_version, template_snapshot, "
        f"form_key, recipient_name, recipient_email, '{status}', now(), 0"
    )
    if answered:
        columns += ", answers, attestation_accepted, signature_name, submitted_at, response_sha256"
        values += ", '{}', true, 'Forger', now(), sha256('forged')"
    return (
        f"insert into declarations ({columns}) select {values} from declarations "
        f"where id = '{source}'"
    )


@pytest.fixture
async def sent(browser: Browser, smtp: SmtpServer) -> tuple[uuid.UUID, str, str]:
    """(the firm, a sent declaration, a draft)."""
    await signed_up(browser, smtp, firm="Live Links Ltd")
    declaration_id, _ = await sent_declaration(browser, smtp, new_email())
    recipient = {"recipientName": "Pat Draft", "recipientEmail": new_email()}
    made = await browser.gql(CREATE, {"i": {"templateId": str(FIT.id), **recipient}})
    assert "errors" not in made, made
    draft_id = made["data"]["createDeclaration"]["declaration"]["id"]
    return uuid.UUID((await firm_of(browser))["id"]), declaration_id, draft_id


@pytest.mark.parametrize(
    ("status", "answered"), [("submitted", True), ("sent", False), ("draft", True)]
)
async def test_the_app_role_creates_declarations_only_as_drafts(
    sent: tuple[uuid.UUID, str, str],
    app_sessions: Sessions,
    owner_sessions: Sessions,
    status: str,
    answered: bool,
) -> None:
    firm, declaration_id, _ = sent
    forged = _copy(declaration_id, status, answered)
    assert AS_DRAFT in await _refusal(app_sessions, firm, forged)
    assert await _changed(owner_sessions, firm, forged) == 1  # an import of earlier records
    assert await _changed(app_sessions, firm, _copy(declaration_id, "draft", False)) == 1


async def test_the_app_role_moves_declarations_only_as_the_app_does(
    sent: tuple[uuid.UUID, str, str], app_sessions: Sessions
) -> None:
    firm, declaration_id, draft_id = sent
    where = f"where id = '{declaration_id}'"
    revoke = f"update declarations set status = 'revoked', token_hash = null {where}"
    refused = {
        "a revoked one revived": (
            revoke,
            f"update declarations set status = 'sent', token_hash = sha256('new') "
            f"where id = '{declaration_id}'",
            "cannot go from revoked to sent",
        ),
        "a sent one back to draft": (
            f"update declarations set status = 'draft' where id = '{declaration_id}'",
            "cannot go from sent to draft",
        ),
        "a draft opened": (
            f"update declarations set status = 'opened' where id = '{draft_id}'",
            "cannot go from draft to opened",
        ),
        "answers before a submission": (
            f"update declarations set answers = '{{}}' where id = '{declaration_id}'",
            "can hold answers only once submitted",
        ),
        "a receipt before a submission": (
            f"update declarations set response_sha256 = sha256('x') where id = '{declaration_id}'",
            "can hold answers only once submitted",
        ),
        "a link on a draft": (
            f"update declarations set token_hash = sha256('x') where id = '{draft_id}'",
            "has a link only while sent or opened",
        ),
    }
    for case, (*statements, reason) in refused.items():
        assert reason in await _refusal(app_sessions, firm, *statements), case
    # What the app does is allowed: open, revoke, and a new link for a live declaration.
    for allowed in (
        f"update declarations set status = 'opened', opened_at = now() {where}",
        revoke,
        f"update declarations set token_hash = sha256('new') where id = '{declaration_id}'",
    ):
        assert await _changed(app_sessions, firm, allowed) == 1, allowed


KEPT = "keeps the form, recipient and dates it was made with"


async def test_the_app_role_never_changes_what_a_declaration_asks_or_of_whom(
    sent: tuple[uuid.UUID, str, str], app_sessions: Sessions, owner_sessions: Sessions
) -> None:
    """Migration 0032: the form a recipient answers (its template, version and snapshot), the
    recipient, the counterparty and the dates stay as the declaration was made, sent or draft;
    a link's expiry moves later only with a new link (an expired link is not revived); and no
    template version is rewritten. The owner (an import of earlier records) still may. Since
    0036 the form is the firm's, by hash: the declaration names no other, and takes no copy
    of its own, and no form is rewritten or removed."""
    firm, declaration_id, draft_id = sent
    refused = {
        "another form": ("form_key = sha256('another form')", KEPT),
        "a copy of its own": (
            "template_snapshot = (select snapshot from declaration_forms limit 1)",
            KEPT,
        ),
        "the form's version": ("template_version = 99", KEPT),
        "the recipient's address": ("recipient_email = 'someone.else@example.test'", KEPT),
        "the recipient's name": ("recipient_name = 'Someone Else'", KEPT),
        "the due date": ("due_date = '2099-01-01'", KEPT),
        "the link's days": ("link_days = 90", KEPT),
        "the link's expiry alone": (
            "token_expires_at = now() + interval '10 years'",
            "moves its link's expiry later only with a new link",
        ),
    }
    for case, (change, reason) in refused.items():
        for ident in (declaration_id, draft_id):
            if ident == draft_id and reason != KEPT:
                continue  # a draft has no link
            statement = f"update declarations set {change} where id = '{ident}'"
            assert reason in await _refusal(app_sessions, firm, statement), (case, ident)
    fields = refused["the recipient's address"][0]
    owner_change = f"update declarations set {fields} where id = '{declaration_id}'"
    assert await _changed(owner_sessions, firm, owner_change) == 1
    new_link = (
        "update declarations set token_hash = sha256('new'), "
        f"token_expires_at = now() + interval '1 day' where id = '{declaration_id}'"
    )
    assert await _changed(app_sessions, firm, new_link) == 1
    # Nor in two steps: a stand-in link with a later expiry, then the first link put back.
    async with app_sessions() as session:
        await session.begin()
        await bind_tenant(session, firm, None)
        first = await session.scalar(
            text("select token_hash from declarations where id = :i"), {"i": declaration_id}
        )
        await session.rollback()
    stand_in = (
        "update declarations set token_hash = sha256('interim'), "
        f"token_expires_at = now() + interval '10 years' where id = '{declaration_id}'"
    )
    put_back = (
        f"update declarations set token_hash = '\\x{first.hex()}'::bytea "
        f"where id = '{declaration_id}'"
    )
    refused = await _refusal(app_sessions, firm, stand_in, put_back)
    assert "may not take back a retired link" in refused
    rewrite = "update template_versions set attestation = 'Other'"
    assert "permission denied" in await _refusal(app_sessions, firm, rewrite)
    for statement in (
        "update declaration_forms set snapshot = jsonb_set(snapshot, '{attestation}', '\"O\"')",
        "delete from declaration_forms",
    ):
        assert "permission denied" in await _refusal(app_sessions, firm, statement), statement


async def test_the_app_role_submits_only_through_a_live_link(
    sent: tuple[uuid.UUID, str, str], app_sessions: Sessions, owner_sessions: Sessions
) -> None:
    firm, declaration_id, draft_id = sent
    live = _submit(declaration_id)
    refused = {
        "a draft, never sent": (_submit(draft_id), "cannot go from draft to submitted"),
        "a revoked link": (
            f"update declarations set status = 'revoked', token_hash = null "
            f"where id = '{declaration_id}'",
            live,
            "cannot go from revoked to submitted",
        ),
        "an expired link": (
            "update declarations set token_expires_at = now() - interval '1 second' "
            f"where id = '{declaration_id}'",
            live,
            NO_LINK,
        ),
        "another link": (_submit(declaration_id, token_hash="sha256('another')"), NO_LINK),
        "a longer link": (  # refused by 0032 first (a later expiry without a new link)
            _submit(declaration_id, token_expires_at="now() + interval '1 year'"),
            "moves its link's expiry later only with a new link",
        ),
        "no answers": (_submit(declaration_id, answers="null"), NO_LINK),
        "no receipt": (_submit(declaration_id, response_sha256="null"), NO_LINK),
        "no time": (_submit(declaration_id, submitted_at="null"), NO_LINK),
        "backdated": (_submit(declaration_id, submitted_at="now() - interval '1 hour'"), NO_LINK),
        "postdated": (_submit(declaration_id, submitted_at="now() + interval '1 hour'"), NO_LINK),
        "no attestation": (_submit(declaration_id, attestation_accepted="false"), NO_LINK),
    }
    for case, (*statements, reason) in refused.items():
        assert reason in await _refusal(app_sessions, firm, *statements), case
    # What the recipient's submission writes, on its live link, is allowed; so is any of it to
    # the owner.
    assert await _changed(app_sessions, firm, live) == 1
    assert await _changed(owner_sessions, firm, _submit(draft_id)) == 1
