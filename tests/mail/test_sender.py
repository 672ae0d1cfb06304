"""Delivery over a real SMTP server (aiosmtpd): sent once accepted, retried with backoff."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import ConfigError
from app.mail.models import MailOutbox
from app.mail.outbox import Mail
from app.mail.sender import GAVE_UP, GIVE_UP_AFTER, MailSender, _refused_for_good, backoff
from app.mail.transport import build_message, smtp_transport
from tests.conftest import Database, make_settings
from tests.mail.helpers import enqueue_committed, new_address, outbox_row
from tests.mail.smtp import SmtpServer, free_port

FROM = "CoverProof <no-reply@coverproof.test>"


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain is not html
    return plain.get_content(), html.get_content()


async def make_due(superuser_engine: AsyncEngine, mail_id: object, **values: object) -> None:
    """Rewrite a row as the superuser (the app role cannot backdate its own retries)."""
    async with superuser_engine.begin() as conn:
        await conn.execute(
            update(MailOutbox)
            .where(MailOutbox.id == mail_id)
            .values(next_attempt_at=func.now(), **values)
        )


async def test_committed_mail_is_delivered_once_and_its_body_erased(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url, mail_from=FROM)
    to = new_address()
    mail_id = await enqueue_committed(app_sessions, settings, to, subject="Confirm your email")
    sender = MailSender(app_sessions, settings)

    assert await sender.deliver_due() >= 1
    await sender.deliver_due()  # a second pass finds nothing of ours to send

    [message] = smtp_server.to(to)
    assert message["From"] == FROM
    assert message["To"] == to
    assert message["Subject"] == "Confirm your email"
    assert message["Message-ID"] == f"<{mail_id}@coverproof.test>"
    text, html = parts(message)
    assert "https://testserver/verify?token=tok-" in text
    assert '<a href="https://testserver/verify?token=tok-' in html
    envelope = next(r for r in smtp_server.received if to in r.rcpt_tos)
    assert envelope.mail_from == "no-reply@coverproof.test"
    row = await outbox_row(app_sessions, mail_id)
    assert row.sent_at is not None
    assert row.body is None
    assert (row.attempts, row.last_error) == (0, None)


async def test_a_down_server_is_retried_with_backoff_then_delivered(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = make_settings(database, tmp_path, smtp_url=f"smtp+insecure://127.0.0.1:{free_port()}")
    to = new_address()
    mail_id = await enqueue_committed(app_sessions, down, to)

    with caplog.at_level(logging.WARNING, logger="coverproof.mail"):
        assert await MailSender(app_sessions, down).deliver_due() == 0
    row = await outbox_row(app_sessions, mail_id)
    assert row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("SMTPConnect")
    assert row.sent_at is None
    assert row.body is not None
    assert row.next_attempt_at > datetime.now(UTC)
    assert not any("token=" in r.getMessage() for r in caplog.records)

    # Not due yet: a pass leaves it alone.
    up = make_settings(
        database, tmp_path, smtp_url=smtp_server.url, secret_key=down.resolved_secret_key()
    )
    await MailSender(app_sessions, up).deliver_due()
    assert smtp_server.to(to) == []

    await make_due(superuser_engine, mail_id)
    assert await MailSender(app_sessions, up).deliver_due() >= 1
    assert len(smtp_server.to(to)) == 1
    row = await outbox_row(app_sessions, mail_id)
    assert row.sent_at is not None
    assert row.body is None
    assert row.attempts == 1


async def test_mail_the_server_refuses_is_not_marked_sent(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    mail_id = await enqueue_committed(app_sessions, settings, new_address())
    smtp_server.refuse("451 4.3.0 Try again later")

    assert await MailSender(app_sessions, settings).deliver_due() == 0

    row = await outbox_row(app_sessions, mail_id)
    assert row.sent_at is None
    assert row.body is not None
    assert row.attempts == 1
    assert row.last_error is not None
    assert row.last_error.startswith("SMTPDataError")
    assert "Try again later" in row.last_error


async def test_mail_the_server_refuses_for_good_is_parked_at_once(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 5xx for the message (a mailbox that does not exist) will be the answer every time:
    retried hourly for five days, on a connection each, it hurt our standing with the server.
    A 4xx is tried again (the test above)."""
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    mail_id = await enqueue_committed(app_sessions, settings, new_address())
    smtp_server.refuse("550 5.1.1 Mailbox does not exist")
    with caplog.at_level(logging.ERROR, logger="coverproof.mail"):
        assert await MailSender(app_sessions, settings).deliver_due() == 0
    row = await outbox_row(app_sessions, mail_id)
    assert (row.sent_at, row.attempts, row.next_attempt_at) == (None, 1, GAVE_UP)
    assert row.last_error is not None
    assert "550" in row.last_error
    assert [r.levelname for r in caplog.records if "giving up" in r.getMessage()] == ["ERROR"]


@pytest.mark.parametrize(
    "reply",
    [
        "552 5.2.2 Mailbox full, try again later",
        "550 5.4.5 Daily user sending quota exceeded",
        "550 5.7.26 Unauthenticated email is not accepted (DMARC)",
        "554 Transaction failed",
    ],
)
async def test_a_5xx_that_may_pass_or_is_about_the_sender_is_tried_again(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
    reply: str,
) -> None:
    """A full mailbox empties; a quota, or our domain's authentication, is ours to mend, and
    every mail would be parked meanwhile. Only a 5.1.x (no such mailbox) or 5.6.x (content)
    refusal, or a bare 550, 551 or 553, is for good."""
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    mail_id = await enqueue_committed(app_sessions, settings, new_address())
    smtp_server.refuse(reply)
    assert await MailSender(app_sessions, settings).deliver_due() == 0
    row = await outbox_row(app_sessions, mail_id)
    assert row.attempts == 1
    assert row.next_attempt_at != GAVE_UP, row.last_error


async def test_a_pass_sends_over_one_connection_and_a_refusal_fails_alone(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    """One SMTP handshake (a TLS one, in production) for all a pass sends, not one per
    message; a message the server refuses fails alone, and the rest of the pass goes on."""
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    sender = MailSender(app_sessions, settings)
    await sender.deliver_due()  # whatever earlier tests left due
    addresses = [new_address() for _ in range(3)]
    for to in addresses:
        await enqueue_committed(app_sessions, settings, to)
    assert await sender.deliver_due() == 3
    delivered = [r for r in smtp_server.received if r.rcpt_tos[0] in addresses]
    assert len(delivered) == 3
    assert len({r.peer for r in delivered}) == 1

    refused, *accepted = [new_address() for _ in range(3)]
    ids = {to: await enqueue_committed(app_sessions, settings, to) for to in (refused, *accepted)}
    smtp_server.refuse("451 4.3.0 Try again later", times=1)
    assert await sender.deliver_due() == 2
    failed = [
        to
        for to, mail_id in ids.items()
        if (await outbox_row(app_sessions, mail_id)).sent_at is None
    ]
    assert failed == [refused]  # the first of the pass, refused; the others sent after it
    later = [r for r in smtp_server.received if r.rcpt_tos[0] in accepted]
    assert len(later) == 2
    assert len({r.peer for r in later}) == 1


async def test_a_connection_the_server_dropped_between_messages_is_opened_again(
    smtp_server: SmtpServer,
) -> None:
    """A server may close a connection kept open between messages (an idle timeout, a
    restart): the next message goes over a fresh one instead of failing an attempt."""
    connection = smtp_transport(smtp_server.url).connection()
    mails = [Mail(uuid.uuid4(), new_address(), "Subject", "Text", "<p>HTML</p>") for _ in range(2)]
    async with connection:
        await connection.send(build_message(mails[0], FROM), mails[0])
        smtp_server.restart()  # drops the connection the client holds
        await connection.send(build_message(mails[1], FROM), mails[1])
    peers = [r.peer for m in mails for r in smtp_server.received if m.to in r.rcpt_tos]
    assert len(peers) == 2
    assert peers[0] != peers[1]


async def test_a_down_server_is_tried_for_days_then_the_row_is_parked(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """However many attempts an outage charged it (every row of a pass is charged one), a mail
    is tried again until it has waited GIVE_UP_AFTER: ten attempts, four hours, lost all mail
    queued before an outage that long. Then it is parked, and says so at ERROR."""
    down = make_settings(database, tmp_path, smtp_url=f"smtp+insecure://127.0.0.1:{free_port()}")
    mail_id = await enqueue_committed(app_sessions, down, new_address())
    sender = MailSender(app_sessions, down)
    await make_due(superuser_engine, mail_id, attempts=50)
    await sender.deliver_due()
    row = await outbox_row(app_sessions, mail_id)
    assert row.attempts == 51
    assert row.next_attempt_at != GAVE_UP

    aged = datetime.now(UTC) - GIVE_UP_AFTER - timedelta(minutes=1)
    await make_due(superuser_engine, mail_id, created_at=aged)
    with caplog.at_level(logging.ERROR, logger="coverproof.mail"):
        await sender.deliver_due()

    row = await outbox_row(app_sessions, mail_id)
    assert row.attempts == 52
    assert row.sent_at is None
    assert row.last_error is not None
    assert row.next_attempt_at == GAVE_UP
    assert [r.levelname for r in caplog.records if "giving up" in r.getMessage()] == ["ERROR"]


def test_backoff_doubles_from_30_seconds_up_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]


@pytest.mark.parametrize(
    ("column", "value"),
    [("to_address", "attacker@example.test"), ("subject", "URGENT: your account is locked")],
)
async def test_a_row_rewritten_in_the_queue_is_never_sent(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    superuser_engine: AsyncEngine,
    smtp_server: SmtpServer,
    column: str,
    value: str,
) -> None:
    """The body is sealed with its row's id, recipient and subject: a pending mail, with its
    live link, is not sent to another address, nor under a subject someone with the database
    wrote (it is in clear in its column)."""
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    to = new_address()
    mail_id = await enqueue_committed(app_sessions, settings, to)
    await make_due(superuser_engine, mail_id, **{column: value})

    await MailSender(app_sessions, settings).deliver_due()

    assert smtp_server.to(to) == []
    assert smtp_server.to(value) == []
    row = await outbox_row(app_sessions, mail_id)
    assert (row.sent_at, row.next_attempt_at) == (None, GAVE_UP)
    assert row.last_error is not None
    assert row.last_error.startswith("SealBroken")


async def test_development_without_smtp_writes_an_eml_file_and_logs_the_link(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=None)
    to = new_address()
    mail_id = await enqueue_committed(app_sessions, settings, to, subject="Sign in to CoverProof")

    with caplog.at_level(logging.INFO, logger="coverproof.mail"):
        assert await MailSender(app_sessions, settings).deliver_due() >= 1

    path = tmp_path / "outbox" / f"{mail_id}.eml"
    assert path.stat().st_mode & 0o077 == 0
    saved = path.read_text()
    assert "Subject: Sign in to CoverProof" in saved
    assert "text/html" in saved
    [line] = [r.getMessage() for r in caplog.records if to in r.getMessage()]
    assert "Sign in to CoverProof" in line
    assert str(path) in line
    assert "https://testserver/verify?token=tok-" in line
    row = await outbox_row(app_sessions, mail_id)
    assert row.sent_at is not None
    assert row.body is None


async def test_production_without_smtp_refuses_to_start(
    database: Database, tmp_path: Path, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database, tmp_path, env="production", smtp_url=None)
    with pytest.raises(ConfigError, match="COVERPROOF_SMTP_URL"):
        await MailSender(app_sessions, settings).start()


async def test_the_background_task_delivers_when_woken(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    # A long poll: only wake() can explain a delivery within the test's 5 s.
    sender = MailSender(app_sessions, settings, poll_seconds=120)
    await sender.start()
    try:
        to = new_address()
        await enqueue_committed(app_sessions, settings, to)
        sender.wake()
        await smtp_server.wait_for(lambda received: any(to in r.rcpt_tos for r in received))
    finally:
        await sender.stop()
    assert len(smtp_server.to(to)) == 1
    await sender.stop()  # stopping twice is harmless


async def test_a_sender_leaves_mail_sealed_with_another_key_alone(
    database: Database,
    smtp_server: SmtpServer,
    app_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    ours = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    theirs = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    mail_id = await enqueue_committed(app_sessions, theirs, new_address())
    await MailSender(app_sessions, ours).deliver_due(limit=1000)
    row = await outbox_row(app_sessions, mail_id)
    assert (row.sent_at, row.attempts, row.last_error) == (None, 0, None)
    assert await MailSender(app_sessions, theirs).deliver_due(limit=1000) >= 1
    assert (await outbox_row(app_sessions, mail_id)).sent_at is not None


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (450, "Greylisted, please try again later (client 5.1.80.12)"),
        (452, "Too many recipients this hour from 5.6.7.8"),
        (554, "Client host [5.1.2.3] blocked using zen.spamhaus.org"),
        (550, "5.7.1: blocked"),  # policy, its code not followed by a space
        (550, "550 5.7.1 blocked"),  # the reply code repeated in the text
        (550, "<a@b.co> 5.7.1 blocked"),  # a code, not where it should be
        (550, "Mail rejected\n5.7.1 policy"),  # on a later line of the reply
        (550, "4.2.2 mailbox full"),  # a code of another class
    ],
)
def test_an_address_in_a_replys_text_is_no_status_code(code: int, message: str) -> None:
    """Only a code opening the text, of the reply's own class, says what a refusal is about:
    a 4xx is never for good, and a blocklisting of our host (554) is ours to mend."""
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, message, "someone@example.com")]
    )
    assert not _refused_for_good(refused)
    for text in ["5.1.1 No such user", "550 5.1.1 No such user", "Sorry\n5.1.10 no such"]:
        assert _refused_for_good(
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, text, "someone@example.com")]
            )
        ), text
