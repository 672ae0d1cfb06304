"""The product's core loop through HTTP: a firm sends a declaration, the recipient answers by
the emailed link, and the firm sees the response and the audit trail."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import unquote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.declarations.templates import load_builtins
from tests.browser import Browser, browser_for, codes, new_email, signed_up
from tests.mail.smtp import SmtpServer

LINK = re.compile(r"/respond#token=([^\s\"<]+)")
FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
CREATE = """mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id status templateVersion } } }"""
SEND = "mutation($id: UUID!) { sendDeclaration(id: $id) { declaration { id status } } }"
FORM = """query($t: String!) { recipientForm(token: $t) { firmName recipientName templateName
  attestation questions { id kind required explainIf choices } } }"""
SUBMIT = """mutation($t: String!, $i: SubmissionInput!) { submitDeclaration(token: $t, input: $i)
  { submittedAt responseSha256 } }"""
READ = """query($id: UUID!) { declaration(id: $id) { status openedAt submittedAt
  response { answers attestationAccepted signatureName submittedIp responseSha256 } } }"""


def valid_answers(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """A complete, valid set of answers for the form's questions."""
    answers: dict[str, Any] = {}
    for q in questions:
        kind = q["kind"]
        if kind == "YES_NO":
            answers[q["id"]] = q["explainIf"] != "yes"  # avoid triggering explanations
        elif kind == "CHOICE":
            answers[q["id"]] = q["choices"][0]
        elif kind == "DATE":
            answers[q["id"]] = "2026-01-31"
        elif kind == "MONEY":
            answers[q["id"]] = 100_000
        else:
            answers[q["id"]] = "A careful answer"
        if kind == "YES_NO" and q["explainIf"] == ("yes" if answers[q["id"]] else "no"):
            answers[f"{q['id']}_explanation"] = "Explained."
    return answers


async def sent_declaration(
    firm: Browser, smtp: SmtpServer, recipient_email: str, template_id: str = str(FIT.id)
) -> tuple[str, str]:
    """Create and send a declaration; return its id and the token from the emailed link."""
    body = await firm.gql(
        CREATE,
        {
            "i": {
                "templateId": template_id,
                "recipientName": "Pat Doe",
                "recipientEmail": recipient_email,
            }
        },
    )
    declaration_id = body["data"]["createDeclaration"]["declaration"]["id"]
    assert (await firm.gql(SEND, {"id": declaration_id}))["data"]["sendDeclaration"]["declaration"][
        "status"
    ] == "SENT"
    await smtp.wait_for(lambda _: bool(smtp.to(recipient_email)))
    text_body = smtp.to(recipient_email)[-1].get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(text_body)
    assert found, text_body
    return declaration_id, unquote(found.group(1))


async def test_create_send_open_submit_and_read_back_with_its_audit_trail(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Loop Advisers Ltd")
    recipient_email = new_email()
    declaration_id, token = await sent_declaration(browser, smtp, recipient_email)

    recipient = browser_for(auth_app)
    async with recipient.client:
        page = await recipient.client.get("/respond")  # a browser keeps the fragment
        assert page.status_code == 200
        assert 'new URLSearchParams(location.hash.slice(1)).get("token")' in page.text
        assert "nonce-" in page.headers["content-security-policy"]
        assert "input.idempotencyKey = attempt" in page.text  # so that its retry gets the receipt
        form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        assert (form["firmName"], form["recipientName"]) == ("Loop Advisers Ltd", "Pat Doe")
        assert form["templateName"] == FIT.spec.name
        assert (await browser.gql(READ, {"id": declaration_id}))["data"]["declaration"][
            "status"
        ] == "OPENED"
        answers = valid_answers(form["questions"])
        submission = {"answers": answers, "attestationAccepted": True, "signatureName": "Pat Doe"}
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in done, done
        receipt = done["data"]["submitDeclaration"]["responseSha256"]
        for _ in range(3):  # replayed: refused each time, on the record once (per hour)
            again = await recipient.gql(SUBMIT, {"t": token, "i": submission})
            assert codes(again) == ["TOKEN_USED"]

    # The recipient is emailed what was received, once: the receipt, never the answers.
    await smtp.wait_for(lambda _: len(smtp.to(recipient_email)) == 2)
    confirmation = smtp.to(recipient_email)[-1]
    assert confirmation["subject"] == f"Received: your {FIT.spec.name} for Loop Advisers Ltd"
    text_body = confirmation.get_body(preferencelist=("plain",)).get_content()
    assert f"Receipt (SHA-256 of your response): {receipt}" in text_body
    assert "/respond" not in text_body
    assert "A careful answer" in answers.values()
    assert "A careful answer" not in text_body
    html_body = confirmation.get_body(preferencelist=("html",)).get_content()
    assert receipt in html_body

    read = (await browser.gql(READ, {"id": declaration_id}))["data"]["declaration"]
    assert read["status"] == "SUBMITTED"
    assert read["response"]["answers"] == answers
    assert read["response"]["signatureName"] == "Pat Doe"
    assert read["response"]["responseSha256"] == receipt
    assert read["response"]["submittedIp"].startswith("127.")

    async with superuser_engine.connect() as conn:
        actions = (
            await conn.execute(
                text("select action, details from audit_log where target_id = :id order by seq"),
                {"id": declaration_id},
            )
        ).all()
    assert [a.action for a in actions] == [
        "declaration.created",
        "declaration.sent",
        "declaration.opened",
        "declaration.submitted",
        "declaration.token_refused",
    ]
    assert actions[3].details["response_sha256"] == receipt
    assert len(smtp.to(recipient_email)) == 2  # the replays sent nothing


async def test_twenty_concurrent_submissions_of_one_link_store_exactly_one_response(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    recipients = [browser_for(auth_app) for _ in range(20)]
    form = (await recipients[0].gql(FORM, {"t": token}))["data"]["recipientForm"]
    submission = {
        "answers": valid_answers(form["questions"]),
        "attestationAccepted": True,
        "signatureName": "Pat Doe",
    }
    results = await asyncio.gather(
        *(r.gql(SUBMIT, {"t": token, "i": submission}) for r in recipients)
    )
    for r in recipients:
        await r.client.aclose()
    outcomes = sorted("OK" if "errors" not in r else codes(r)[0] for r in results)
    assert outcomes == ["OK"] + ["TOKEN_USED"] * 19
    async with superuser_engine.connect() as conn:
        submitted = await conn.execute(
            text(
                "select count(*) from audit_log where target_id = :id "
                "and action = 'declaration.submitted'"
            ),
            {"id": declaration_id},
        )
        assert submitted.scalar_one() == 1
        stored = await conn.execute(
            text("select count(*) from declarations where id = :id and answers is not null"),
            {"id": declaration_id},
        )
        assert stored.scalar_one() == 1
