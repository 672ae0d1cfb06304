"""The cover a pack prints is read from the counterparty's PI cover confirmations, in the pack or
not: each is checked against its receipt as the pack's own responses are. A confirmation whose
policy end was rewritten past the trigger failed a pack that held it, but a pack of the same
counterparty for an earlier period (the confirmation not in it) printed the rewritten end, as
cover, under the pack's signature."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.browser import Browser, browser_for, new_email, signed_up
from tests.counterparties.test_counterparty_loop import COUNTERPARTY, CREATE, PI_COVER
from tests.declarations.test_firm_side import link_in
from tests.declarations.test_loop import FORM, SEND, SUBMIT, valid_answers
from tests.evidence.support import generate
from tests.mail.smtp import SmtpServer


async def _confirmed_cover(
    browser: Browser, smtp: SmtpServer, app: Starlette, until: str
) -> tuple[str, str]:
    """A counterparty whose contact confirmed PI cover from today to ``until``."""
    contact = new_email()
    made = {"name": "Broker Ltd", "kind": "OTHER", "contactEmail": contact}
    counterparty = (await browser.gql(COUNTERPARTY, {"i": made}))["data"]["createCounterparty"][
        "counterparty"
    ]["id"]
    asked = {
        "templateId": str(PI_COVER.id),
        "recipientName": "Broker Ltd",
        "recipientEmail": contact,
        "counterpartyId": counterparty,
    }
    declaration = (await browser.gql(CREATE, {"i": asked}))["data"]["createDeclaration"][
        "declaration"
    ]["id"]
    assert "errors" not in await browser.gql(SEND, {"id": declaration})
    await smtp.wait_for(lambda _: bool(smtp.to(contact)))
    token = link_in(smtp.to(contact)[-1])
    today = datetime.now(UTC).date().isoformat()
    recipient = browser_for(app)
    async with recipient.client:
        form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        answers = {**valid_answers(form["questions"]), "period_start": today, "period_end": until}
        submission = {"answers": answers, "attestationAccepted": True, "signatureName": "Jo Roe"}
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in done, done
    return counterparty, declaration


async def test_a_pack_prints_no_cover_from_a_confirmation_that_no_longer_matches_its_hash(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Cover Tamper Ltd")
    today = datetime.now(UTC).date()
    counterparty, declaration = await _confirmed_cover(
        browser, smtp, auth_app, (today + timedelta(days=20)).isoformat()
    )
    forged = (today + timedelta(days=3000)).isoformat()
    async with superuser_engine.begin() as conn:  # past the trigger, as only an owner could
        await conn.execute(text("alter table declarations disable trigger user"))
        await conn.execute(
            text(
                "update declarations set answers = jsonb_set(answers, '{period_end}', "
                "to_jsonb(cast(:d as text))) where id = :id"
            ),
            {"d": forged, "id": uuid.UUID(declaration)},
        )
        await conn.execute(text("alter table declarations enable trigger user"))
    last_year = today - timedelta(days=365)
    earlier = {"from": (last_year - timedelta(days=10)).isoformat(), "to": last_year.isoformat()}
    pack = await generate(browser, "Cover only", **earlier, counterpartyIds=[counterparty])
    assert pack["status"] == "FAILED", pack
    assert declaration in pack["failureReason"], pack
