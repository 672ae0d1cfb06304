"""What the sign-in flows need besides the session: keys, limits, mail and the caller's address."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from limits.errors import StorageError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import AddressUnmailable, RateLimited
from app.mail.outbox import Unmailable, enqueue
from app.ratelimit.client_ip import ip_bucket
from app.ratelimit.mailbox import mailbox
from app.ratelimit.policies import Policy
from app.ratelimit.request import Limits

log = logging.getLogger("coverproof.auth")


@dataclass(frozen=True)
class AuthEnv:
    settings: Settings
    secret_key: str
    mail_key: bytes
    limiter: Limits
    ip: str | None
    user_agent: str | None
    # Called when mail is queued, so the sender is woken only by requests that sent mail.
    on_mail: Callable[[], None] = lambda: None
    # on_firm_record's answers: a record ended to break a deadlock runs again, and counted
    # again it found its own count and left itself off the firm's chain.
    _firm_records: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.session_lifetime_hours)

    @property
    def ip_key(self) -> str:
        """Per-IP limits count an IPv6 caller's whole /64, which one user usually holds."""
        return ip_bucket(self.ip) if self.ip else "unknown"

    def at_caller(self, key: str) -> str:
        """The key of an address (or its mailbox) as this caller (its IP, or /64) asks about it."""
        return f"{key} {self.ip_key}"

    async def limit(self, policy: Policy, key: str) -> None:
        await self.limiter.hit(policy, key)

    async def limit_sign_in(self, email: str) -> None:
        """Password sign-ins per address and caller, per address, and per caller."""
        await self.limiter.hit_all(
            (Policy.SIGN_IN_PER_EMAIL_AND_IP, self.at_caller(email.lower())),
            (Policy.SIGN_IN_PER_EMAIL, email.lower()),
            (Policy.SIGN_IN_PER_IP, self.ip_key),
        )

    async def limit_mail(self, email: str) -> None:
        """The email-bombing guard: sends per mailbox and caller, per mailbox, per caller. Per
        mailbox and caller, not per address: one caller sending to a+1@, a+2@, … had five of
        each, and used up the mailbox's own ceiling, its owner refused their sign-in link."""
        box = mailbox(email)
        await self.limiter.hit_all(
            (Policy.MAIL_SEND_PER_EMAIL_AND_IP, self.at_caller(box)),
            (Policy.MAIL_SEND_PER_EMAIL, box),
            (Policy.MAIL_SEND_PER_IP, self.ip_key),
        )

    async def on_firm_record(self, user_id: object, action: str) -> bool:
        """Whether a refusal about an account (a failed or throttled sign-in, a spent link) goes
        on its firm's chain too: once an hour per caller, and 20 an hour in all. Anyone who
        knows an address can be refused for it, and recorded each time, strangers flooded the
        firm's permanent trail (past what one export takes, in some 33 hours). The platform's
        chain still has each, with its caller's address: a sign-in's always, a link's when its
        firm's chain does not."""
        account = f"{user_id} {action}"
        if account not in self._firm_records:
            self._firm_records[account] = await self.room_to_record(
                (Policy.ACCOUNT_REFUSALS_RECORDED_PER_CALLER, f"{account} {self.ip_key}"),
                (Policy.ACCOUNT_REFUSALS_RECORDED, account),
            )
        return self._firm_records[account]

    async def room_to_record(self, *limits: tuple[Policy, str]) -> bool:
        """Whether a refusal is recorded within the limits on recording it (counted if so):
        with the limits' storage down, it is, rather than lost."""
        try:
            await self.limiter.hit_all(*limits)
        except RateLimited:
            return False
        except StorageError:
            log.warning("refusal record limits unavailable; recording the refusal")
        return True

    async def send(
        self, session: AsyncSession, to: str, subject: str, text: str, html: str
    ) -> None:
        """Queue mail in the caller's transaction: it leaves only if the transaction commits.
        The subject is put on one line: it is made of names people typed, and a line break in
        a firm's or a form's name must not make the outbox refuse the mail (it refuses a header
        that spans lines), and with it the request that sends it."""
        subject = " ".join(subject.split())
        try:
            await enqueue(session, self.mail_key, to=to, subject=subject, text=text, html=html)
        except Unmailable as error:
            # Refused before anything is written: an address stored before the rules that
            # refuse it now (a display name, a quoted local part), which mail would read
            # otherwise. The caller's to correct, not a failure of ours.
            raise AddressUnmailable() from error
        self.on_mail()
