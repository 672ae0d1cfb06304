"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, collecting what it accepts.

Importable from any test folder: ``from tests.mail.smtp import SmtpServer``; the fixture
``smtp_server`` (tests/mail/conftest.py) starts one per test.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

ACCEPTED = "250 Message accepted for delivery"


@dataclass(frozen=True)
class Received:
    """One accepted message: the SMTP envelope, the parsed message and the client's address
    and port (which tell its connections apart)."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: tuple[str, int]


class _Collector:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.reply = ACCEPTED
        self.refusals = 0  # how many of the next messages get ``reply``; -1: all of them

    # aiosmtpd calls its hooks positionally: (server, session, envelope).
    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            self.refusals -= self.refusals > 0
            return self.reply
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.peer)
        self.received.append(received)
        return ACCEPTED


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed again before returning)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """aiosmtpd running in its own thread; ``received`` fills as messages are accepted."""

    def __init__(self) -> None:
        self._collector = _Collector()
        self.host = "127.0.0.1"
        self.port = free_port()
        self._controller = Controller(self._collector, hostname=self.host, port=self.port)

    @property
    def url(self) -> str:
        """The COVERPROOF_SMTP_URL that reaches this server (plain SMTP on loopback)."""
        return f"smtp+insecure://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        return list(self._collector.received)

    def refuse(self, reply: str | None, times: int = -1) -> None:
        """Answer DATA with ``reply`` (e.g. "451 4.3.0 try later") instead of accepting, the
        next ``times`` times (-1: until told otherwise); None accepts again."""
        self._collector.reply = reply or ACCEPTED
        self._collector.refusals = times if reply else 0

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose envelope named ``address`` as a recipient."""
        return [r.message for r in self.received if address in r.rcpt_tos]

    async def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (a deadline for polling another thread's list)
    ) -> list[Received]:
        """Poll until ``predicate(received)`` holds; AssertionError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                # Polled: aiosmtpd fills the list from its own thread and event loop.
                while not predicate(self.received):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"SMTP server: condition not met within {timeout} s") from None
        return self.received

    def start(self) -> None:
        self._controller.start()

    def restart(self) -> None:
        """Stop (dropping every connection a client holds) and listen again on the same port,
        keeping what was received."""
        self._controller.stop()
        self._controller = Controller(self._collector, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    """Start a server for the block, stop it after."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
