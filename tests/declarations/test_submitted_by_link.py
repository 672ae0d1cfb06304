"""Only a declaration's live link submits it (migration 0013): the app role, whatever code it
runs, can neither create a declaration already answered nor answer one without its live link;
the owner (migrations, an import of earlier records) still can. Every statement here is rolled
back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
        "id, firm_id, template_id, template_version, template_snapshot, recipient_name, "
        "recipient_email, status, created_at, reminder_count"
    )
    values = (
        "gen_random_uuid(), firm_id, template_id, template_version, template_snapshot, "
        f"recipient_name, recipient_email, '{status}', now(), 0"
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


async def test_the_app_role_submits_only_through_a_live_link(
    sent: tuple[uuid.UUID, str, str], app_sessions: Sessions, owner_sessions: Sessions
) -> None:
    firm, declaration_id, draft_id = sent
    live = _submit(declaration_id)
    refused = {
        "a draft, never sent": (_submit(draft_id),),
        "a revoked link": (
            f"update declarations set status = 'revoked' where id = '{declaration_id}'",
            live,
        ),
        "an expired link": (
            "update declarations set token_expires_at = now() - interval '1 second' "
            f"where id = '{declaration_id}'",
            live,
        ),
        "another link": (_submit(declaration_id, token_hash="sha256('another')"),),
        "no answers": (_submit(declaration_id, answers="null"),),
        "no receipt": (_submit(declaration_id, response_sha256="null"),),
        "no time": (_submit(declaration_id, submitted_at="null"),),
        "no attestation": (_submit(declaration_id, attestation_accepted="false"),),
    }
    for case, statements in refused.items():
        assert NO_LINK in await _refusal(app_sessions, firm, *statements), case
    # What the recipient's submission writes, on its live link, is allowed; so is any of it to
    # the owner.
    assert await _changed(app_sessions, firm, live) == 1
    assert await _changed(owner_sessions, firm, _submit(draft_id)) == 1
