"""How a message leaves: SMTP (aiosmtplib), or in development a .eml file and a log line.

``COVERPROOF_SMTP_URL`` forms:

- ``smtp://user:pass@host:587``: STARTTLS when the server offers it; required when the URL
  carries credentials (a password is never sent in the clear), with ``?starttls=required``,
  and always in production (mail carries sign-in and reset links: a server that does not
  offer STARTTLS, or a network that strips the offer, must not get them in the clear).
- ``smtps://user:pass@host:465``: implicit TLS.
- ``smtp+insecure://127.0.0.1:1025``: plain SMTP to a loopback test server, no credentials.

Errors about the URL never repeat it: it may hold a password.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from app.config import ConfigError, Settings
from app.mail.outbox import Mail, one_address

log = logging.getLogger("coverproof.mail")

SMTP_TIMEOUT_SECONDS = 30.0
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465, "smtp+insecure": 25}
_URL = re.compile(r"https?://[^\s<>\"']+")


class Connection(Protocol):
    """Delivers one message; returns only once it is accepted (or raises)."""

    async def send(self, message: EmailMessage, mail: Mail) -> None: ...


class Transport(Protocol):
    """Where messages leave: a pass of the sender opens one ``connection()`` for all it sends."""

    def connection(self) -> AbstractAsyncContextManager[Connection]: ...


class Unsendable(ValueError):
    """A message that no attempt could send as it is written."""


def build_message(mail: Mail, mail_from: str) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML as the preferred alternative."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    if (
        str(message["To"]) != mail.to
        or not one_address(mail.to)
        or str(message["Subject"]) != mail.subject
    ):
        # Read otherwise than written (an encoded word, a second address, an address whole in
        # quotes): queued before the outbox refused such mail, it would add headers, or go
        # elsewhere. Never sent.
        raise Unsendable("the mail's recipient or subject is not read as it is written")
    message["Date"] = formatdate(localtime=False)
    # The outbox id makes the Message-ID stable across retries, so a receiver can drop the
    # duplicate that at-least-once delivery occasionally produces.
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "coverproof.invalid"
    message["Message-ID"] = f"<{mail.id}@{domain}>"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


@dataclass(frozen=True)
class SmtpTransport:
    """Sends through an SMTP server with aiosmtplib."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS
    timeout: float = SMTP_TIMEOUT_SECONDS

    def client(self) -> aiosmtplib.SMTP:
        """A client not yet connected; connecting upgrades to TLS and signs in as configured."""
        return aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            start_tls=self.start_tls,
            timeout=self.timeout,
        )

    def connection(self) -> SmtpConnection:
        return SmtpConnection(self)


class SmtpConnection:
    """One SMTP connection for a pass of the sender (at most its batch of messages), rather
    than a handshake (and a TLS one) per message: opened at its first message, and opened
    afresh after a failure (the server may have dropped it, or be left mid-transaction)."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> SmtpConnection:
        return self

    async def __aexit__(self, *_: object) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    async def send(self, message: EmailMessage, mail: Mail) -> None:
        reused = self.client is not None
        try:
            await self._send(message, mail)
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            # The server closed the connection it kept open between messages (an idle
            # timeout): the message is tried once more on a fresh one rather than charged an
            # attempt. Were it taken after all, the copy carries the same Message-ID.
            await self._send(message, mail)

    async def _send(self, message: EmailMessage, mail: Mail) -> None:
        if self.client is None:
            client = self.transport.client()
            await client.connect()
            self.client = client
        try:
            await self.client.send_message(
                message, sender=parseaddr(str(message["From"]))[1], recipients=[mail.to]
            )
        except BaseException:
            self.client.close()
            self.client = None
            raise


@dataclass(frozen=True)
class FileTransport:
    """Development without SMTP: writes ``<dir>/<id>.eml`` and logs where, with the first link."""

    directory: Path

    def connection(self) -> AbstractAsyncContextManager[FileTransport]:
        return contextlib.nullcontext(self)

    async def send(self, message: EmailMessage, mail: Mail) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{mail.id}.eml"
        path.touch(mode=0o600)  # the file holds a live token
        path.write_bytes(message.as_bytes())
        link = _URL.search(mail.text)
        # Development only: the link is printed so `make run` alone lets a person sign up.
        log.info(
            "mail to %s: %s (saved to %s)%s",
            mail.to,
            mail.subject,
            path,
            f" {link.group(0)}" if link else "",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_transport(url: str, production: bool = False) -> SmtpTransport:
    """Parse COVERPROOF_SMTP_URL; raise ConfigError (without echoing the URL) if it is unusable.
    In ``production``, smtp:// always requires STARTTLS."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": its message names no part of it, but a traceback
        raise ConfigError(["COVERPROOF_SMTP_URL cannot be read as a URL."]) from None
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    query = parse_qs(parts.query)
    problems = []
    if scheme not in _DEFAULT_PORTS:
        problems.append(
            "COVERPROOF_SMTP_URL must start with smtp://, smtps:// or smtp+insecure://."
        )
    if not parts.hostname or not port:
        problems.append("COVERPROOF_SMTP_URL must name a host (and a valid port, if any).")
    if set(query) - {"starttls"} or query.get("starttls", ["required"]) != ["required"]:
        problems.append("COVERPROOF_SMTP_URL accepts only the option ?starttls=required.")
    credentials = parts.username is not None or parts.password is not None
    if scheme == "smtp+insecure" and (credentials or not _is_loopback(parts.hostname or "")):
        problems.append(
            "smtp+insecure:// is for a loopback test server only, without credentials; "
            "use smtp:// (STARTTLS) or smtps://."
        )
    if problems:
        raise ConfigError(problems)
    return SmtpTransport(
        hostname=parts.hostname or "",
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=scheme == "smtps",
        start_tls={
            "smtps": False,  # already TLS from the first byte
            "smtp+insecure": False,
            "smtp": True if (credentials or "starttls" in query or production) else None,
        }[scheme],
    )


def transport_for(settings: Settings) -> Transport:
    """SMTP when configured; otherwise .eml files (development only; production refuses)."""
    if settings.smtp_url is not None:
        return smtp_transport(settings.smtp_url.get_secret_value(), settings.is_production)
    if settings.is_production:
        raise ConfigError(
            ["COVERPROOF_SMTP_URL must be set in production (smtp:// or smtps://) to send mail."]
        )
    return FileTransport(settings.data_dir / "outbox")
