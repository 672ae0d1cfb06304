"""A new password set by a reset link is never written to the database, logged, mailed or
echoed back: the security page's promise about plaintext passwords, on the path that succeeds
(test_flows.py holds the refused paths, and sign-up and sign-in)."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.browser import SIGN_IN, Browser, browser_for, codes, link_token, signed_up
from tests.factories import tables_holding
from tests.mail.smtp import SmtpServer

RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) { accepted message } }"
RESET = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) { ok } }"


async def _delivered(engine: AsyncEngine, email: str) -> None:
    """Until every mail queued to ``email`` has been handed to the SMTP server."""
    for _ in range(250):
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                text("select count(*) from mail_outbox where to_address = :e and sent_at is null"),
                {"e": email},
            )
        if not waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"mail to {email} was not delivered")


async def test_a_successful_reset_never_stores_logs_mails_or_echoes_the_new_password(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The new password is unique to this test, so any appearance of it is this reset's doing.
    Every log record is searched whole (its arguments and extra fields too, not only the
    formatted message), and every mail the SMTP server has received, to anyone."""
    caplog.set_level(logging.DEBUG)
    email = await signed_up(browser, smtp)
    assert "errors" not in await browser.gql(RESET_REQUEST, {"e": email})
    token = await link_token(smtp, email, "Reset your")
    new_password = f"reset {secrets.token_hex(8)} passphrase"

    reset = await browser.post(RESET, {"t": token, "p": new_password})
    assert reset.json() == {"data": {"resetPassword": {"ok": True}}}, reset.text
    other = browser_for(auth_app)
    async with other.client:
        signed_in = await other.post(SIGN_IN, {"e": email, "p": new_password})
    assert codes(signed_in.json()) == [], signed_in.text
    assert signed_in.json()["data"]["signInWithPassword"]["emailVerified"] is True

    for answer in (reset, signed_in):
        assert new_password not in answer.text
        assert new_password not in str(answer.headers)
    assert await tables_holding(superuser_engine, new_password) == []
    await _delivered(superuser_engine, email)
    mailed = [r.message for r in smtp.received if new_password in r.message.as_string()]
    assert mailed == []
    # After the mail: the test SMTP server logs what it receives at DEBUG, so a mailed password
    # would show here too, and the failure above names the mail.
    assert caplog.records, "nothing was logged: the search below would prove nothing"
    logged = [r for r in caplog.records if new_password in f"{r.getMessage()} {vars(r)!r}"]
    assert logged == []
