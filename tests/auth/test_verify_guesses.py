"""verifyEmail checks the password an account signed up with, so its wrong guesses are limited
as a password sign-in's are: per address and caller, counted against the address (whose
throttle then refuses them) and on the record. Otherwise a verification link (a spare one, a
resend, stayed live after the address was confirmed) was a way to guess the password, 30 a
minute a link, uncounted, while signInWithPassword to the same address was throttled. And once
the address is confirmed, its spare links are spent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth import passwords, service, tokens
from app.ratelimit.policies import Policy
from tests.auth.test_flows import RESEND, failed_already, failures_of
from tests.browser import (
    MAGIC,
    MAGIC_SIGN_IN,
    PASSWORD,
    SIGN_IN,
    SIGN_UP,
    VERIFY,
    Browser,
    codes,
    link_token,
    new_email,
)
from tests.factories import until_lock_waited
from tests.mail.smtp import SmtpServer

WRONG = "not the password at all 42"
CONFIRM = "Confirm your email"


async def _signed_up_with_two_links(browser: Browser, smtp: SmtpServer) -> tuple[str, str, str]:
    """A password account, unconfirmed, and its two verification links (the second a resend)."""
    email = new_email()
    body = await browser.gql(
        SIGN_UP, {"input": {"email": email, "password": PASSWORD, "firmName": "Guess Ltd"}}
    )
    assert body["data"]["signUp"]["accepted"] is True, body
    first = await link_token(smtp, email, CONFIRM)
    assert "errors" not in await browser.gql(RESEND, {"e": email})
    await smtp.wait_for(lambda _: len([m for m in smtp.to(email) if CONFIRM in m["subject"]]) == 2)
    second = await link_token(smtp, email, CONFIRM)
    assert second != first
    return email, first, second


async def test_a_throttled_address_answers_no_guess_through_a_verification_link(
    browser: Browser,
    new_browser: Any,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
) -> None:
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    await failed_already(auth_app, superuser_engine, email, 104, throttled_for=600)
    guesser = new_browser()
    assert codes(await guesser.gql(SIGN_IN, {"e": email, "p": WRONG})) == ["RATE_LIMITED"]
    assert codes(await guesser.gql(VERIFY, {"t": link, "p": WRONG})) == ["RATE_LIMITED"]
    # Nor the right one: the throttle answers before any password is checked, as sign-in's.
    assert codes(await guesser.gql(VERIFY, {"t": link, "p": PASSWORD})) == ["RATE_LIMITED"]


async def test_wrong_passwords_through_a_link_count_against_the_address_and_are_recorded(
    browser: Browser,
    new_browser: Any,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
) -> None:
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    for _ in range(3):
        guess = await new_browser().gql(VERIFY, {"t": link, "p": WRONG})
        assert codes(guess) == ["INVALID_CREDENTIALS"], guess
    assert await failures_of(auth_app, superuser_engine, email) == 3
    async with superuser_engine.connect() as conn:
        recorded = await conn.scalar(
            text(
                "select count(*) from audit_log a join users u on u.id = a.actor_id::uuid "
                "where u.email = :e and a.action = 'auth.sign_in.failed'"
            ),
            {"e": email},
        )
    assert recorded == 3
    # The link was not spent by the refusals; the right password confirms, and forgives them.
    confirmed = await browser.gql(VERIFY, {"t": link, "p": PASSWORD})
    assert confirmed["data"]["verifyEmail"]["emailVerified"] is True, confirmed
    assert await failures_of(auth_app, superuser_engine, email) is None


async def test_one_caller_guessing_through_a_link_stops_where_sign_in_would(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    _, link, _ = await _signed_up_with_two_links(browser, smtp)
    limit = int(Policy.SIGN_IN_PER_EMAIL_AND_IP.item.amount)
    guesser = new_browser()
    answers = [codes(await guesser.gql(VERIFY, {"t": link, "p": WRONG})) for _ in range(limit + 1)]
    assert answers == [["INVALID_CREDENTIALS"]] * limit + [["RATE_LIMITED"]]


async def test_once_confirmed_the_addresss_other_links_are_spent(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    _, first, second = await _signed_up_with_two_links(browser, smtp)
    confirmed = await browser.gql(VERIFY, {"t": first, "p": PASSWORD})
    assert confirmed["data"]["verifyEmail"]["emailVerified"] is True, confirmed
    spare = await new_browser().gql(VERIFY, {"t": second, "p": PASSWORD})
    assert codes(spare) == ["TOKEN_USED"], spare


async def test_a_sign_in_link_confirming_the_address_spends_its_confirmation_links(
    browser: Browser, new_browser: Any, smtp: SmtpServer
) -> None:
    """A sign-in link proves the address too (and clears a password chosen before): a spare
    confirmation link then signed in with no password at all, for the rest of its day."""
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    assert "errors" not in await browser.gql(MAGIC, {"e": email})
    magic = await link_token(smtp, email, "sign-in link")
    assert "errors" not in await browser.gql(MAGIC_SIGN_IN, {"t": magic})
    late = await new_browser().gql(VERIFY, {"t": link, "p": None})
    assert codes(late) == ["TOKEN_USED"], late


async def test_two_links_confirmed_at_once_meet_no_deadlock(
    browser: Browser,
    new_browser: Any,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each holds its own link (redeemed) as it goes on to the user's row, to prove the address
    and spend the others: the one that finds the other's link held leaves it to the other,
    rather than wait for it while the other waits for the row it holds."""
    _, first, second = await _signed_up_with_two_links(browser, smtp)
    bind, arrived, both = service.bind_tenant, [], asyncio.Event()

    async def together(*args: Any, **kwargs: Any) -> None:
        arrived.append(1)
        if len(arrived) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        await bind(*args, **kwargs)

    monkeypatch.setattr(service, "bind_tenant", together)
    answers = await asyncio.gather(
        new_browser().gql(VERIFY, {"t": first, "p": PASSWORD}),
        new_browser().gql(VERIFY, {"t": second, "p": PASSWORD}),
    )
    assert not [r for r in caplog.records if "deadlocked" in r.getMessage()]
    # One proves the address; the other then finds it proved, and its link as spent.
    assert sorted(codes(a) for a in answers) == [[], ["TOKEN_USED"]], answers


async def test_a_resend_racing_the_confirmation_leaves_no_live_link(
    browser: Browser, new_browser: Any, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend that found the address unconfirmed, then issued its link after the
    confirmation committed, left a link that signed in after the address was confirmed."""
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    issue, reached, go_on = service._issue_and_send, asyncio.Event(), asyncio.Event()

    async def paused(*args: Any) -> None:
        reached.set()
        await asyncio.wait_for(go_on.wait(), 10)
        await issue(*args)

    monkeypatch.setattr(service, "_issue_and_send", paused)
    resend = asyncio.create_task(new_browser().gql(RESEND, {"e": email}))
    await asyncio.wait_for(reached.wait(), 10)
    confirming = asyncio.create_task(browser.gql(VERIFY, {"t": link, "p": PASSWORD}))
    await asyncio.sleep(0.3)  # the confirmation, waiting for the resend that read the address
    go_on.set()
    assert "errors" not in await resend
    confirmed = await confirming
    assert confirmed["data"]["verifyEmail"]["emailVerified"] is True, confirmed
    await smtp.wait_for(lambda _: len([m for m in smtp.to(email) if CONFIRM in m["subject"]]) == 3)
    late = await link_token(smtp, email, CONFIRM)
    assert codes(await new_browser().gql(VERIFY, {"t": late, "p": PASSWORD})) == ["TOKEN_USED"]


async def test_no_password_is_no_guess(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
) -> None:
    """A confirmation sent without the password (a page whose box was left empty) is refused
    as before, but not counted against the address nor recorded as a failed sign-in."""
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    assert codes(await browser.gql(VERIFY, {"t": link, "p": None})) == ["INVALID_CREDENTIALS"]
    assert await failures_of(auth_app, superuser_engine, email) is None


async def test_a_link_held_by_a_refused_confirmation_is_not_left_live_by_a_sign_in_link(
    browser: Browser, new_browser: Any, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password's confirmation holds its link while the password is checked; a sign-in
    link proving the address meanwhile (clearing the password) skipped that link, and the
    refusal left it unspent: it then signed in with no password. The sign-in link waits."""
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    assert "errors" not in await browser.gql(MAGIC, {"e": email})
    magic = await link_token(smtp, email, "sign-in link")
    verify, reached, go_on = passwords.verify_password, asyncio.Event(), asyncio.Event()

    async def slow(hashed: Any, password: Any) -> bool:
        if password == WRONG:  # the guess, holding its link (redeemed, uncommitted)
            reached.set()
            await asyncio.wait_for(go_on.wait(), 10)
        return await verify(hashed, password)

    monkeypatch.setattr(passwords, "verify_password", slow)
    guess = asyncio.create_task(new_browser().gql(VERIFY, {"t": link, "p": WRONG}))
    await asyncio.wait_for(reached.wait(), 10)
    signing_in = asyncio.create_task(browser.gql(MAGIC_SIGN_IN, {"t": magic}))
    await asyncio.sleep(0.5)
    go_on.set()
    assert codes(await guess) == ["INVALID_CREDENTIALS"]
    signed_in = await signing_in
    assert "errors" not in signed_in, signed_in
    late = await new_browser().gql(VERIFY, {"t": link, "p": None})
    assert codes(late) == ["TOKEN_USED"], late


async def test_a_link_redeemed_as_a_sign_in_link_proves_the_address_is_spent(
    browser: Browser,
    new_browser: Any,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sign-in link has proved the address (clearing the password) and is spending the
    confirmation links; one redeemed meanwhile is held, so skipped, and read the cleared
    password as none to check: it signed in with no password. It finds the address proved."""
    email, link, _ = await _signed_up_with_two_links(browser, smtp)
    assert "errors" not in await browser.gql(MAGIC, {"e": email})
    magic = await link_token(smtp, email, "sign-in link")
    spend, reached, go_on = tokens.spend_unused, asyncio.Event(), asyncio.Event()

    async def paused(*args: Any, **kwargs: Any) -> None:
        if not reached.is_set():  # the sign-in link's: the row updated, the password cleared
            reached.set()
            await asyncio.wait_for(go_on.wait(), 10)
        await spend(*args, **kwargs)

    monkeypatch.setattr(tokens, "spend_unused", paused)
    signing_in = asyncio.create_task(browser.gql(MAGIC_SIGN_IN, {"t": magic}))
    await asyncio.wait_for(reached.wait(), 10)
    late = asyncio.create_task(new_browser().gql(VERIFY, {"t": link, "p": None}))
    await until_lock_waited(superuser_engine)  # the late link, on the user's row
    go_on.set()
    assert "errors" not in await signing_in
    assert codes(await late) == ["TOKEN_USED"]
