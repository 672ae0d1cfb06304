"""Delivering the outbox: a background task that claims due rows and sends them.

At-least-once: a row is marked sent only after the SMTP server accepted it, in the same
transaction that claimed it (``FOR NO KEY UPDATE SKIP LOCKED``, so several servers never send
one row twice at once). A crash between acceptance and commit re-sends the message later; its stable
Message-ID lets a receiver recognise the duplicate. Failures back off exponentially, up to an
hour; a row still unsent ``GIVE_UP_AFTER`` its queueing (as a mail server keeps a message for
days) stays unsent with its last error for a person to look at, and says so at ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tenant import mail_sender_transaction
from app.mail.models import MailOutbox
from app.mail.outbox import open_mail
from app.mail.sealing import SealBroken, key_id, mail_key
from app.mail.transport import Connection, Transport, Unsendable, build_message, transport_for

log = logging.getLogger("coverproof.mail")

# Counted from the queueing, not in attempts: every row of a pass is charged an attempt while
# the SMTP server is down, so ten attempts (four hours of back-off) lost all mail queued before
# an outage that long, declaration requests among it, without a word to their firms.
GIVE_UP_AFTER = timedelta(days=5)
BATCH = 20
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
# Rows that gave up are parked here: never due again, still there with their last_error (for
# an operator with a role that bypasses RLS; forced RLS shows the app role and the owner none).
GAVE_UP = datetime(9999, 1, 1, tzinfo=UTC)
_ERROR_CHARS = 200


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 30 s, 1 min, 2 min ... capped at 1 h."""
    return min(FIRST_BACKOFF * (1 << min(max(attempts - 1, 0), 20)), MAX_BACKOFF)


def _due(limit: int, key: bytes) -> Select[MailOutbox]:
    # SKIP LOCKED: concurrent senders (several app servers) each take different rows.
    return (
        select(MailOutbox)
        .where(
            MailOutbox.key_id == key_id(key),
            MailOutbox.sent_at.is_(None),
            MailOutbox.next_attempt_at <= func.now(),
        )
        .order_by(MailOutbox.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )


def describe(exc: BaseException) -> str:
    """Class name and a short message for last_error and logs; never a body or a password."""
    message = " ".join(str(exc).split())[:_ERROR_CHARS]  # one line, whatever the server said
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# An enhanced status code (RFC 3463): class, subject, detail; not part of a longer dotted
# number (an address, 5.1.2.3). And a reply code a relayed line may repeat before it.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_REPLY_CODE = re.compile(r"\d{3}[ -]")


def _refused_for_good(exc: BaseException) -> bool:
    """Whether the server refused this message for good for what it is: its recipient's
    address (5.1.x: no such mailbox) or its content (5.6.x); without an enhanced code, 550, 551
    or 553. Retried for days, each on a connection of its own, such mail hurts the sender's
    standing with the server. Other 5xx replies are retried: a full mailbox (552, 5.2.x), and
    what is about ourselves (a sending quota, 5.4.x; our domain's authentication, 5.7.x; our
    sign-in, our sender address), for which every mail waits."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [(r.code, r.message) for r in exc.recipients]
    elif isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        replies = [(exc.code, exc.message)]
    else:
        return False
    return bool(replies) and all(_permanent(code, message) for code, message in replies)


def _permanent(code: int, message: str) -> bool:
    if code < 500:
        return False
    # The code opening a line of the text (RFC 2034; aiosmtplib joins a reply's lines with
    # line feeds) says what the refusal is about, if of the reply's own class.
    lines = [line.strip() for line in (message or "").splitlines()]
    lines = [line[4:] if _REPLY_CODE.match(line) else line for line in lines]
    for line in lines:
        if (opening := _ENHANCED.match(line)) is not None:
            return opening.group(1) == str(code)[0] and opening.group(2) in ("1", "6")
    if any(_ENHANCED.search(line) for line in lines):
        return False  # a code elsewhere ("<a@b> 5.7.1 blocked"): not read as for good
    return code in (550, 551, 553)


class MailSender:
    """Delivers due outbox rows every ``poll_seconds``, or at once after ``wake()``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        poll_seconds: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._ready: tuple[bytes, Transport] | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _setup(self) -> tuple[bytes, Transport]:
        # Deferred to first use so that start() is where a bad configuration is refused.
        if self._ready is None:
            transport = transport_for(self.settings)
            self._ready = (mail_key(self.settings.resolved_secret_key()), transport)
        return self._ready

    async def start(self) -> None:
        """Check the configuration (raising ConfigError) and start the delivery task."""
        self._setup()
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="coverproof-mail-sender")

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call after committing new mail)."""
        self._wakeup.set()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Let a pass in progress finish (up to ``grace_seconds``), then stop the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            # wait_for cancels the task if the grace period runs out; cancelling mid-pass
            # rolls its transaction back, so those rows are simply sent again later.
            await asyncio.wait_for(task, grace_seconds)
        except TimeoutError:
            log.warning("mail sender cancelled after %.0f s mid-delivery", grace_seconds)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the pass: a wake() during the pass triggers another one.
            self._wakeup.clear()
            try:
                while not self._stopping and await self._pass(BATCH) == (BATCH, BATCH):
                    pass  # a full batch all sent: more may be due
            except Exception:
                log.exception("mail delivery pass failed; retrying in %.0f s", self.poll_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)

    async def deliver_due(self, limit: int = BATCH) -> int:
        """One pass over at most ``limit`` due rows; returns how many were sent."""
        return (await self._pass(limit))[1]

    async def _pass(self, limit: int) -> tuple[int, int]:
        key, transport = self._setup()
        sent = 0
        # The connection outlives the transaction: the rows are marked sent, and committed,
        # before QUIT (which a slow server may take its time over) is sent.
        async with (
            transport.connection() as connection,
            mail_sender_transaction(self.sessions) as session,
        ):
            rows = (await session.execute(_due(limit, key))).scalars().all()
            for row in rows:
                sent += await self._deliver(session, key, connection, row)
        return len(rows), sent

    async def _deliver(
        self, session: AsyncSession, key: bytes, connection: Connection, row: MailOutbox
    ) -> int:
        try:
            if row.body is None:
                raise SealBroken("the row has no body to send")
            mail = open_mail(key, row.id, row.to_address, row.subject, row.body)
            await connection.send(build_message(mail, self.settings.mail_from), mail)
        except Exception as exc:
            await self._failed(session, row, exc)
            return 0
        await self._mark(session, row, sent_at=func.now(), body=None, last_error=None)
        log.info("mail %s sent (attempt %d)", row.id, row.attempts + 1)
        return 1

    async def _failed(self, session: AsyncSession, row: MailOutbox, exc: Exception) -> None:
        attempts = row.attempts + 1
        # A body that does not open never will, nor a message read otherwise than written:
        # retrying would only repeat the error.
        too_old = row.created_at <= datetime.now(UTC) - GIVE_UP_AFTER
        give_up = too_old or isinstance(exc, SealBroken | Unsendable) or _refused_for_good(exc)
        error = describe(exc)
        await self._mark(
            session,
            row,
            attempts=attempts,
            last_error=error,
            next_attempt_at=GAVE_UP if give_up else func.now() + backoff(attempts),
        )
        if give_up:  # an operator's to look at: it will not be tried again
            log.error("mail %s attempt %d failed; giving up: %s", row.id, attempts, error)
        else:
            log.warning("mail %s attempt %d failed: %s", row.id, attempts, error)

    async def _mark(self, session: AsyncSession, row: MailOutbox, **values: Any) -> None:
        # Core UPDATE, not ORM attribute writes: the SQL expressions run in the database.
        await session.execute(update(MailOutbox).where(MailOutbox.id == row.id).values(**values))
