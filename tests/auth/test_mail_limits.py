"""Every field that mails an address someone typed stops at that address's limit, however many
callers ask (20 an hour; 5 from any one caller): the email-bombing guard the security page
promises, applied in each place that sends (test_limits_applied.py holds the same for
requestMagicLink after a sign-up; these fail if ``limit_mail`` stops being called in any one of
them). Each call comes from a new client address, so the per-caller limits never trip first and
only the per-address one can refuse."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.actor import Role
from app.ratelimit.policies import Policy
from tests.browser import MAGIC, browser_for, codes, new_email
from tests.factories import Member, Members, gql

LIMIT = int(Policy.MAIL_SEND_PER_EMAIL.item.amount)

RESEND = "mutation($e: String!) { resendVerification(email: $e) { accepted message } }"
RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) { accepted message } }"
INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"

# The public fields: (query, a word of the subject each sends, whether the address is verified;
# a verification link is sent only to an address not verified yet).
PUBLIC = {
    "requestMagicLink": (MAGIC, "sign-in link", True),
    "resendVerification": (RESEND, "Confirm your email", False),
    "requestPasswordReset": (RESET_REQUEST, "Reset your", True),
}


async def _from_a_new_caller(
    app: Starlette, query: str, variables: dict[str, Any], member: Member | None = None
) -> list[str]:
    """The error codes of one request from a client address of its own."""
    browser = browser_for(app)
    async with browser.client:
        return codes(await gql(browser.client, query, variables, member))


async def _queued_subjects(engine: AsyncEngine, email: str) -> list[str]:
    """The subject of every mail ever queued to ``email`` (sent ones stay, without a body)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select subject from mail_outbox where to_address = :e"), {"e": email}
        )
        return [row.subject for row in rows]


@pytest.mark.parametrize("field", PUBLIC)
async def test_a_public_mail_field_stops_at_the_per_address_limit_from_any_callers(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine, field: str
) -> None:
    """The account is made in the database, so every mail to it is one this field queued."""
    query, subject, verified = PUBLIC[field]
    target = await members.create(verified=verified)
    answers = [
        await _from_a_new_caller(auth_app, query, {"e": target.email}) for _ in range(LIMIT + 1)
    ]
    assert answers == [[]] * LIMIT + [["RATE_LIMITED"]]
    queued = await _queued_subjects(superuser_engine, target.email)
    assert len(queued) == LIMIT, queued
    assert all(subject in s for s in queued), queued


async def test_invitations_to_one_address_stop_at_its_limit(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """An owner (or anyone holding an owner's session) cannot bomb an address with invitations;
    without an idempotency key each invitation is a new mail, so only the limit holds them."""
    owner = await members.create(Role.OWNER, name="Bombing Invitations Ltd")
    target = new_email()
    variables = {"input": {"email": target, "role": "MEMBER"}}
    answers = [
        await _from_a_new_caller(auth_app, INVITE, variables, owner) for _ in range(LIMIT + 1)
    ]
    assert answers == [[]] * LIMIT + [["RATE_LIMITED"]]
    queued = await _queued_subjects(superuser_engine, target)
    assert queued == ["You are invited to Bombing Invitations Ltd on CoverProof"] * LIMIT


async def test_one_caller_using_up_an_address_leaves_its_owner_a_sign_in_link(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Per address and caller, 5 an hour: a stranger asking for the owner's links from one
    place stops there, and the owner, from elsewhere, still gets one."""
    per_caller = int(Policy.MAIL_SEND_PER_EMAIL_AND_IP.item.amount)
    target = await members.create()
    stranger = browser_for(auth_app)
    async with stranger.client:
        answers = [
            codes(await stranger.gql(MAGIC, {"e": target.email})) for _ in range(per_caller + 1)
        ]
    assert answers == [[]] * per_caller + [["RATE_LIMITED"]]
    assert await _from_a_new_caller(auth_app, MAGIC, {"e": target.email}) == []
    assert len(await _queued_subjects(superuser_engine, target.email)) == per_caller + 1


async def test_callers_refused_by_their_own_limit_leave_an_address_its_mail(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    """Callers that have used up their own 20 an hour, asking on for an owner's links, are
    refused without counting against the owner's address (shared by every caller): four of
    them used to use up its 20, so the owner, from anywhere, got no link for an hour."""
    per_caller = int(Policy.MAIL_SEND_PER_IP.item.amount)
    target = await members.create()
    for _ in range(LIMIT // int(Policy.MAIL_SEND_PER_EMAIL_AND_IP.item.amount)):
        stranger = browser_for(auth_app)
        async with stranger.client:
            for _ in range(per_caller):
                assert codes(await stranger.gql(MAGIC, {"e": new_email()})) == []
            for _ in range(LIMIT):
                refused = await stranger.gql(MAGIC, {"e": target.email})
                assert codes(refused) == ["RATE_LIMITED"]
    assert await _from_a_new_caller(auth_app, MAGIC, {"e": target.email}) == []
    assert len(await _queued_subjects(superuser_engine, target.email)) == 1
