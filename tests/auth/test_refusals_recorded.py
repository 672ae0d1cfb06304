"""A refused sign-in or link about an account is on its firm's chain once an hour per caller,
and at most ACCOUNT_REFUSALS_RECORDED an hour in all; the platform's chain has each. Anyone
who knows an address can be refused for it: recorded each time, strangers flooded the firm's
permanent trail, past what one export takes in some 33 hours."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.audit.actions import Action
from app.auth.actor import Role
from app.db.models import AuditEntry
from app.ratelimit.policies import Policy
from tests.auth.test_flows import RESET, RESET_REQUEST
from tests.auth.test_members import REMOVE, join
from tests.browser import (
    MAGIC,
    MAGIC_SIGN_IN,
    SIGN_IN,
    Browser,
    NewBrowser,
    browser_for,
    codes,
    link_token,
    loopback_ip,
    signed_up,
)
from tests.factories import Members
from tests.mail.smtp import SmtpServer


async def _recorded(superuser: AsyncEngine, action: Action, firm_id: object) -> int:
    async with superuser.connect() as conn:
        query = select(func.count()).where(
            AuditEntry.action == action.value, AuditEntry.firm_id == firm_id
        )
        return int(await conn.scalar(query) or 0)


async def _on_platform(
    superuser: AsyncEngine,
    action: Action,
    ips: list[str],
    account: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> int:
    """The platform's entries of these callers; with ``account``, those that name it (and its
    firm): kept off the firm's chain, a refusal must still say whose it was."""
    async with superuser.connect() as conn:
        query = select(func.count()).where(
            AuditEntry.action == action.value,
            AuditEntry.firm_id.is_(None),
            AuditEntry.ip.in_(ips),
        )
        if account is not None:
            user_id, firm_id = account
            query = query.where(
                AuditEntry.target_type == "user",
                AuditEntry.target_id == str(user_id),
                AuditEntry.details["firm_id"].astext == str(firm_id),
            )
        return int(await conn.scalar(query) or 0)


async def test_failed_sign_ins_are_on_the_firms_chain_once_an_hour_per_caller_and_bounded(
    auth_app: Starlette, members: Members, superuser_engine: AsyncEngine
) -> None:
    victim = await members.create(Role.OWNER)
    ceiling = int(Policy.ACCOUNT_REFUSALS_RECORDED.item.amount)
    ips = [loopback_ip() for _ in range(ceiling + 3)]
    for n, ip in enumerate(ips):
        caller = browser_for(auth_app, ip)
        async with caller.client:
            for _ in range(3 if n == 0 else 1):  # the first caller tries three times
                body = await caller.gql(SIGN_IN, {"e": victim.email, "p": "not the password 1"})
                assert codes(body) == ["INVALID_CREDENTIALS"]
    firm = await _recorded(superuser_engine, Action.SIGN_IN_FAILED, victim.firm_id)
    assert firm == ceiling
    assert await _on_platform(superuser_engine, Action.SIGN_IN_FAILED, ips) == len(ips) + 2
    account = (victim.user_id, victim.firm_id)
    kept_off = len(ips) + 2 - ceiling
    assert await _on_platform(superuser_engine, Action.SIGN_IN_FAILED, ips, account) == kept_off


async def test_a_spent_link_replayed_is_on_the_firms_chain_once_an_hour_per_caller(
    auth_app: Starlette, members: Members, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    member = await members.create(Role.MEMBER)
    asker = browser_for(auth_app)
    async with asker.client:
        assert codes(await asker.gql(MAGIC, {"e": member.email})) == []
    token = await link_token(smtp, member.email, "sign-in link")
    ips = [loopback_ip(), loopback_ip()]
    first, second = browser_for(auth_app, ips[0]), browser_for(auth_app, ips[1])
    async with first.client:
        assert codes(await first.gql(MAGIC_SIGN_IN, {"t": token})) == []  # spent
        for _ in range(3):
            assert codes(await first.gql(MAGIC_SIGN_IN, {"t": token})) == ["TOKEN_USED"]
    async with second.client:
        assert codes(await second.gql(MAGIC_SIGN_IN, {"t": token})) == ["TOKEN_USED"]
    assert await _recorded(superuser_engine, Action.TOKEN_REFUSED, member.firm_id) == 2
    # The two replays the firm's chain did not take are on the platform's.
    account = (member.user_id, member.firm_id)
    assert await _on_platform(superuser_engine, Action.TOKEN_REFUSED, ips, account) == 2


async def test_a_replayed_link_of_an_account_in_no_firm_names_the_account(
    auth_app: Starlette,
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    """An account removed from every firm has no firm's chain: the replay of its reset link is
    on the platform's, naming it (it named nobody, so tied to no account anywhere)."""
    await signed_up(browser, smtp)
    member = await join(browser, smtp, new_browser(), "MEMBER")
    caller = loopback_ip()
    asked = await new_browser().gql(RESET_REQUEST, {"e": member.email})
    assert "errors" not in asked, asked
    token = await link_token(smtp, member.email, "Reset your")
    assert "errors" not in await browser.gql(REMOVE, {"u": member.user_id})
    replaying = browser_for(auth_app, caller)
    async with replaying.client:
        reset = await replaying.gql(RESET, {"t": token, "p": "a brand new passphrase 2026"})
        assert reset == {"data": {"resetPassword": {"ok": True}}}, reset
        replayed = await replaying.gql(RESET, {"t": token, "p": "another new passphrase 2027"})
        assert codes(replayed) == ["TOKEN_USED"], replayed
    async with superuser_engine.connect() as conn:
        query = select(AuditEntry.target_type, AuditEntry.target_id).where(
            AuditEntry.action == Action.TOKEN_REFUSED.value,
            AuditEntry.firm_id.is_(None),
            AuditEntry.ip == caller,
        )
        named = (await conn.execute(query)).all()
    assert [tuple(row) for row in named] == [("user", str(member.user_id))]


async def test_a_sign_in_link_of_an_account_now_in_no_firm_is_refused_and_recorded(
    auth_app: Starlette,
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
) -> None:
    """A sign-in link sent before its account was removed from every firm answered an internal
    error (the chain of no firm was locked), each time it was followed: it is refused, FORBIDDEN,
    on the platform's chain naming the account, and stays unspent."""
    await signed_up(browser, smtp)
    member = await join(browser, smtp, new_browser(), "MEMBER")
    assert "errors" not in await new_browser().gql(MAGIC, {"e": member.email})
    token = await link_token(smtp, member.email, "sign-in link")
    assert "errors" not in await browser.gql(REMOVE, {"u": member.user_id})
    caller = loopback_ip()
    following = browser_for(auth_app, caller)
    async with following.client:
        for _ in range(2):  # not spent: the same answer again
            body = await following.gql(MAGIC_SIGN_IN, {"t": token})
            assert codes(body) == ["FORBIDDEN"], body
            assert body["errors"][0]["message"] == "You are no longer a member of any firm."
    async with superuser_engine.connect() as conn:
        query = select(AuditEntry.target_id, AuditEntry.details).where(
            AuditEntry.action == Action.TOKEN_REFUSED.value,
            AuditEntry.firm_id.is_(None),
            AuditEntry.ip == caller,
        )
        named = (await conn.execute(query)).all()
    refused = {"purpose": "magic_link", "code": "FORBIDDEN"}
    assert [tuple(row) for row in named] == [(str(member.user_id), refused)] * 2
