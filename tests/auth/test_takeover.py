"""An account set up by a stranger before its owner proved the address cannot be kept: once
the owner proves it through an emailed link, the stranger's sessions and password are gone."""

from __future__ import annotations

from starlette.applications import Starlette

from tests.browser import (
    FIRM,
    MAGIC,
    MAGIC_SIGN_IN,
    PASSWORD,
    SIGN_IN,
    SIGN_UP,
    Browser,
    browser_for,
    codes,
    link_token,
    new_email,
    signed_up,
)
from tests.mail.smtp import SmtpServer

INVITE = "mutation($e: String!) { inviteMember(input: {email: $e, role: MEMBER}) { ok } }"
ACCEPT = "mutation($t: String!) { acceptInvitation(token: $t) { firmId role } }"
MY_FIRMS = "{ myFirms { firmId } }"


async def _pre_registered(stranger: Browser, email: str) -> None:
    """The stranger signs up with someone else's address and their own password, and signs in
    (unverified: no firm data yet)."""
    body = await stranger.gql(
        SIGN_UP, {"input": {"email": email, "password": PASSWORD, "firmName": "Stranger Ltd"}}
    )
    assert body["data"]["signUp"]["accepted"] is True
    signed_in = await stranger.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert signed_in["data"]["signInWithPassword"]["emailVerified"] is False


async def test_accepting_an_invitation_ends_a_pre_registered_strangers_access(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    await signed_up(browser, smtp, firm="Target Firm Ltd")
    victim_email = new_email()
    stranger, victim = browser_for(auth_app), browser_for(auth_app)
    async with stranger.client, victim.client:
        await _pre_registered(stranger, victim_email)
        assert (await browser.gql(INVITE, {"e": victim_email}))["data"]["inviteMember"]["ok"]
        token = await link_token(smtp, victim_email, "You are invited")
        accepted = await victim.gql(ACCEPT, {"t": token})
        assert accepted["data"]["acceptInvitation"]["role"] == "MEMBER"
        assert "errors" not in await victim.gql(FIRM)
        # The stranger's session is over, and their password no longer signs in.
        assert codes(await stranger.gql(MY_FIRMS)) == ["UNAUTHENTICATED"]
        assert codes(await stranger.gql(FIRM)) == ["UNAUTHENTICATED"]
        retry = await stranger.gql(SIGN_IN, {"e": victim_email, "p": PASSWORD})
        assert codes(retry) == ["INVALID_CREDENTIALS"]


async def test_a_magic_link_sign_in_ends_a_pre_registered_strangers_access(
    smtp: SmtpServer, auth_app: Starlette
) -> None:
    email = new_email()
    stranger, owner = browser_for(auth_app), browser_for(auth_app)
    async with stranger.client, owner.client:
        await _pre_registered(stranger, email)
        await owner.gql(MAGIC, {"e": email})
        token = await link_token(smtp, email, "sign-in link")
        assert "errors" not in await owner.gql(MAGIC_SIGN_IN, {"t": token})
        assert codes(await stranger.gql(MY_FIRMS)) == ["UNAUTHENTICATED"]
        retry = await stranger.gql(SIGN_IN, {"e": email, "p": PASSWORD})
        assert codes(retry) == ["INVALID_CREDENTIALS"]
