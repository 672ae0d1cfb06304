"""A mail from our address says only what we wrote in its headers, and goes only where its
row says. The email package reads an RFC 2047 encoded word in a header it is given and decodes
it, CR LF and all (on CPython before 3.11.10 it then writes them out raw): a firm named
"=?utf-8?q?Acme=0D=0AReply-To:...?=" passed every check of its name and wrote its own headers,
and the top of the body, into the invitations and requests it sent. And mail reads a display
name, a comment or a second address in "To": "x<a@b.co>" and "a(1)@b.co" reached a@b.co while
counted apart from it (past the per-address limit), "someone,a@b.co" reached another mailbox."""

from __future__ import annotations

import random
import uuid
from email import policy
from email.utils import parseaddr
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.schemas import Email
from app.db.tenant import transaction
from app.mail import outbox
from app.mail.outbox import Mail, enqueue
from app.mail.transport import Unsendable, build_message
from tests.browser import SIGN_UP, Browser, codes, new_email, signed_up
from tests.declarations.test_firm_side import CREATE, REMIND, form, submission
from tests.declarations.test_loop import FIT, SUBMIT, sent_declaration, valid_answers
from tests.mail.smtp import SmtpServer

DECLARATION = {"templateId": str(FIT.id), "recipientName": "Pat Doe"}
INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
UPDATE_FIRM = "mutation($input: FirmUpdateInput!) { updateFirm(input: $input) { firm { name } } }"
INJECTING = (
    "=?utf-8?q?Acme=0D=0AReply-To:_ceo=40evil=2Etest=0D=0AX-Injected:_yes"
    "=0D=0A=0D=0AYour_account_is_locked?="
)


async def test_a_firm_name_holding_an_encoded_word_is_refused(browser: Browser) -> None:
    variables = {"input": {"email": new_email(), "password": None, "firmName": INJECTING}}
    assert codes(await browser.gql(SIGN_UP, variables)) == ["BAD_USER_INPUT"]


async def test_a_name_held_from_before_adds_no_header_to_the_mail_it_names(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    assert codes(await browser.gql(UPDATE_FIRM, {"input": {"name": INJECTING}})) == [
        "BAD_USER_INPUT"
    ]
    firm_id = (await browser.gql("{ firm { id } }"))["data"]["firm"]["id"]
    async with superuser_engine.begin() as conn:  # as a name stored before it was refused
        await conn.execute(
            text("update firms set name = :n where id = :f"), {"n": INJECTING, "f": firm_id}
        )
    invitee = new_email()
    invited = await browser.gql(INVITE, {"input": {"email": invitee, "role": "MEMBER"}})
    assert "errors" not in invited, invited
    await smtp.wait_for(lambda _: bool(smtp.to(invitee)))
    [message] = smtp.to(invitee)
    assert message["X-Injected"] is None, message.as_string()[:600]
    assert message["Reply-To"] is None
    assert message["Subject"].startswith("You are invited to = ?utf-8?q?Acme=0D=0AReply-To")


@pytest.mark.parametrize(
    "address",
    [
        "x1<victim@example.com>",
        "victim(1)@example.com",
        "someone,victim@example.com",
        "a=?utf-8?q?=0d=0ab?=@example.com",
        # Whole in quotes: the header reads a local part with no domain, as written; SMTP's
        # envelope (parseaddr) delivers it to victim@example.com, counted apart from it.
        '"victim@example.com"',
        '"v.ictim@gmail.com"',
    ],
)
async def test_an_address_is_one_address_on_its_own(
    browser: Browser, smtp: SmtpServer, address: str
) -> None:
    variables = {"input": {"email": address, "password": None, "firmName": "Bomb Ltd"}}
    assert codes(await browser.gql(SIGN_UP, variables)) == ["BAD_USER_INPUT"]
    await signed_up(browser, smtp)
    body = await browser.gql(CREATE, {"i": {**DECLARATION, "recipientEmail": address}})
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert [f["field"] for f in body["errors"][0]["extensions"]["fields"]] == ["recipientEmail"]


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("someone,bob@example.test", "Confirm your email address"),
        ("x<bob@example.test>", "Confirm your email address"),
        ('"bob@example.test"', "Confirm your email address"),
        ("bob@example.test", INJECTING),
    ],
)
async def test_the_outbox_refuses_a_header_mail_reads_otherwise(
    app_sessions: async_sessionmaker[AsyncSession], to: str, subject: str
) -> None:
    async with transaction(app_sessions) as session:
        with pytest.raises(ValueError, match="read by mail as it is written"):
            await enqueue(session, bytes(32), to=to, subject=subject, text="t", html="<p>t</p>")


def test_a_message_queued_before_is_never_built() -> None:
    """Queued before the outbox refused it, such a mail is given up at once, never sent."""
    for to, subject in [
        ("bob@example.test", INJECTING),
        ("someone,bob@example.test", "Hi"),
        ('"bob@example.test"', "Hi"),  # the envelope would deliver it to bob@example.test
    ]:
        mail = Mail(uuid.uuid4(), to, subject, "t", "<p>t</p>")
        with pytest.raises(Unsendable):
            build_message(mail, "CoverProof <no-reply@coverproof.test>")


LEGACY = '"pat"@example.test'  # a quoted local part: accepted before, mail reads it as pat@


async def _stored_as(superuser: AsyncEngine, declaration_id: str, email: str) -> None:
    async with superuser.begin() as conn:  # as an address stored before it was refused
        await conn.execute(
            text("update declarations set recipient_email = :e where id = :d"),
            {"e": email, "d": declaration_id},
        )


async def test_a_recipient_stored_before_submits_without_a_receipt(
    browser: Browser, new_browser: Any, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """The submission stands: the outbox refusing its receipt rolled it back, answered 500,
    however often the recipient tried again."""
    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    await _stored_as(superuser_engine, declaration_id, LEGACY)
    recipient = new_browser()
    questions = (await form(recipient, token))["questions"]
    body = await recipient.gql(SUBMIT, {"t": token, "i": submission(valid_answers(questions))})
    assert "errors" not in body, body


async def test_mail_to_a_recipient_stored_before_is_refused_as_bad_input(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    declaration_id, _ = await sent_declaration(browser, smtp, new_email())
    await _stored_as(superuser_engine, declaration_id, LEGACY)
    reminded = await browser.gql(REMIND, {"id": declaration_id})
    assert codes(reminded) == ["BAD_USER_INPUT"], reminded
    assert "cannot be mailed" in reminded["errors"][0]["message"]
    assert "Revoke this declaration" in reminded["errors"][0]["message"]


def test_a_plain_address_is_read_as_the_email_package_reads_it() -> None:
    """as_mail_reads answers a plain address without the email package's parser: for every
    address of that form, over a seeded spread of them and its edges, the parser agrees."""
    rng = random.Random(20261201)  # noqa: S311 (reproducible addresses, not secrets)
    atext, labels = "abcXYZ0189_+-", "abQ09-"

    def run(chars: str, low: int, high: int) -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))

    addresses = [
        ".".join(run(atext, 1, 6) for _ in range(rng.randint(1, 3)))
        + "@"
        + ".".join(run(labels, 1, 5) for _ in range(rng.randint(2, 4)))
        for _ in range(3000)
    ]
    addresses += ["-@-.-", "+@a.b", "_._@0.0", "a+b+c@x-y.example", "A.B@EXAMPLE.COM"]
    for address in addresses:
        assert outbox._PLAIN_ADDRESS.fullmatch(address), address
        assert str(policy.default.header_factory("To", address)) == address
        assert outbox.as_mail_reads("To", address) == address
        assert parseaddr(address)[1] == address  # and SMTP's envelope takes it as written
    # Anything else is left to the parser: a display name, a quoted local part, a comment.
    for other in ("Pat <p@example.test>", '"p q"@example.test', "p(1)@example.test"):
        assert not outbox._PLAIN_ADDRESS.fullmatch(other)


# Each matches the address pattern (something@something.something); the email package's
# parser raised AttributeError on them, which was answered INTERNAL_SERVER_ERROR, to anyone
# (found by a second review).
UNREADABLE = [":@;.-", "'@[.'", ".:@`.*", "a:b@c;d.e"]


@pytest.mark.parametrize("address", UNREADABLE)
async def test_an_address_the_email_package_cannot_read_is_bad_input(
    browser: Browser, address: str
) -> None:
    assert not outbox.one_address(address)
    assert outbox.as_mail_reads("To", address) is None
    variables = {"input": {"email": address, "password": None, "firmName": "Odd Ltd"}}
    assert codes(await browser.gql(SIGN_UP, variables)) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    "address",
    [
        "user@münchen.de",
        "jörg@example.de",
        "o'brien@example.com",
        "a+tag@example.com",
        "x@example.photography",
        "用户@例子.广告",
        "дмитрий@пример.рф",
        "अजय@डाटा.भारत",
        "josé.garcía@example.es",
        "a@xn--mnchen-3ya.de",
        "a!b#c$d%e&f*g/h=i?j^k`l{m|n}o~p@example.com",
        "a@[127.0.0.1]",
    ],
)
def test_an_address_mail_delivers_as_written_is_taken(address: str) -> None:
    assert outbox.one_address(address)
    assert TypeAdapter(Email).validate_python(address) == address.lower()
