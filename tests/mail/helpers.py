"""Shared steps for the outbox tests: queue a message in a committed transaction, read a row."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tenant import mail_sender_transaction, transaction
from app.mail.models import MailOutbox
from app.mail.outbox import enqueue
from app.mail.sealing import mail_key

TEXT = "Confirm your address: https://testserver/verify?token=tok-{n}\n\nThanks."
HTML = '<p>Confirm your address: <a href="https://testserver/verify?token=tok-{n}">here</a></p>'


def new_address() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.test"


def key_of(settings: Settings) -> bytes:
    return mail_key(settings.resolved_secret_key())


async def enqueue_committed(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    to: str,
    subject: str = "Confirm your email address",
) -> uuid.UUID:
    """Queue one message and commit, as a sign-up transaction would."""
    n = uuid.uuid4().hex
    async with transaction(sessions) as session:
        return await enqueue(
            session,
            key_of(settings),
            to=to,
            subject=subject,
            text=TEXT.format(n=n),
            html=HTML.format(n=n),
        )


async def outbox_row(sessions: async_sessionmaker[AsyncSession], mail_id: uuid.UUID) -> MailOutbox:
    async with mail_sender_transaction(sessions) as session:  # the only one that sees the rows
        return (
            await session.execute(select(MailOutbox).where(MailOutbox.id == mail_id))
        ).scalar_one()
