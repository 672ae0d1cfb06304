"""Writing mail into the outbox, in the caller's transaction.

The row commits or rolls back with whatever caused it (a sign-up and its verification token):
no token without its mail, and no mail for a token that never existed. The sender delivers it
later. Services call ``enqueue``; they never commit.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError
from email.utils import parseaddr

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.mail.models import MailOutbox
from app.mail.sealing import SealBroken, key_id, open_sealed, seal

MAX_ADDRESS_CHARS = 320  # the column's check constraint


@dataclass(frozen=True)
class Mail:
    """One message as the sender delivers it (the body opened)."""

    id: uuid.UUID
    to: str
    subject: str
    text: str
    html: str


def _associated(mail_id: uuid.UUID, to: str) -> bytes:
    # Binds the sealed body to its row and recipient: re-pointing a pending reset mail at
    # another address (by writing to_address in the database) makes it undeliverable.
    return f"{mail_id}\n{to}".encode()


class Unmailable(ValueError):
    """A recipient or subject the outbox will not queue: mail would read it otherwise."""


# An address of the plainest form: dot-atoms of letters, digits and _+- at a domain of letters,
# digits and hyphens. Mail reads it as written (tests/mail/test_header_injection.py holds the two
# to the same answer), without the email package's parser, some 50 µs for each address a request
# validates (a declaration's recipient on the write lane).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)


# What the email package raises on a header it cannot read: an AttributeError too, on text
# such as ":@;.-", which the address pattern lets through (a 500, before, at sign-in).
_UNREADABLE = (HeaderParseError, ValueError, IndexError, AttributeError, TypeError)


def as_mail_reads(name: str, value: str) -> str | None:
    """Header ``name`` holding ``value`` as the email package reads it (None: it cannot)."""
    if name == "To" and _PLAIN_ADDRESS.fullmatch(value):
        return value
    try:
        return str(policy.default.header_factory(name, value))
    except _UNREADABLE:
        return None


def one_address(value: str) -> bool:
    """Whether ``value`` is one address, as written, both where mail reads the To header and
    where SMTP's envelope takes it (aiosmtplib writes RCPT TO from ``parseaddr``): a whole
    address in quotes ('"a@b.co"') is read by the header's parser as a local part with no
    domain, passed as written, and delivered by the envelope to a@b.co, counted apart from it."""
    if _PLAIN_ADDRESS.fullmatch(value):
        return True
    try:
        header = policy.default.header_factory("To", value)
    except _UNREADABLE:
        return False
    found = header.addresses
    return (
        str(header) == value
        and len(found) == 1
        and not found[0].display_name
        and found[0].domain != ""
        and found[0].addr_spec == value
        and parseaddr(value)[1] == value
    )


def _check_header(name: str, value: str) -> None:
    """Refuse, in the caller's transaction, a header the email package would read as other
    than written: CR or LF would let a caller inject headers, and so would an encoded word
    ("=?utf-8?q?...=0D=0A...?="), which it decodes, CR LF and all (CPython before 3.11.10
    then writes them out raw); and a display name or second address would send the mail
    elsewhere."""
    if "\r" in value or "\n" in value:
        raise Unmailable(f"mail {name} must be a single line")
    read_as_written = one_address(value) if name == "To" else as_mail_reads(name, value) == value
    if not read_as_written:
        raise Unmailable(f"mail {name} must be read by mail as it is written")


async def enqueue(
    session: AsyncSession, key: bytes, *, to: str, subject: str, text: str, html: str
) -> uuid.UUID:
    """Add one message to the outbox inside the caller's transaction; returns its id."""
    _check_header("To", to)
    _check_header("Subject", subject)
    if "@" not in to or len(to) > MAX_ADDRESS_CHARS:
        raise Unmailable("mail recipient must be an email address of at most 320 characters")
    mail_id = uuid.uuid4()
    # The subject is sealed with the body too: in clear in its column, for the operators who
    # look at a queue, a rewritten one (on a pending reset mail, say) would go out as written.
    plaintext = json.dumps({"subject": subject, "text": text, "html": html}).encode()
    await session.execute(
        insert(MailOutbox).values(
            id=mail_id,
            to_address=to,
            subject=subject,
            body=seal(key, plaintext, _associated(mail_id, to)),
            key_id=key_id(key),
        )
    )
    return mail_id


def open_mail(key: bytes, mail_id: uuid.UUID, to: str, subject: str, sealed: bytes) -> Mail:
    """Open a stored body; raises app.mail.sealing.SealBroken if it, or the subject beside it,
    was tampered with."""
    body = json.loads(open_sealed(key, sealed, _associated(mail_id, to)))
    # Mail queued before subjects were sealed has none in its body: its column is all there is.
    if body.get("subject", subject) != subject:
        raise SealBroken("the mail's subject is not the one sealed with its body")
    return Mail(id=mail_id, to=to, subject=subject, text=body["text"], html=body["html"])
