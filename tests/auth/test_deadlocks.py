"""A member's request holds its session's row (marked seen after a minute idle, or ended by a
sign-out), then takes the firm's chain lock to record. A removal took the chain lock, then the
member's session rows: the two deadlocked, and the removal held every write of the firm up
behind the member's request. It now takes the rows first (0034). And whatever deadlocks, the
transaction PostgreSQL rolls back to break it runs again, and the request is answered as if
there had been none, not with INTERNAL_SERVER_ERROR: a flow taking the lock, then the member's
session rows, as removals did, ends a sign-out, which succeeds on its second run.

Each side is played here by a superuser connection taking the same locks in the same order, so
that the side under test is the one that waits first: that one finds the deadlock and is ended
(the connection's own ``deadlock_timeout`` is longer, so it never looks)."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.audit import chain
from app.auth.actor import Role
from app.db import calls
from app.declarations.templates import load_builtins
from app.ratelimit.limiter import key_digest
from app.ratelimit.policies import Policy
from tests.factories import Members, codes, gql, until_lock_waited
from tests.partners import CREATE_KEY

REMOVE = "mutation($u: UUID!) { removeMember(userId: $u) { ok } }"
SIGN_OUT = "mutation { signOut { ok } }"
FIRM = "{ firm { id } }"
NEVER_LOOKS = text("set local deadlock_timeout = '30s'")


async def _entries(superuser: AsyncEngine, firm_id: object, action: str) -> int:
    async with superuser.connect() as conn:
        found = await conn.scalar(
            text("select count(*) from audit_log where firm_id = :f and action = :a"),
            {"f": firm_id, "a": action},
        )
    return int(found)


def _paused_at_record(
    monkeypatch: pytest.MonkeyPatch, user_id: uuid.UUID
) -> tuple[asyncio.Event, asyncio.Event]:
    """The user's first request to record, held as it comes to take the firm's chain lock (its
    work done, its record not yet made): set once reached, and let go by the second event."""
    reached, go_on = asyncio.Event(), asyncio.Event()
    locked_head = chain.locked_head

    async def held(session: Any, firm_id: Any, acting: Any = None) -> Any:
        if acting is not None and acting.id == user_id and not reached.is_set():
            reached.set()
            await go_on.wait()
        return await locked_head(session, firm_id, acting)

    monkeypatch.setattr(chain, "locked_head", held)
    return reached, go_on


async def test_a_removal_waits_for_the_members_request_holding_nothing_of_the_firms(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """The member's request holds their session's row (marked seen after a minute idle) for as
    long as it runs, a pack's render and upload say. The removal waits for it before it takes
    the firm's chain lock (0034): every other write of the firm goes on meanwhile, and the
    member's request, holding the row and then taking the lock, meets no deadlock."""
    owner = await members.create()
    member = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    key = chain._lock_key(owner.firm_id)
    async with superuser_engine.connect() as conn:
        await conn.execute(NEVER_LOOKS)
        await conn.execute(
            text("update sessions set last_seen_at = now() where user_id = :u"),
            {"u": member.user_id},
        )
        removing = asyncio.create_task(gql(client, REMOVE, {"u": str(member.user_id)}, owner))
        await until_lock_waited(superuser_engine)  # the removal, on that row
        async with superuser_engine.connect() as other:
            free = await other.scalar(text("select pg_try_advisory_xact_lock(:k)"), {"k": key})
        # The member's request records: the lock is free, so no deadlock for either.
        await conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})
        await conn.commit()
    assert free, "the removal held the firm's chain lock while it waited for the member"
    removed = await removing
    assert removed == {"data": {"removeMember": {"ok": True}}}, removed
    assert codes(await gql(client, FIRM, member=member)) == ["UNAUTHENTICATED"]
    assert await _entries(superuser_engine, owner.firm_id, "member.removed") == 1


async def test_a_sign_out_ended_to_break_a_deadlock_runs_again(
    app: Starlette, client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """And its one mutation is counted once against the member's limit, not once a run."""
    owner = await members.create()
    member = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    async with superuser_engine.connect() as conn:
        await conn.execute(NEVER_LOOKS)
        # The removal: the firm's chain lock first.
        key = chain._lock_key(owner.firm_id)
        await conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})
        signing_out = asyncio.create_task(gql(client, SIGN_OUT, member=member))
        await until_lock_waited(superuser_engine)  # the sign-out, holding its session's row
        # Then the member's sessions: waits for the sign-out, ended when it finds the deadlock.
        await conn.execute(
            text("update sessions set revoked_at = now() where user_id = :u"),
            {"u": member.user_id},
        )
        await until_lock_waited(superuser_engine)  # run again: it saw the session live
        await conn.commit()
    signed_out = await signing_out
    # Run again after the removal's end of the session: nothing left to end, nothing recorded.
    assert signed_out == {"data": {"signOut": {"ok": True}}}, signed_out
    assert await _entries(superuser_engine, owner.firm_id, "auth.signed_out") == 0
    assert await _counted(app, Policy.MUTATIONS_PER_USER, str(member.user_id)) == 1


async def _counted(app: Starlette, policy: Policy, key: str) -> int:
    limiter = app.state.coverproof.limiter
    item = limiter._item(policy)
    stats = await limiter._strategy.get_window_stats(item, key_digest(key))
    return int(item.amount - stats.remaining)


async def test_what_a_deadlocked_run_counted_is_not_counted_again_by_the_next(
    app: Starlette, client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """A link request records on the user's firm's chain, then on the platform's; played here,
    a flow taking those locks the other way round ends it. Its second run asks for the link
    again: counted once against the address's mail limits, or a rerun could be refused
    RATE_LIMITED though no mail went, and the owner lose one of the few links an hour they may
    ask for."""
    owner = await members.create()
    async with superuser_engine.connect() as conn:
        await conn.execute(NEVER_LOOKS)
        await conn.execute(text("select pg_advisory_xact_lock(0)"))  # the platform chain's
        magic = "mutation($e: String!) { requestMagicLink(email: $e) { accepted } }"
        requesting = asyncio.create_task(gql(client, magic, {"e": owner.email}))
        await until_lock_waited(superuser_engine)  # the request, holding the firm's chain lock
        # Waits for the request, ended when it finds the deadlock.
        key = chain._lock_key(owner.firm_id)
        await conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})
        await until_lock_waited(superuser_engine)  # run again
        await conn.commit()
    answered = await requesting
    assert answered == {"data": {"requestMagicLink": {"accepted": True}}}, answered
    assert await _entries(superuser_engine, owner.firm_id, "auth.magic_link.requested") == 1
    assert await _counted(app, Policy.MAIL_SEND_PER_EMAIL, owner.email.lower()) == 1


async def test_an_admin_demoted_as_their_removal_of_a_member_begins_is_refused(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Demoted after their request read their role, before it holds the member's sessions:
    refused FORBIDDEN under the chain lock, as before 0034, not a 500 from the hold."""
    owner = await members.create()
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    member = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    hold = calls.hold_member_sessions

    async def demoted_first(session: Any, user_id: object) -> None:
        async with superuser_engine.begin() as conn:
            await conn.execute(
                text("update memberships set role = 'member' where user_id = :u"),
                {"u": admin.user_id},
            )
        await hold(session, user_id)

    monkeypatch.setattr(calls, "hold_member_sessions", demoted_first)
    refused = await gql(client, REMOVE, {"u": str(member.user_id)}, admin)
    assert codes(refused) == ["FORBIDDEN"], refused
    assert "errors" not in await gql(client, FIRM, member=member)  # still a member


CREATE = (
    "mutation($i: DeclarationCreateInput!) { createDeclaration(input: $i) { declaration { id } } }"
)


async def test_a_members_request_running_as_they_are_removed_commits_nothing(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The member's request read their membership when it began; the removal commits before it
    records. Once it holds the firm's chain lock, which the removal held to its commit, it
    finds them removed: UNAUTHENTICATED, and nothing of it is written (0035). Before, the
    declaration was made and recorded as theirs after member.removed."""
    owner = await members.create()
    member = await members.create(Role.MEMBER, firm_id=owner.firm_id)
    reached, go_on = _paused_at_record(monkeypatch, member.user_id)
    fit = next(b for b in load_builtins() if b.key == "fit_and_proper")
    made = {"templateId": str(fit.id), "recipientName": "Pat", "recipientEmail": "p@example.test"}
    creating = asyncio.create_task(gql(client, CREATE, {"i": made}, member))
    await reached.wait()
    removed = await gql(client, REMOVE, {"u": str(member.user_id)}, owner)
    assert removed == {"data": {"removeMember": {"ok": True}}}, removed
    go_on.set()
    assert codes(await creating) == ["UNAUTHENTICATED"]
    async with superuser_engine.connect() as conn:
        found = await conn.scalar(
            text("select count(*) from declarations where firm_id = :f"), {"f": owner.firm_id}
        )
    assert found == 0
    assert await _entries(superuser_engine, owner.firm_id, "declaration.created") == 0


SIGN_IN = """mutation($e: String!, $p: String!) {
  signInWithPassword(email: $e, password: $p) { userId } }"""


async def test_a_refusals_record_ended_to_break_a_deadlock_runs_again(
    client: httpx.AsyncClient, members: Members, superuser_engine: AsyncEngine
) -> None:
    """A failed sign-in's record, after the rollback, counts the failure (clearing other
    addresses' month-old rows), then takes the firm's chain lock; an invitation's acceptance
    takes the lock, then clears its address's row. Ended to break the deadlock, the record runs
    again: the failure is answered, counted and on the trail, not a 500 with neither."""
    owner = await members.create()
    stale = os.urandom(32)  # another address's, last failed a month ago
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "insert into sign_in_failures (address_key, failures, last_failed_at) "
                "values (:a, 1, now() - interval '31 days')"
            ),
            {"a": stale},
        )
    async with superuser_engine.connect() as conn:
        await conn.execute(NEVER_LOOKS)
        key = chain._lock_key(owner.firm_id)
        await conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": key})
        wrong = {"e": owner.email, "p": "not the password at all"}
        signing_in = asyncio.create_task(gql(client, SIGN_IN, wrong))
        await until_lock_waited(superuser_engine)  # the record, on the chain lock
        await conn.execute(
            text("delete from sign_in_failures where address_key = :a"), {"a": stale}
        )
        await until_lock_waited(superuser_engine)  # run again: on the chain lock once more
        await conn.commit()
    assert codes(await signing_in) == ["INVALID_CREDENTIALS"]
    assert await _entries(superuser_engine, owner.firm_id, "auth.sign_in.failed") == 1


CHANGE = """mutation($input: MemberRoleChangeInput!) {
  changeMemberRole(input: $input) { member { role } } }"""


async def test_an_admin_demoted_as_their_request_runs_is_refused_what_it_was_allowed(
    client: httpx.AsyncClient,
    members: Members,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The admin's request was allowed with the role it read when it began; demoted to viewer
    before it records, it is refused FORBIDDEN once it holds the firm's chain lock (which the
    change of role held to its commit), and no key is made (0035). Before, a viewer held a
    live key with the write scope, made after their demotion."""
    owner = await members.create()
    admin = await members.create(Role.ADMIN, firm_id=owner.firm_id)
    reached, go_on = _paused_at_record(monkeypatch, admin.user_id)
    wanted = {"name": "hr", "scopes": ["DECLARATIONS_WRITE"]}
    creating = asyncio.create_task(gql(client, CREATE_KEY, {"i": wanted}, admin))
    await reached.wait()
    demoted = {"input": {"userId": str(admin.user_id), "role": "VIEWER"}}
    assert "errors" not in await gql(client, CHANGE, demoted, owner)
    go_on.set()
    refused = await creating
    assert codes(refused) == ["FORBIDDEN"], refused
    async with superuser_engine.connect() as conn:
        made = await conn.scalar(
            text("select count(*) from api_keys where firm_id = :f"), {"f": owner.firm_id}
        )
    assert made == 0
