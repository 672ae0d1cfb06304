"""The email-bombing, credential-stuffing and link-guessing limits are applied where they are
promised, through the API, each at its policy's number (tests/ratelimit/test_policies.py holds
the numbers; these fail if a limit stops being applied)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.ratelimit.policies import Policy
from tests.browser import (
    MAGIC,
    MAGIC_SIGN_IN,
    PASSWORD,
    SIGN_IN,
    SIGN_UP,
    VERIFY,
    Browser,
    browser_for,
    codes,
    link_token,
    new_email,
    signed_up,
)
from tests.mail.smtp import SmtpServer

FORM = "query($t: String!) { recipientForm(token: $t) { firmName } }"


def _limit(policy: Policy) -> int:
    return int(policy.item.amount)


async def _each_from_a_new_address(
    app: Starlette, query: str, variables: dict[str, str]
) -> list[str]:
    browser = browser_for(app)
    async with browser.client:
        return codes(await browser.gql(query, variables))


async def test_mail_to_one_address_stops_at_its_limit_from_any_number_of_callers(
    auth_app: Starlette, browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)  # the verification mail is the first send
    limit = _limit(Policy.MAIL_SEND_PER_EMAIL)
    answers = [await _each_from_a_new_address(auth_app, MAGIC, {"e": email}) for _ in range(limit)]
    assert answers == [[]] * (limit - 1) + [["RATE_LIMITED"]]
    async with superuser_engine.connect() as conn:
        queued = await conn.scalar(
            text("select count(*) from mail_outbox where to_address = :e"), {"e": email}
        )
    assert queued == limit


async def test_one_caller_stops_at_its_mail_limit_across_addresses(browser: Browser) -> None:
    limit = _limit(Policy.MAIL_SEND_PER_IP)
    answers = [codes(await browser.gql(MAGIC, {"e": new_email()})) for _ in range(limit + 1)]
    assert answers == [[]] * limit + [["RATE_LIMITED"]]


async def test_one_caller_stops_at_its_sign_in_limit_across_addresses(browser: Browser) -> None:
    limit = _limit(Policy.SIGN_IN_PER_IP)
    answers = [
        codes(await browser.gql(SIGN_IN, {"e": new_email(), "p": PASSWORD}))
        for _ in range(limit + 1)
    ]
    assert answers == [["INVALID_CREDENTIALS"]] * limit + [["RATE_LIMITED"]]


async def test_one_caller_stops_at_its_sign_up_limit(browser: Browser) -> None:
    limit = _limit(Policy.SIGN_UP_PER_IP)
    answers = []
    for n in range(limit + 1):
        variables = {"input": {"email": new_email(), "password": PASSWORD, "firmName": f"F{n}"}}
        answers.append(codes(await browser.gql(SIGN_UP, variables)))
    assert answers == [[]] * limit + [["RATE_LIMITED"]]


async def test_one_caller_guessing_links_stops_at_its_limit(auth_app: Starlette) -> None:
    limit = _limit(Policy.PUBLIC_TOKEN_PER_IP)
    browser = browser_for(auth_app)
    async with browser.client:
        answers = [
            codes(await browser.gql(FORM, {"t": secrets.token_urlsafe(32)}))
            for _ in range(limit + 1)
        ]
        # Another caller is not held back by this one.
        other = browser_for(auth_app)
        async with other.client:
            assert codes(await other.gql(FORM, {"t": secrets.token_urlsafe(32)})) == [
                "TOKEN_INVALID"
            ]
    assert answers == [["TOKEN_INVALID"]] * limit + [["RATE_LIMITED"]]


# Every field that redeems a link of ours (not only the recipients' forms) is limited too.
LINKS = {
    "verifyEmail": (VERIFY, {}),
    "signInWithMagicLink": (MAGIC_SIGN_IN, {}),
    "resetPassword": (
        "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) { ok } }",
        {"p": PASSWORD},
    ),
    "acceptInvitation": ("mutation($t: String!) { acceptInvitation(token: $t) { firmId } }", {}),
}


@pytest.mark.parametrize("field", LINKS)
async def test_one_caller_guessing_account_links_stops_at_its_limit(
    auth_app: Starlette, field: str
) -> None:
    query, extra = LINKS[field]
    limit = _limit(Policy.PUBLIC_TOKEN_PER_IP)
    browser = browser_for(auth_app)
    async with browser.client:
        answers = [
            codes(await browser.gql(query, {"t": secrets.token_urlsafe(32), **extra}))
            for _ in range(limit + 1)
        ]
    assert answers == [["TOKEN_INVALID"]] * limit + [["RATE_LIMITED"]]


@pytest.mark.parametrize("field", LINKS)
async def test_one_account_link_answers_at_most_its_limit_from_any_number_of_callers(
    auth_app: Starlette, field: str
) -> None:
    query, extra = LINKS[field]
    limit = _limit(Policy.PUBLIC_TOKEN_PER_TOKEN)
    token = secrets.token_urlsafe(32)
    answers = [
        await _each_from_a_new_address(auth_app, query, {"t": token, **extra})
        for _ in range(limit + 1)
    ]
    assert answers == [["TOKEN_INVALID"]] * limit + [["RATE_LIMITED"]]


def _spelled(token: str, n: int) -> str:
    """The same link spelled the ``n``th other way that its signature's base64 reads alike:
    padded with "=", or with characters outside the alphabet inside it."""
    signed, signature = token.rsplit(".", 1)
    if n % 2:
        return token + "=" * (n // 2 + 1)
    return f"{signed}.{signature[:4]}{'!' * 4 * (n // 2)}{signature[4:]}"


async def test_one_link_spelled_many_ways_is_limited_as_one(
    auth_app: Starlette, browser: Browser, smtp: SmtpServer
) -> None:
    """Each spelling of a spent link (a replay, refused and recorded each time) counts against
    the one link's limit; keyed on the text, each had a limit of its own."""
    limit = _limit(Policy.PUBLIC_TOKEN_PER_TOKEN)
    email = await signed_up(browser, smtp)
    assert codes(await browser.gql(MAGIC, {"e": email})) == []
    token = await link_token(smtp, email, "sign-in link")
    # A spelling is the link: it signs in, and spends it.
    assert await _each_from_a_new_address(auth_app, MAGIC_SIGN_IN, {"t": _spelled(token, 1)}) == []
    answers = [
        await _each_from_a_new_address(auth_app, MAGIC_SIGN_IN, {"t": _spelled(token, n)})
        for n in range(2, limit + 2)
    ]
    assert answers == [["TOKEN_USED"]] * (limit - 1) + [["RATE_LIMITED"]]


async def test_sign_ups_refused_for_their_password_send_nothing_and_count_no_mail(
    browser: Browser, smtp: SmtpServer
) -> None:
    """A sign-up refused for a weak password sends no mail, so uses none of the address's mail
    limits: counted, the caller's sixth try, with a password we accept, was refused."""
    email = new_email()
    tries = _limit(Policy.MAIL_SEND_PER_EMAIL_AND_IP) + 1
    assert tries < _limit(Policy.SIGN_UP_PER_IP)  # only the mail limits could refuse the last
    for n in range(tries):
        password = "password1234" if n < tries - 1 else PASSWORD
        variables = {"input": {"email": email, "password": password, "firmName": f"F{n}"}}
        expected = ["BAD_USER_INPUT"] if n < tries - 1 else []
        assert codes(await browser.gql(SIGN_UP, variables)) == expected, n


async def test_a_caller_past_its_own_link_limit_uses_up_nothing_of_a_links(
    auth_app: Starlette, browser: Browser, smtp: SmtpServer
) -> None:
    """The link's limit and the caller's are counted together: refused by its own, a caller
    replaying someone's link counted against the link, and its owner was refused it."""
    email = await signed_up(browser, smtp)
    assert codes(await browser.gql(MAGIC, {"e": email})) == []
    token = await link_token(smtp, email, "sign-in link")
    hammering = browser_for(auth_app)
    async with hammering.client:
        for _ in range(_limit(Policy.PUBLIC_TOKEN_PER_IP)):
            await hammering.gql(MAGIC_SIGN_IN, {"t": secrets.token_urlsafe(32)})
        for _ in range(_limit(Policy.PUBLIC_TOKEN_PER_TOKEN)):
            assert codes(await hammering.gql(MAGIC_SIGN_IN, {"t": token})) == ["RATE_LIMITED"]
    assert await _each_from_a_new_address(auth_app, MAGIC_SIGN_IN, {"t": token}) == []
