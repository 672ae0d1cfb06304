"""Firm members through HTTP: invitations by the real emailed link, role rules, at least one
owner, removal ending sessions at once, and every change in the firm's audit chain."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.audit import chain
from app.auth import members, passwords, tokens
from app.auth.actor import Actor, ActorType, Role
from app.db.tenant import tenant_transaction
from tests.auth.test_flows import RESET, RESET_REQUEST
from tests.browser import (
    PASSWORD,
    SIGN_IN,
    SIGN_UP,
    VERIFY,
    Browser,
    NewBrowser,
    codes,
    link_token,
    new_email,
    signed_up,
)
from tests.factories import until_lock_waited, until_locks_waited, user_and_firm
from tests.mail.smtp import SmtpServer

INVITED = "You are invited"
INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
ACCEPT = """mutation($t: String!, $s: Boolean! = false) {
  acceptInvitation(token: $t, switchAccount: $s) { userId firmId role emailVerified } }"""
MEMBERS = "{ members { userId email role emailVerified } }"
CHANGE = """mutation($input: MemberRoleChangeInput!) {
  changeMemberRole(input: $input) { member { userId email role } } }"""
REMOVE = "mutation($u: UUID!) { removeMember(userId: $u) { ok } }"
INVITATIONS = "{ invitations { id email role invitedBy createdAt expiresAt } }"
JOINED = """{ auditEntries(first: 10, filter: {action: "member.joined"}) {
    edges { node { details } } } }"""
REVOKE_INVITATION = "mutation($id: UUID!) { revokeInvitation(id: $id) { ok } }"
UPDATE_FIRM = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { name } } }"
MY_FIRMS = "{ myFirms { firmId role active } }"
WHO = "{ viewer { role user { id email } firm { id } } }"
FIRM = "{ firm { id name } }"


@dataclass(frozen=True)
class Joined:
    browser: Browser
    email: str
    user_id: str


async def whoami(browser: Browser) -> dict[str, Any]:
    body = await browser.gql(WHO)
    assert "errors" not in body, body
    viewer: dict[str, Any] = body["data"]["viewer"]
    return viewer


async def firm_id_of(browser: Browser) -> str:
    body = await browser.gql(FIRM)
    assert "errors" not in body, body
    firm_id: str = body["data"]["firm"]["id"]
    return firm_id


async def invite(browser: Browser, email: str, role: str) -> dict[str, Any]:
    return await browser.gql(INVITE, {"input": {"email": email, "role": role}})


async def invited(browser: Browser, smtp: SmtpServer, email: str, role: str) -> str:
    """Invite ``email`` and return the token from the invitation email it receives."""
    body = await invite(browser, email, role)
    assert body == {"data": {"inviteMember": {"ok": True}}}, body
    return await link_token(smtp, email, INVITED)


async def join(inviter: Browser, smtp: SmtpServer, guest: Browser, role: str) -> Joined:
    """A new address, invited by ``inviter``, accepts in ``guest`` (a fresh browser)."""
    email = new_email()
    token = await invited(inviter, smtp, email, role)
    body = await guest.gql(ACCEPT, {"t": token})
    assert "errors" not in body, body
    assert body["data"]["acceptInvitation"]["role"] == role, body
    return Joined(guest, email, body["data"]["acceptInvitation"]["userId"])


async def members_of(browser: Browser) -> list[dict[str, Any]]:
    body = await browser.gql(MEMBERS)
    assert "errors" not in body, body
    found: list[dict[str, Any]] = body["data"]["members"]
    return sorted(found, key=lambda m: m["email"])


async def change_role(browser: Browser, user_id: str, role: str) -> dict[str, Any]:
    return await browser.gql(CHANGE, {"input": {"userId": user_id, "role": role}})


async def test_an_invited_address_joins_the_owners_firm_as_a_member(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    owner_email = await signed_up(browser, smtp, firm="Invitation Test Ltd")
    firm_id = await firm_id_of(browser)
    email = new_email()

    body = await invite(browser, email, "MEMBER")
    assert body == {"data": {"inviteMember": {"ok": True}}}
    token = await link_token(smtp, email, INVITED)
    mail = next(m for m in smtp.to(email) if INVITED in str(m["subject"]))
    assert str(mail["subject"]) == "You are invited to Invitation Test Ltd on CoverProof"

    guest = new_browser()
    assert guest.session_cookie is None
    body = await guest.gql(ACCEPT, {"t": token})
    assert "errors" not in body, body
    payload = body["data"]["acceptInvitation"]
    assert payload["firmId"] == firm_id
    assert payload["role"] == "MEMBER"
    assert payload["emailVerified"] is True
    assert guest.session_cookie is not None

    assert await firm_id_of(guest) == firm_id
    me = await whoami(guest)
    assert me == {
        "role": "MEMBER",
        "user": {"id": payload["userId"], "email": email},
        "firm": {"id": firm_id},
    }
    assert [
        {k: m[k] for k in ("email", "role", "emailVerified")} for m in await members_of(browser)
    ] == sorted(
        [
            {"email": owner_email, "role": "OWNER", "emailVerified": True},
            {"email": email, "role": "MEMBER", "emailVerified": True},
        ],
        key=lambda m: str(m["email"]),
    )


async def test_an_invitation_token_works_once_and_only_for_invitations(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    email = new_email()
    token = await invited(browser, smtp, email, "MEMBER")
    first = new_browser()
    body = await first.gql(ACCEPT, {"t": token})
    assert "errors" not in body, body

    again = new_browser()
    body = await again.gql(ACCEPT, {"t": token})
    assert body["data"] is None
    assert codes(body) == ["TOKEN_USED"]
    assert again.session_cookie is None

    # An unused verification link of someone who has not verified yet.
    pending, pending_email = new_browser(), new_email()
    variables = {"input": {"email": pending_email, "password": PASSWORD, "firmName": "Pending"}}
    assert (await pending.gql(SIGN_UP, variables))["data"]["signUp"]["accepted"] is True
    verification = await link_token(smtp, pending_email, "Confirm your email")
    wrong = new_browser()
    body = await wrong.gql(ACCEPT, {"t": verification})
    assert body["data"] is None
    assert codes(body) == ["TOKEN_WRONG_PURPOSE"]
    assert wrong.session_cookie is None
    # ...and it was not spent by the attempt.
    body = await pending.gql(VERIFY, {"t": verification, "p": PASSWORD})
    assert body["data"]["verifyEmail"]["emailVerified"] is True, body

    garbage = new_browser()
    body = await garbage.gql(ACCEPT, {"t": "not-a-real-invitation-token"})
    assert body["data"] is None
    assert codes(body) == ["TOKEN_INVALID"]
    assert garbage.session_cookie is None


async def test_an_existing_user_of_another_firm_joins_a_second_firm(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp, firm="Inviting Firm Ltd")
    inviting_firm = await firm_id_of(browser)
    other = new_browser()
    email = await signed_up(other, smtp, firm="Home Firm Ltd")
    home_firm = await firm_id_of(other)
    cookie_before = other.session_cookie

    token = await invited(browser, smtp, email, "ADMIN")
    body = await other.gql(ACCEPT, {"t": token, "s": True})  # signed in to their own firm
    assert "errors" not in body, body
    assert body["data"]["acceptInvitation"]["firmId"] == inviting_firm
    assert body["data"]["acceptInvitation"]["role"] == "ADMIN"
    assert other.session_cookie not in (None, cookie_before)

    body = await other.gql(MY_FIRMS)
    assert "errors" not in body, body
    assert sorted(body["data"]["myFirms"], key=lambda f: f["firmId"]) == sorted(
        [
            {"firmId": home_firm, "role": "OWNER", "active": False},
            {"firmId": inviting_firm, "role": "ADMIN", "active": True},
        ],
        key=lambda f: str(f["firmId"]),
    )
    assert await firm_id_of(other) == inviting_firm
    assert {"email": email, "role": "ADMIN"} in [
        {"email": m["email"], "role": m["role"]} for m in await members_of(browser)
    ]


async def test_accepting_an_invitation_withdraws_the_firms_others_to_the_address(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    """Each would sign the address's user in, as the accepted one did, for days."""
    await signed_up(browser, smtp, firm="Inviting Firm Ltd")
    guest, email = new_browser(), new_email()
    first = await invited(browser, smtp, email, "MEMBER")
    assert await invite(browser, email, "ADMIN") == {"data": {"inviteMember": {"ok": True}}}
    await smtp.wait_for(lambda _: len([m for m in smtp.to(email) if INVITED in m["subject"]]) == 2)
    second = await link_token(smtp, email, INVITED)
    assert first != second
    assert "errors" not in await guest.gql(ACCEPT, {"t": second})
    assert (await browser.gql(INVITATIONS))["data"]["invitations"] == []
    assert codes(await new_browser().gql(ACCEPT, {"t": first})) == ["TOKEN_USED"]
    # The withdrawal is on the firm's trail, with the joining it came with.
    body = await browser.gql(JOINED)
    joined = [e["node"]["details"] for e in body["data"]["auditEntries"]["edges"]]
    assert joined == [{"role": "admin", "invitations": 1}], body


async def test_a_member_is_not_invited_to_their_own_firm(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    """It could do nothing; and a member holding one would have its acceptance take the
    firm's chain lock before their own row, which their sign-in takes the other way round."""
    owner_email = await signed_up(browser, smtp, firm="Already Ltd")
    joined = await join(browser, smtp, new_browser(), "MEMBER")
    for email in (owner_email, joined.email.upper()):
        body = await invite(browser, email, "ADMIN")
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["fields"][0]["field"] == "email", body
    assert (await browser.gql(INVITATIONS))["data"]["invitations"] == []


async def test_an_invitation_to_one_already_a_member_is_refused_before_their_row(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    """An invitation sent before invite_member refused members (or by the release before, in a
    rolling deploy) may be pending for someone who has joined since: accepting it is refused as
    used before it takes their row, which their sign-in takes before the firm's lock."""
    await signed_up(browser, smtp, firm="Legacy Ltd")
    guest = new_browser()
    email = await signed_up(guest, smtp, firm="Guest's Own Ltd")
    token = await invited(browser, smtp, email, "MEMBER")
    firm_id = await firm_id_of(browser)
    async with superuser_engine.begin() as conn:  # joined meanwhile, as only old code allowed
        await conn.execute(
            text(
                "insert into memberships (firm_id, user_id, role) "
                "select :f, id, 'viewer' from users where email = :e"
            ),
            {"f": firm_id, "e": email},
        )
    assert codes(await new_browser().gql(ACCEPT, {"t": token})) == ["TOKEN_USED"]


async def test_a_spent_invitation_link_waits_for_no_firms_lock(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """The lookup names pending invitations only: a link already accepted is refused without
    queueing on the firm's chain lock, which every audited write of the firm takes."""
    await signed_up(browser, smtp, firm="Spent Link Ltd")
    token = await invited(browser, smtp, new_email(), "MEMBER")
    assert "errors" not in await new_browser().gql(ACCEPT, {"t": token})
    firm_id = uuid.UUID(await firm_id_of(browser))
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text("select pg_advisory_xact_lock(:k)"), {"k": chain._lock_key(firm_id)}
        )
        again = await asyncio.wait_for(new_browser().gql(ACCEPT, {"t": token}), 10)
    assert codes(again) == ["TOKEN_USED"]


async def test_an_invitation_withdrawn_as_it_is_accepted_ends_cleanly(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The acceptance takes the firm's chain lock before the invitation's row, as withdrawing
    it does: held after redeeming it, it kept the row while the withdrawal, holding the lock,
    waited for it, and then waited for the lock (a deadlock, one answered 500). Now the
    withdrawal waits, and finds the invitation accepted."""
    await signed_up(browser, smtp, firm="Withdrawing Ltd")
    email, guest = new_email(), new_browser()
    token = await invited(browser, smtp, email, "MEMBER")
    [invitation] = (await browser.gql(INVITATIONS))["data"]["invitations"]
    redeem, redeemed, go_on = members.redeem_link, asyncio.Event(), asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        found = await redeem(*args, **kwargs)
        redeemed.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(members, "redeem_link", held)
    accepting = asyncio.ensure_future(guest.gql(ACCEPT, {"t": token}))
    await asyncio.wait_for(redeemed.wait(), 30)
    withdrawing = asyncio.ensure_future(browser.gql(REVOKE_INVITATION, {"id": invitation["id"]}))
    await until_lock_waited(superuser_engine)
    go_on.set()
    accepted, withdrawn = await accepting, await withdrawing
    assert "errors" not in accepted, accepted
    assert codes(withdrawn) == ["NOT_FOUND"], withdrawn


async def test_an_invitation_accepted_as_its_user_signs_in_by_password_ends_cleanly(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stranger signed the address up, and a wrong password is on record: the invitation,
    followed, takes the user's row, then forgives the failures (the address's row), in the
    order the stranger's sign-in under way takes them. Neither waits for the other while
    holding what it needs: no deadlock, no 500."""
    await signed_up(browser, smtp, firm="Inviting Firm Ltd")
    email, stranger = new_email(), new_browser()
    squat = {"email": email, "password": PASSWORD, "firmName": "Squat Ltd"}
    assert "errors" not in await stranger.gql(SIGN_UP, {"input": squat})
    wrong = await stranger.gql(SIGN_IN, {"e": email, "p": "not the password 123"})
    assert codes(wrong) == ["INVALID_CREDENTIALS"]
    token = await invited(browser, smtp, email, "MEMBER")
    verify, before_spent = passwords.verify_password, tokens.invited_before_spent
    checked, accepting_held, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_verify(password_hash: str | None, password: str) -> bool:
        matches = await verify(password_hash, password)
        if password == PASSWORD and not checked.is_set():
            checked.set()
            await go_on.wait()
        return matches

    async def slow_before_spent(session: AsyncSession, *args: Any) -> bool:
        accepting_held.set()  # before it takes the user's row
        await asyncio.sleep(0.3)  # the sign-in takes that row meanwhile
        return await before_spent(session, *args)

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    monkeypatch.setattr(tokens, "invited_before_spent", slow_before_spent)
    signing_in = asyncio.create_task(stranger.gql(SIGN_IN, {"e": email, "p": PASSWORD}))
    await checked.wait()
    accepting = asyncio.create_task(new_browser().gql(ACCEPT, {"t": token}))
    await accepting_held.wait()
    go_on.set()
    answers = [await signing_in, await accepting]
    assert "INTERNAL_SERVER_ERROR" not in str(answers), answers
    assert "errors" not in answers[1], answers


@pytest.mark.parametrize("ending", ["signOutEverywhere", "resetPassword"])
async def test_a_reset_or_signing_out_everywhere_spends_invitations_to_the_address(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, ending: str
) -> None:
    """An invitation signs the address's existing user in, as a magic link does: one someone
    took from the mailbox stops working with the user's own links, whichever firm sent it. The
    firm's invitation stays listed as it was: it must not learn that the address is registered,
    nor when its user reset the password."""
    await signed_up(browser, smtp, firm="Inviting Firm Ltd")
    user = new_browser()
    email = await signed_up(user, smtp, firm="Home Firm Ltd")
    token = await invited(browser, smtp, email, "MEMBER")
    if ending == "signOutEverywhere":
        assert "errors" not in await user.gql("mutation { signOutEverywhere { ok } }")
    else:
        assert "errors" not in await user.gql(RESET_REQUEST, {"e": email})
        reset = await link_token(smtp, email, "Reset your")
        assert "errors" not in await user.gql(
            RESET, {"t": reset, "p": "an entirely new passphrase 77"}
        )
    listed = (await browser.gql(INVITATIONS))["data"]["invitations"]
    assert codes(await new_browser().gql(ACCEPT, {"t": token})) == ["TOKEN_USED"]
    assert (await browser.gql(INVITATIONS))["data"]["invitations"] == listed
    assert [i["email"] for i in listed] == [email]
    # One sent afterwards works.
    await invite(browser, email, "ADMIN")
    await smtp.wait_for(lambda _: len([m for m in smtp.to(email) if INVITED in m["subject"]]) == 2)
    later = await link_token(smtp, email, INVITED)
    assert "errors" not in await new_browser().gql(ACCEPT, {"t": later})


async def _no_invitation_for(engine: AsyncEngine, email: str) -> None:
    async with engine.connect() as conn:
        tokens = await conn.scalar(
            text("select count(*) from auth_tokens where email = :e"), {"e": email}
        )
        mails = await conn.scalar(
            text("select count(*) from mail_outbox where to_address = :e"), {"e": email}
        )
    assert (tokens, mails) == (0, 0)


async def test_roles_decide_who_may_invite_change_and_remove(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Roles Ltd")
    owner_id = (await whoami(browser))["user"]["id"]
    admin = await join(browser, smtp, new_browser(), "ADMIN")
    member = await join(browser, smtp, new_browser(), "MEMBER")
    viewer = await join(browser, smtp, new_browser(), "VIEWER")
    before = await members_of(browser)
    assert sorted(m["role"] for m in before) == ["ADMIN", "MEMBER", "OWNER", "VIEWER"]

    # A member may not invite, change roles or remove anyone.
    stranger = new_email()
    body = await invite(member.browser, stranger, "MEMBER")
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    await _no_invitation_for(superuser_engine, stranger)
    body = await change_role(member.browser, viewer.user_id, "MEMBER")
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    body = await member.browser.gql(REMOVE, {"u": viewer.user_id})
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    assert await members_of(browser) == before

    # An admin may invite a member, not an owner.
    body = await invite(admin.browser, new_email(), "MEMBER")
    assert body == {"data": {"inviteMember": {"ok": True}}}
    would_be_owner = new_email()
    body = await invite(admin.browser, would_be_owner, "OWNER")
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    await _no_invitation_for(superuser_engine, would_be_owner)

    # An admin may change a member to viewer...
    body = await change_role(admin.browser, member.user_id, "VIEWER")
    assert "errors" not in body, body
    assert body["data"]["changeMemberRole"]["member"] == {
        "userId": member.user_id,
        "email": member.email,
        "role": "VIEWER",
    }
    after_change = await members_of(browser)
    assert next(m for m in after_change if m["userId"] == member.user_id)["role"] == "VIEWER"
    assert [m for m in after_change if m["userId"] != member.user_id] == [
        m for m in before if m["userId"] != member.user_id
    ]
    assert (await whoami(member.browser))["role"] == "VIEWER"

    # ...but not touch an owner, nor make anyone an owner.
    body = await change_role(admin.browser, owner_id, "ADMIN")
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    body = await change_role(admin.browser, viewer.user_id, "OWNER")
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    body = await admin.browser.gql(REMOVE, {"u": owner_id})
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    assert await members_of(browser) == after_change

    # A viewer may not change the firm.
    name_before = (await browser.gql(FIRM))["data"]["firm"]["name"]
    body = await viewer.browser.gql(UPDATE_FIRM, {"n": "Taken Over Ltd"})
    assert (body["data"], codes(body)) == (None, ["FORBIDDEN"])
    assert (await browser.gql(FIRM))["data"]["firm"]["name"] == name_before == "Roles Ltd"
    assert await members_of(browser) == after_change


async def test_a_firm_always_keeps_at_least_one_owner(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    owner_id = (await whoami(browser))["user"]["id"]
    before = await members_of(browser)

    body = await change_role(browser, owner_id, "ADMIN")
    assert (body["data"], codes(body)) == (None, ["BAD_USER_INPUT"])
    body = await browser.gql(REMOVE, {"u": owner_id})
    assert (body["data"], codes(body)) == (None, ["BAD_USER_INPUT"])
    assert await members_of(browser) == before
    assert (await whoami(browser))["role"] == "OWNER"

    second = await join(browser, smtp, new_browser(), "OWNER")
    body = await change_role(browser, second.user_id, "ADMIN")
    assert "errors" not in body, body
    assert body["data"]["changeMemberRole"]["member"]["role"] == "ADMIN"
    assert {m["userId"]: m["role"] for m in await members_of(browser)} == {
        owner_id: "OWNER",
        second.user_id: "ADMIN",
    }
    # Now the only owner again: still refused.
    body = await change_role(browser, owner_id, "MEMBER")
    assert (body["data"], codes(body)) == (None, ["BAD_USER_INPUT"])
    assert (await whoami(browser))["role"] == "OWNER"


async def test_two_owners_demoting_themselves_at_once_leave_one_owner_and_a_clean_refusal(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    first_id = (await whoami(browser))["user"]["id"]
    second = await join(browser, smtp, new_browser(), "OWNER")

    results = await asyncio.gather(
        change_role(browser, first_id, "ADMIN"),
        change_role(second.browser, second.user_id, "ADMIN"),
    )
    # One wins; the other is refused as the last owner, not with an internal error.
    assert sorted(tuple(codes(body)) for body in results) == [(), ("BAD_USER_INPUT",)]
    winner = browser if "errors" in results[0] else second.browser
    assert sorted(m["role"] for m in await members_of(winner)) == ["ADMIN", "OWNER"]


async def test_accepting_an_invitation_proves_an_unverified_users_address(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    firm_id = await firm_id_of(browser)
    pending, email = new_browser(), new_email()
    variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Unverified Ltd"}}
    assert (await pending.gql(SIGN_UP, variables))["data"]["signUp"]["accepted"] is True

    token = await invited(browser, smtp, email, "MEMBER")
    body = await pending.gql(ACCEPT, {"t": token})
    assert "errors" not in body, body
    assert body["data"]["acceptInvitation"]["emailVerified"] is True
    assert (await whoami(pending))["firm"] == {"id": firm_id}
    assert {"email": email, "role": "MEMBER", "emailVerified": True} in [
        {k: m[k] for k in ("email", "role", "emailVerified")} for m in await members_of(browser)
    ]


async def test_a_removed_members_session_stops_working_at_once(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    firm_id = await firm_id_of(browser)
    member = await join(browser, smtp, new_browser(), "MEMBER")
    assert await firm_id_of(member.browser) == firm_id

    body = await browser.gql(REMOVE, {"u": member.user_id})
    assert body == {"data": {"removeMember": {"ok": True}}}

    body = await member.browser.gql(FIRM)
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]
    assert member.user_id not in [m["userId"] for m in await members_of(browser)]

    # Ended, not only refused while they are not a member: invited back and signed in
    # elsewhere, the old cookie (or a copy of it) still does not work.
    assert (await invite(browser, member.email, "MEMBER"))["data"] == {"inviteMember": {"ok": True}}
    await smtp.wait_for(lambda _: len(smtp.to(member.email)) == 2)  # the second invitation
    token = await link_token(smtp, member.email, INVITED)
    again = new_browser()
    assert "errors" not in await again.gql(ACCEPT, {"t": token})
    assert await firm_id_of(again) == firm_id
    assert codes(await member.browser.gql(FIRM)) == ["UNAUTHENTICATED"]


async def test_an_admin_may_leave_and_their_sessions_end(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """Removing yourself ends your own sessions in the firm (the function that ends another
    member's acts for the firm's admins, which the leaver no longer is)."""
    await signed_up(browser, smtp)
    firm_id = await firm_id_of(browser)
    admin = await join(browser, smtp, new_browser(), "ADMIN")
    body = await admin.browser.gql(REMOVE, {"u": admin.user_id})
    assert body == {"data": {"removeMember": {"ok": True}}}, body
    assert codes(await admin.browser.gql(FIRM)) == ["UNAUTHENTICATED"]
    async with superuser_engine.connect() as conn:
        live = await conn.scalar(
            text("select count(*) from sessions where user_id = :u and revoked_at is null"),
            {"u": admin.user_id},
        )
        removed = (
            await conn.execute(
                text(
                    "select actor_id, details from audit_log where firm_id = :f "
                    "and action = 'member.removed'"
                ),
                {"f": firm_id},
            )
        ).one()
    assert live == 0
    assert (removed.actor_id, removed.details) == (
        admin.user_id,
        {"role": "admin", "sessions": 1, "invitations": 0, "api_keys": 0},
    )


async def test_every_membership_change_is_in_the_firms_audit_chain(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    firm_id = await firm_id_of(browser)
    owner_id = (await whoami(browser))["user"]["id"]
    email = new_email()
    token = await invited(browser, smtp, email, "MEMBER")
    guest = new_browser()
    body = await guest.gql(ACCEPT, {"t": token})
    assert "errors" not in body, body
    user_id = body["data"]["acceptInvitation"]["userId"]
    assert "errors" not in await change_role(browser, user_id, "VIEWER")
    assert await browser.gql(REMOVE, {"u": user_id}) == {"data": {"removeMember": {"ok": True}}}

    async with superuser_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select action, actor_id, target_id, details, canonical from audit_log "
                    "where firm_id = :f order by seq"
                ),
                {"f": uuid.UUID(firm_id)},
            )
        ).all()
        everywhere = (await conn.execute(text("select canonical from audit_log"))).scalars()
        all_canonical = [bytes(c) for c in everywhere]
        invitation = await conn.scalar(
            text("select id::text from auth_tokens where email = :e and purpose = 'invitation'"),
            {"e": email},
        )
    member_rows = [
        (r.action, r.actor_id, r.target_id, r.details)
        for r in rows
        if r.action.startswith("member.")
    ]
    assert member_rows == [
        ("member.invited", owner_id, invitation, {"email": email, "role": "member"}),
        ("member.joined", user_id, user_id, {"role": "member", "invitations": 0}),
        ("member.role_changed", owner_id, user_id, {"from": "member", "to": "viewer"}),
        ("member.removed", owner_id, user_id, {"role": "viewer", "sessions": 1, "invitations": 0}),
    ]
    payload = token.split(".")[0]
    for canonical in [bytes(r.canonical) for r in rows] + all_canonical:
        assert token.encode() not in canonical
        assert payload.encode() not in canonical

    async with AsyncSession(superuser_engine) as session:
        verification = await chain.verify(session, uuid.UUID(firm_id))
    assert verification.ok, verification
    assert verification.entries_checked == len(rows)


async def test_a_retried_invitation_with_its_key_sends_one_invitation(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp, firm="Retry Invitations Ltd")
    email = new_email()
    once = {"email": email, "role": "MEMBER", "idempotencyKey": "invite-1"}
    for _ in range(3):
        assert await browser.gql(INVITE, {"input": once}) == {
            "data": {"inviteMember": {"ok": True}}
        }
    async with superuser_engine.connect() as conn:
        counts = (
            await conn.execute(
                text(
                    "select (select count(*) from auth_tokens where email = :e), "
                    "(select count(*) from mail_outbox where to_address = :e), "
                    "(select count(*) from audit_log where action = 'member.invited' "
                    "and details->>'email' = :e)"
                ),
                {"e": email},
            )
        ).one()
    assert tuple(counts) == (1, 1, 1)
    # The key names one invitation: for another role or address it is refused.
    for other in ({**once, "role": "ADMIN"}, {**once, "email": new_email()}):
        body = await browser.gql(INVITE, {"input": other})
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    # Without a key, a second invitation is sent.
    plain = {"email": email, "role": "MEMBER"}
    assert "errors" not in await browser.gql(INVITE, {"input": plain})
    async with superuser_engine.connect() as conn:
        tokens = await conn.scalar(
            text("select count(*) from auth_tokens where email = :e"), {"e": email}
        )
    assert tokens == 2


async def test_an_address_signed_up_by_a_stranger_cannot_be_confirmed_into_their_hands(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """A stranger signs up with the victim's address and a password of their own; the victim
    clicks the confirmation link unawares. Without that password the address stays unproved,
    so when the victim's firm invites them, accepting clears the stranger's password: the
    stranger cannot sign in and switch into the victim's firm."""
    victim = new_email()
    stranger = new_browser()
    chosen = "the stranger's own passphrase 42"
    signed = {"input": {"email": victim, "password": chosen, "firmName": "Stranger Ltd"}}
    assert "errors" not in await stranger.gql(SIGN_UP, signed)
    confirm = await link_token(smtp, victim, "Confirm your email")
    for guess in (None, "", "not the password at all"):
        body = await new_browser().gql(VERIFY, {"t": confirm, "p": guess})
        assert codes(body) == ["INVALID_CREDENTIALS"], body
    assert await _verified(superuser_engine, victim) is False

    await signed_up(browser, smtp, firm="Victim's Firm Ltd")
    invite = {"input": {"email": victim, "role": "MEMBER"}}
    assert "errors" not in await browser.gql(INVITE, invite)
    token = await link_token(smtp, victim, "You are invited")
    assert "errors" not in await new_browser().gql(ACCEPT, {"t": token})
    assert await _verified(superuser_engine, victim) is True
    body = await stranger.gql(SIGN_IN, {"e": victim, "p": chosen})
    assert codes(body) == ["INVALID_CREDENTIALS"]


async def _verified(engine: AsyncEngine, email: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("select email_verified_at is not null from users where email = :e"), {"e": email}
        )
    assert isinstance(found, bool)
    return found


async def test_a_removed_admin_cannot_come_back_through_an_invitation_they_sent(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """About to be removed, an admin invites an address of their own; removing them withdraws
    every pending invitation they sent (and any to their address), so its link does nothing."""
    await signed_up(browser, smtp, firm="Careful Firm Ltd")
    admin = new_browser()
    joined = await join(browser, smtp, admin, "ADMIN")
    personal = new_email()
    backdoor = await invited(admin, smtp, personal, "ADMIN")
    kept = await invited(browser, smtp, new_email(), "MEMBER")  # the owner's own: it stays
    assert "errors" not in await browser.gql(REMOVE, {"u": joined.user_id})
    assert codes(await new_browser().gql(ACCEPT, {"t": backdoor})) == ["TOKEN_USED"]
    listed = (await browser.gql(INVITATIONS))["data"]["invitations"]
    assert personal not in [i["email"] for i in listed]
    assert "errors" not in await new_browser().gql(ACCEPT, {"t": kept})
    async with superuser_engine.connect() as conn:
        details = await conn.scalar(
            text(
                "select details from audit_log where action = 'member.removed' and target_id = :u"
            ),
            {"u": joined.user_id},
        )
    assert details == {"role": "admin", "sessions": 1, "invitations": 1, "api_keys": 0}


async def test_a_demoted_admin_cannot_come_back_through_an_invitation_they_sent(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """Demoted below admin, a member may no longer invite: the invitations they sent go too,
    or one to an address of theirs would bring the role back."""
    await signed_up(browser, smtp, firm="Demoting Ltd")
    admin = new_browser()
    joined = await join(browser, smtp, admin, "ADMIN")
    backdoor = await invited(admin, smtp, new_email(), "ADMIN")
    assert "errors" not in await change_role(browser, joined.user_id, "MEMBER")
    assert codes(await new_browser().gql(ACCEPT, {"t": backdoor})) == ["TOKEN_USED"]
    async with superuser_engine.connect() as conn:
        details = await conn.scalar(
            text(
                "select details from audit_log where action = 'member.role_changed' "
                "and target_id = :u"
            ),
            {"u": joined.user_id},
        )
    assert details == {"from": "admin", "to": "member", "invitations": 1, "api_keys": 0}


async def test_an_invitation_sent_while_its_sender_is_being_removed_is_refused(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The removal holds the firm's lock; an invitation the admin sends meanwhile waits for it,
    then finds its sender no longer a member, so none survives the withdrawal that missed it."""
    owner_email = await signed_up(browser, smtp, firm="Racing Ltd")
    admin = new_browser()
    joined = await join(browser, smtp, admin, "ADMIN")
    owner_id, firm_id = await user_and_firm(superuser_engine, owner_email)
    owner = Actor(ActorType.USER, uuid.UUID(owner_id), uuid.UUID(firm_id), Role.OWNER)
    late = new_email()
    async with tenant_transaction(app_sessions, owner.firm_id, owner.id) as session:
        await members.remove_member(session, owner, uuid.UUID(joined.user_id))
        sending = asyncio.create_task(invite(admin, late, "ADMIN"))
        await until_lock_waited(superuser_engine)
    assert codes(await sending) == ["FORBIDDEN"]
    async with superuser_engine.connect() as conn:
        made = await conn.scalar(
            text("select count(*) from auth_tokens where email = :e"), {"e": late}
        )
    assert made == 0


async def test_only_admins_list_or_withdraw_invitations_and_only_owners_an_owners(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp, firm="Withdrawing Ltd")
    admin, member = new_browser(), new_browser()
    await join(browser, smtp, admin, "ADMIN")
    await join(browser, smtp, member, "MEMBER")
    await invited(browser, smtp, new_email(), "OWNER")
    [owners] = (await browser.gql(INVITATIONS))["data"]["invitations"]
    assert codes(await member.gql(INVITATIONS)) == ["FORBIDDEN"]
    assert codes(await member.gql(REVOKE_INVITATION, {"id": owners["id"]})) == ["FORBIDDEN"]
    assert codes(await admin.gql(REVOKE_INVITATION, {"id": owners["id"]})) == ["FORBIDDEN"]
    assert codes(await browser.gql(REVOKE_INVITATION, {"id": str(uuid.uuid4())})) == ["NOT_FOUND"]
    # Another firm's owner neither sees it nor withdraws it.
    stranger = new_browser()
    await signed_up(stranger, smtp, firm="Elsewhere Ltd")
    assert (await stranger.gql(INVITATIONS))["data"]["invitations"] == []
    assert codes(await stranger.gql(REVOKE_INVITATION, {"id": owners["id"]})) == ["NOT_FOUND"]
    assert "errors" not in await browser.gql(REVOKE_INVITATION, {"id": owners["id"]})
    assert codes(await browser.gql(REVOKE_INVITATION, {"id": owners["id"]})) == ["NOT_FOUND"]


async def test_an_owner_made_admin_cannot_come_back_through_an_owner_invitation_they_sent(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    """An admin may not invite an owner: the owner invitations an owner sent go when they are
    made an admin (or, accepted at an address of theirs, would make them an owner again); the
    others they sent stay, as an admin may send those."""
    await signed_up(browser, smtp, firm="Owners Two Ltd")
    second = new_browser()
    joined = await join(browser, smtp, second, "OWNER")
    owner_invitation = await invited(second, smtp, new_email(), "OWNER")
    member_invitation = await invited(second, smtp, new_email(), "MEMBER")
    assert "errors" not in await change_role(browser, joined.user_id, "ADMIN")
    refused = await new_browser().gql(ACCEPT, {"t": owner_invitation})
    assert codes(refused) == ["TOKEN_USED"], refused
    body = await new_browser().gql(ACCEPT, {"t": member_invitation})
    assert body["data"]["acceptInvitation"]["role"] == "MEMBER", body


async def test_a_member_removed_after_asking_for_a_reset_still_takes_their_account_back(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """Removed from their only firm after asking, they still reset their password with the
    link (it was a 500: the reset recorded in the firm they are in now, and they are in none),
    recorded on the platform chain, and every session of theirs ends."""
    await signed_up(browser, smtp)
    member = await join(browser, smtp, new_browser(), "MEMBER")
    asked = await new_browser().gql(RESET_REQUEST, {"e": member.email})
    assert "errors" not in asked, asked
    token = await link_token(smtp, member.email, "Reset your")
    assert "errors" not in await browser.gql(REMOVE, {"u": member.user_id})
    reset = await new_browser().gql(RESET, {"t": token, "p": "a brand new passphrase 2026"})
    assert reset == {"data": {"resetPassword": {"ok": True}}}, reset
    async with superuser_engine.connect() as conn:
        found = await conn.execute(
            text(
                "select firm_id, actor_id, target_id from audit_log "
                "where action = 'auth.password_reset.completed' and target_id = :u"
            ),
            {"u": member.user_id},
        )
        assert [tuple(row) for row in found] == [(None, member.user_id, member.user_id)]


async def test_accepting_an_invitation_as_its_address_signs_up_accepts_for_the_new_account(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    """An acceptance looked the address up while its sign-up was uncommitted, then waited on
    that user's row as it added its own, and failed on the address's uniqueness: an internal
    error. It now runs again, and joins the account the sign-up made."""
    await signed_up(browser, smtp)
    email = new_email()
    token = await invited(browser, smtp, email, "MEMBER")
    async with superuser_engine.connect() as holder:
        # The platform chain's lock: the sign-up waits for it with its user added.
        await holder.execute(text("select pg_advisory_xact_lock(0)"))
        variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Race Ltd"}}
        signing_up = asyncio.ensure_future(new_browser().gql(SIGN_UP, variables))
        await until_lock_waited(superuser_engine)
        accepting = asyncio.ensure_future(new_browser().gql(ACCEPT, {"t": token}))
        await until_locks_waited(superuser_engine, 2)  # on the sign-up's user
        await holder.rollback()
    assert "errors" not in await signing_up
    accepted = await accepting
    assert "errors" not in accepted, accepted
    async with superuser_engine.connect() as conn:
        users = await conn.scalar(text("select count(*) from users where email = :e"), {"e": email})
        firms = await conn.scalar(
            text(
                "select count(*) from memberships m join users u on u.id = m.user_id "
                "where u.email = :e"
            ),
            {"e": email},
        )
    assert (users, firms) == (1, 2)  # one account, in its own firm and the inviting one
