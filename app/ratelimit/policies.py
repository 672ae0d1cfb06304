"""Named rate limits: what is counted, per what, and how many per window.

Each limit is a ``limits.parse`` string, kept as a module constant so the numbers read in one
place; ``Policy`` pairs it with a stable name, which becomes part of the storage key (so two
policies never share a counter, and renaming a policy starts it afresh).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import limits

# Per address and caller, so that one stranger hammering an address locks out only
# themselves, not its owner signing in from elsewhere; the per-address ceiling alone (ten
# callers' worth) is what stops a spread-out guesser.
SIGN_IN_PER_EMAIL_AND_IP = "10/minute"
SIGN_IN_PER_EMAIL = "100/minute"
SIGN_IN_PER_IP = "30/minute"
# Magic links, verification and password-reset mails share these: each send lands in someone's
# inbox. Per address and caller, so that a stranger using up an address's mails does not leave
# its owner without a sign-in link; the per-address ceiling is what stops a spread-out bombing.
MAIL_SEND_PER_EMAIL_AND_IP = "5/hour"
MAIL_SEND_PER_EMAIL = "20/hour"
MAIL_SEND_PER_IP = "20/hour"
SIGN_UP_PER_IP = "10/hour"
# Declaration links: a mail from our domain to an address a member typed. Per firm (two bulk
# sends of 500 an hour), and per recipient of a firm (a send and its reminders).
DECLARATION_MAILS_PER_FIRM = "1000/hour"
DECLARATION_MAILS_PER_RECIPIENT = "5/hour"
MUTATIONS_PER_USER = "120/minute"
# "TOKEN" in these names trips the hardcoded-password lint; they are rates, not secrets.
PUBLIC_TOKEN_PER_TOKEN = "30/minute"  # noqa: S105
PUBLIC_TOKEN_PER_IP = "120/minute"  # noqa: S105
# A refused link (replayed, expired) goes on the firm's audit record once per declaration,
# reason and hour, not once per attempt: replaying a used link must not flood the firm's chain.
REFUSAL_RECORDS = "1/hour"
# A refused sign-in or link about an account goes on its firm's chain once an hour per caller,
# and this many an hour in all (the platform's chain has the rest): strangers can cause them.
ACCOUNT_REFUSALS_RECORDED_PER_CALLER = "1/hour"
ACCOUNT_REFUSALS_RECORDED = "20/hour"
# Each download of an evidence pack is an audit entry: a looping client must not flood the chain.
PACK_DOWNLOADS_PER_CALLER = "30/minute"
# Verifying or exporting a firm's whole chain, or making an evidence pack (which verifies it),
# per caller: each reads every entry, and each export is an audit entry (a query, so the
# mutation limit never counted it).
WHOLE_CHAIN_READS_PER_CALLER = "20/minute"
# Partner systems: every request of one API key, and first-party APQ registrations per user.
API_KEY_REQUESTS = "600/minute"
APQ_REGISTRATIONS_PER_USER = "60/minute"

_NAME = re.compile(r"[a-z0-9_]{1,64}")


@dataclass(frozen=True)
class Policy:
    """One named limit, e.g. ``Policy.SIGN_IN_PER_EMAIL``; ``limit`` is checked when defined."""

    name: str
    limit: str
    item: limits.RateLimitItem = field(init=False, repr=False, compare=False)

    SIGN_IN_PER_EMAIL_AND_IP: ClassVar[Policy]
    SIGN_IN_PER_EMAIL: ClassVar[Policy]
    SIGN_IN_PER_IP: ClassVar[Policy]
    MAIL_SEND_PER_EMAIL_AND_IP: ClassVar[Policy]
    MAIL_SEND_PER_EMAIL: ClassVar[Policy]
    MAIL_SEND_PER_IP: ClassVar[Policy]
    SIGN_UP_PER_IP: ClassVar[Policy]
    DECLARATION_MAILS_PER_FIRM: ClassVar[Policy]
    DECLARATION_MAILS_PER_RECIPIENT: ClassVar[Policy]
    MUTATIONS_PER_USER: ClassVar[Policy]
    PUBLIC_TOKEN_PER_TOKEN: ClassVar[Policy]
    PUBLIC_TOKEN_PER_IP: ClassVar[Policy]
    REFUSAL_RECORDS: ClassVar[Policy]
    ACCOUNT_REFUSALS_RECORDED_PER_CALLER: ClassVar[Policy]
    ACCOUNT_REFUSALS_RECORDED: ClassVar[Policy]
    PACK_DOWNLOADS_PER_CALLER: ClassVar[Policy]
    WHOLE_CHAIN_READS_PER_CALLER: ClassVar[Policy]
    API_KEY_REQUESTS: ClassVar[Policy]
    APQ_REGISTRATIONS_PER_USER: ClassVar[Policy]

    def __post_init__(self) -> None:
        # The name is part of a Redis key: keep it to characters that need no escaping.
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"policy name {self.name!r} must match {_NAME.pattern}")
        # parse() would keep only the first of "10/minute;100/hour": refuse rather than drop one.
        items = limits.parse_many(self.limit)
        if len(items) != 1:
            raise ValueError(f"policy {self.name!r} needs exactly one limit, not {self.limit!r}")
        parsed = items[0]
        # The policy name as the library's namespace keeps each policy's keys apart.
        item = type(parsed)(parsed.amount, parsed.multiples, namespace=self.name)
        object.__setattr__(self, "item", item)

    @property
    def window_seconds(self) -> int:
        """The length of the window, the longest any caller can be asked to wait."""
        return self.item.get_expiry()


Policy.SIGN_IN_PER_EMAIL_AND_IP = Policy("sign_in_per_email_and_ip", SIGN_IN_PER_EMAIL_AND_IP)
Policy.SIGN_IN_PER_EMAIL = Policy("sign_in_per_email", SIGN_IN_PER_EMAIL)
Policy.SIGN_IN_PER_IP = Policy("sign_in_per_ip", SIGN_IN_PER_IP)
Policy.MAIL_SEND_PER_EMAIL_AND_IP = Policy("mail_send_per_email_and_ip", MAIL_SEND_PER_EMAIL_AND_IP)
Policy.MAIL_SEND_PER_EMAIL = Policy("mail_send_per_email", MAIL_SEND_PER_EMAIL)
Policy.MAIL_SEND_PER_IP = Policy("mail_send_per_ip", MAIL_SEND_PER_IP)
Policy.SIGN_UP_PER_IP = Policy("sign_up_per_ip", SIGN_UP_PER_IP)
Policy.DECLARATION_MAILS_PER_FIRM = Policy("declaration_mails_per_firm", DECLARATION_MAILS_PER_FIRM)
Policy.DECLARATION_MAILS_PER_RECIPIENT = Policy(
    "declaration_mails_per_recipient", DECLARATION_MAILS_PER_RECIPIENT
)
Policy.MUTATIONS_PER_USER = Policy("mutations_per_user", MUTATIONS_PER_USER)
Policy.PUBLIC_TOKEN_PER_TOKEN = Policy("public_token_per_token", PUBLIC_TOKEN_PER_TOKEN)
Policy.PUBLIC_TOKEN_PER_IP = Policy("public_token_per_ip", PUBLIC_TOKEN_PER_IP)
Policy.REFUSAL_RECORDS = Policy("refusal_records", REFUSAL_RECORDS)
Policy.ACCOUNT_REFUSALS_RECORDED_PER_CALLER = Policy(
    "account_refusals_recorded_per_caller", ACCOUNT_REFUSALS_RECORDED_PER_CALLER
)
Policy.ACCOUNT_REFUSALS_RECORDED = Policy("account_refusals_recorded", ACCOUNT_REFUSALS_RECORDED)
Policy.PACK_DOWNLOADS_PER_CALLER = Policy("pack_downloads_per_caller", PACK_DOWNLOADS_PER_CALLER)
Policy.WHOLE_CHAIN_READS_PER_CALLER = Policy(
    "whole_chain_reads_per_caller", WHOLE_CHAIN_READS_PER_CALLER
)
Policy.API_KEY_REQUESTS = Policy("api_key_requests", API_KEY_REQUESTS)
Policy.APQ_REGISTRATIONS_PER_USER = Policy("apq_registrations_per_user", APQ_REGISTRATIONS_PER_USER)
