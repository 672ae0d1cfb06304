"""Firm-side writes a member could abuse, or that two at once could break: declaration mail
is limited per recipient of a firm and per firm, two template versions at once both land,
and a firm update that changes nothing leaves nothing on the permanent trail."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ratelimit import Policy
from tests.browser import Browser, codes, new_email, signed_up
from tests.declarations.test_firm_side import (
    BULK,
    CREATE_VERSION,
    REMIND,
    SEND,
    create,
    create_template,
    ok,
    question,
    template_input,
)
from tests.declarations.test_loop import FIT
from tests.firms.test_firms_graphql import UPDATE
from tests.mail.smtp import SmtpServer


async def test_one_recipient_gets_at_most_five_declaration_mails_an_hour_from_a_firm(
    browser: Browser, smtp: SmtpServer
) -> None:
    """A member reminding one address in a loop stops at the fifth mail (the send and four
    reminders); the refused reminder changes and records nothing."""
    await signed_up(browser, smtp, firm="Persistent Ltd")
    declaration = await create(browser, email=new_email())
    ok(await browser.gql(SEND, {"id": declaration["id"]}))
    for _ in range(4):
        ok(await browser.gql(REMIND, {"id": declaration["id"]}))
    refused = await browser.gql(REMIND, {"id": declaration["id"]})
    assert codes(refused) == ["RATE_LIMITED"]
    assert 1 <= refused["errors"][0]["extensions"]["retryAfter"] <= 3600


async def test_a_firms_declaration_mails_stop_at_its_limit_and_a_bulk_send_is_all_or_nothing(
    browser: Browser,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 an hour per firm (4 here, one used): a bulk send past what is left is refused
    whole, nothing made and nothing counted; one of more than the whole limit is refused as
    bad input, as it can never pass."""
    monkeypatch.setattr(
        Policy, "DECLARATION_MAILS_PER_FIRM", Policy("declaration_mails_per_firm_t", "4/hour")
    )
    await signed_up(browser, smtp, firm="Bulk Mailing Ltd")
    ok(await browser.gql(SEND, {"id": (await create(browser))["id"]}))
    emails = [new_email() for _ in range(5)]
    recipients = [{"name": f"R{n}", "email": email} for n, email in enumerate(emails)]
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients[:4]}})
    assert codes(body) == ["RATE_LIMITED"], body
    assert body["errors"][0]["extensions"]["retryAfter"] == 3600
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients}})
    assert codes(body) == ["BAD_USER_INPUT"], body
    async with superuser_engine.connect() as conn:
        made = await conn.scalar(
            text("select count(*) from declarations where recipient_email = any(:e)"),
            {"e": emails},
        )
    assert made == 0
    # The refused sends counted nothing: the firm's three left are all still there, for three.
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients[:3]}})
    assert "errors" not in body, body
    assert codes(await browser.gql(SEND, {"id": (await create(browser))["id"]})) == ["RATE_LIMITED"]


async def test_a_bulk_send_refused_for_one_recipient_counts_against_no_limit(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One mail an hour per recipient here: one address already had its mail, in a bulk of
    three. The bulk is refused, and neither the firm's limit nor the other two recipients'
    counted it: both still get theirs, and the firm its two more."""
    monkeypatch.setattr(
        Policy, "DECLARATION_MAILS_PER_FIRM", Policy("declaration_mails_per_firm_u", "3/hour")
    )
    monkeypatch.setattr(
        Policy,
        "DECLARATION_MAILS_PER_RECIPIENT",
        Policy("declaration_mails_per_recipient_u", "1/hour"),
    )
    await signed_up(browser, smtp, firm="Bulk Refused Ltd")
    busy, others = new_email(), [new_email(), new_email()]
    ok(await browser.gql(SEND, {"id": (await create(browser, email=busy))["id"]}))
    recipients = [{"name": f"R{n}", "email": e} for n, e in enumerate([*others, busy])]
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients}})
    assert codes(body) == ["RATE_LIMITED"], body
    again = [{"name": f"R{n}", "email": e} for n, e in enumerate(others)]
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": again}})
    assert "errors" not in body, body


async def test_a_bulk_naming_one_address_past_its_limit_is_refused_as_bad_input(
    browser: Browser, smtp: SmtpServer
) -> None:
    """Six mails to one address in one send can never pass its five an hour: refused as such
    (BAD_USER_INPUT), not with a time to try again."""
    await signed_up(browser, smtp, firm="Repeating Ltd")
    email = new_email()
    recipients = [{"name": f"R{n}", "email": email} for n in range(6)]
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients}})
    assert codes(body) == ["BAD_USER_INPUT"], body


async def test_spellings_of_one_mailbox_count_as_one_recipient(
    browser: Browser, smtp: SmtpServer
) -> None:
    """A +tag, a capital or (at Gmail) a dot reaches the same inbox: six such spellings in one
    send are refused as six mails to one address are, or a firm could send one inbox its
    whole 1,000 an hour, one spelling at a time."""
    await signed_up(browser, smtp, firm="Spelling Ltd")
    local, domain = new_email().split("@")
    spellings = [f"{local}+{n}@{domain}" for n in range(4)] + [f"{local.upper()}@{domain}"]
    recipients = [{"name": f"R{n}", "email": e} for n, e in enumerate(spellings)]
    ok(await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients}}))
    body = await browser.gql(SEND, {"id": (await create(browser, email=f"{local}@{domain}"))["id"]})
    assert codes(body) == ["RATE_LIMITED"], body
    gmail = [
        "j.doe.spelling",
        "jdoe.spelling+a",
        "jdoespelling",
        "JDoeSpelling",
        "j.d.o.e.spelling",
    ]
    gmail = [f"{name}@gmail.com" for name in gmail] + ["jdoespelling+b@gmail.com"]
    recipients = [{"name": f"G{n}", "email": e} for n, e in enumerate(gmail)]
    body = await browser.gql(BULK, {"i": {"templateId": str(FIT.id), "recipients": recipients}})
    assert codes(body) == ["BAD_USER_INPUT"], body


async def test_two_template_versions_at_once_both_land_one_after_the_other(
    browser: Browser, smtp: SmtpServer
) -> None:
    await signed_up(browser, smtp, firm="Versioning Ltd")
    template = await create_template(browser, "Versioned", question("q1", "short_text"))
    variables = {"t": template, "i": template_input("Versioned", question("q2", "short_text"))}
    both = await asyncio.gather(*(browser.gql(CREATE_VERSION, variables) for _ in range(2)))
    versions = sorted(ok(b)["createTemplateVersion"]["template"]["version"] for b in both)
    assert versions == [2, 3]


async def test_a_firm_update_that_changes_nothing_records_nothing(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Steady Ltd")
    assert "errors" not in await browser.gql(UPDATE, {"input": {"name": "Steadier Ltd"}})
    for _ in range(3):
        assert "errors" not in await browser.gql(UPDATE, {"input": {"name": "Steadier Ltd"}})
    async with superuser_engine.connect() as conn:
        updates = await conn.scalar(
            text(
                "select count(*) from audit_log a join firms f on f.id = a.firm_id "
                "where f.name = 'Steadier Ltd' and a.action = 'firm.updated'"
            )
        )
    assert updates == 1
