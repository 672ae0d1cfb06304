"""A counterparty answers through the same single-use link as a person: the firm sends the PI
cover form to a counterparty's contact, the contact answers once by the emailed link (a replay
is refused), and the counterparty's cover status follows the answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from starlette.applications import Starlette

from app.declarations.templates import load_builtins
from tests.browser import Browser, browser_for, codes, new_email, signed_up
from tests.declarations.test_loop import FORM, LINK, SEND, SUBMIT, valid_answers
from tests.mail.smtp import SmtpServer

PI_COVER = next(b for b in load_builtins() if b.key == "pi_cover")
COUNTERPARTY = """mutation($i: CounterpartyCreateInput!) { createCounterparty(input: $i) {
  counterparty { id } } }"""
CREATE = """mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) {
  declaration { id } } }"""
COVER = "query($id: UUID!) { counterparty(id: $id) { coverStatus { state until } } }"


async def test_a_counterparty_confirms_its_cover_once_by_its_link(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    await signed_up(browser, smtp, firm="Cover Loop Advisers Ltd")
    contact = new_email()
    body = await browser.gql(
        COUNTERPARTY, {"i": {"name": "Broker Ltd", "kind": "OTHER", "contactEmail": contact}}
    )
    counterparty = body["data"]["createCounterparty"]["counterparty"]["id"]
    body = await browser.gql(
        CREATE,
        {
            "i": {
                "templateId": str(PI_COVER.id),
                "recipientName": "Broker Ltd",
                "recipientEmail": contact,
                "counterpartyId": counterparty,
            }
        },
    )
    declaration = body["data"]["createDeclaration"]["declaration"]["id"]
    assert "errors" not in await browser.gql(SEND, {"id": declaration})
    await smtp.wait_for(lambda _: bool(smtp.to(contact)))
    mail = smtp.to(contact)[-1].get_body(preferencelist=("plain",)).get_content()
    found = LINK.search(mail)
    assert found, mail
    token = unquote(found.group(1))
    assert (await browser.gql(COVER, {"id": counterparty}))["data"]["counterparty"][
        "coverStatus"
    ] == {"state": "UNKNOWN", "until": None}

    today = datetime.now(UTC).date()
    until = (today + timedelta(days=200)).isoformat()
    recipient = browser_for(auth_app)
    async with recipient.client:
        form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        answers = {
            **valid_answers(form["questions"]),
            "period_start": today.isoformat(),
            "period_end": until,
        }
        submission = {"answers": answers, "attestationAccepted": True, "signatureName": "Jo Roe"}
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in done, done
        assert codes(await recipient.gql(SUBMIT, {"t": token, "i": submission})) == ["TOKEN_USED"]
        assert codes(await recipient.gql(FORM, {"t": token})) == ["TOKEN_USED"]
    assert (await browser.gql(COVER, {"id": counterparty}))["data"]["counterparty"][
        "coverStatus"
    ] == {"state": "COVERED", "until": until}
