"""The outbox row is written in the caller's transaction, sealed, and only committed mail leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tenant import mail_sender_transaction, transaction
from app.mail.models import MailOutbox
from app.mail.outbox import enqueue, open_mail
from app.mail.sender import MailSender
from tests.conftest import Database, make_settings
from tests.mail.helpers import enqueue_committed, key_of, new_address, outbox_row
from tests.mail.smtp import SmtpServer


class Rollback(Exception):
    pass


async def test_mail_from_a_rolled_back_transaction_is_never_sent(
    database: Database,
    tmp_path: Path,
    app_sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp_server.url)
    to = new_address()

    async def queue_then_fail() -> None:
        async with transaction(app_sessions) as session:
            await enqueue(session, key_of(settings), to=to, subject="S", text="t", html="<p>h</p>")
            raise Rollback

    with pytest.raises(Rollback):
        await queue_then_fail()

    await MailSender(app_sessions, settings).deliver_due()

    async with mail_sender_transaction(app_sessions) as session:
        rows = (await session.execute(select(MailOutbox).where(MailOutbox.to_address == to))).all()
    assert rows == []
    assert smtp_server.to(to) == []


async def test_the_stored_body_is_sealed(
    database: Database, tmp_path: Path, app_sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database, tmp_path)
    to = new_address()
    mail_id = await enqueue_committed(app_sessions, settings, to)

    row = await outbox_row(app_sessions, mail_id)
    assert row.body is not None
    assert b"token=" not in row.body
    assert b"Confirm your address" not in row.body
    assert b'"text"' not in row.body  # not JSON at rest
    mail = open_mail(key_of(settings), row.id, row.to_address, row.subject, row.body)
    assert "token=tok-" in mail.text
    assert mail.html.startswith("<p>")
    assert (row.attempts, row.sent_at, row.last_error) == (0, None, None)


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("a@example.test\r\nBcc: victim@example.test", "Hi"),
        ("a@example.test", "Hi\nBcc: victim@example.test"),
        ("not-an-address", "Hi"),
    ],
)
async def test_header_injection_is_refused_in_the_callers_transaction(
    app_sessions: async_sessionmaker[AsyncSession], to: str, subject: str
) -> None:
    async with transaction(app_sessions) as session:
        with pytest.raises(ValueError, match="mail"):
            await enqueue(session, b"k" * 32, to=to, subject=subject, text="t", html="h")
