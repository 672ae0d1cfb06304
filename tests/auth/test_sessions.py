"""Sessions through HTTP as a browser sees them: the cookie's attributes, a fresh id on every
sign-in, sign-out (here and everywhere), revoking a device, switching firm, and the idle and
absolute limits enforced by the server."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.auth import account, sessions
from app.auth.actor import Actor
from app.auth.sessions import COOKIE_NAME, token_hash
from app.db.tenant import tenant_transaction
from app.errors import NotFound
from tests.auth.test_flows import RESET, RESET_REQUEST
from tests.auth.test_members import ACCEPT as ACCEPT_AS_MEMBER
from tests.auth.test_members import INVITED, REMOVE, invite, invited
from tests.browser import (
    PASSWORD,
    SIGN_IN,
    Browser,
    NewBrowser,
    browser_for,
    codes,
    link_token,
    signed_up,
)
from tests.factories import until_lock_waited
from tests.mail.smtp import SmtpServer

FIRM = "{ firm { id } }"
SESSIONS = "{ sessions { id current } }"
SIGN_OUT = "mutation { signOut { ok } }"
SIGN_OUT_EVERYWHERE = "mutation { signOutEverywhere { ok } }"
REVOKE = "mutation($id: UUID!) { revokeSession(id: $id) { ok } }"
SWITCH = "mutation($f: UUID!) { switchFirm(firmId: $f) { userId firmId role emailVerified } }"
INVITE = "mutation($input: InviteMemberInput!) { inviteMember(input: $input) { ok } }"
ACCEPT = """mutation($t: String!, $s: Boolean! = false) {
  acceptInvitation(token: $t, switchAccount: $s) { firmId role } }"""
MY_FIRMS = "{ myFirms { firmId role active } }"


def session_cookies(response: httpx.Response) -> list[str]:
    return [
        header
        for header in response.headers.get_list("set-cookie")
        if header.startswith(f"{COOKIE_NAME}=")
    ]


def attributes(header: str) -> dict[str, str]:
    """The attributes of one Set-Cookie header, names lower-cased (flags map to "")."""
    found: dict[str, str] = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        found[name.lower()] = value
    return found


async def replay(stranger: Browser, cookie: str, query: str = FIRM) -> dict[str, Any]:
    """Send ``cookie`` by hand from another browser (whose own jar stays empty)."""
    assert stranger.session_cookie is None
    response = await stranger.client.post(
        "/graphql", json={"query": query}, headers={"cookie": f"{COOKIE_NAME}={cookie}"}
    )
    body: dict[str, Any] = response.json()
    return body


async def firm_id_of(browser: Browser) -> str:
    body = await browser.gql(FIRM)
    assert "errors" not in body, body
    firm_id: str = body["data"]["firm"]["id"]
    return firm_id


def unauthenticated(body: dict[str, Any]) -> bool:
    return body.get("data") is None and codes(body) == ["UNAUTHENTICATED"]


async def sign_in(browser: Browser, email: str) -> httpx.Response:
    response = await browser.post(SIGN_IN, {"e": email, "p": PASSWORD})
    assert "errors" not in response.json(), response.json()
    return response


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text(sql), params)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def test_the_session_cookie_has_exactly_the_safe_attributes(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, auth_app: Starlette
) -> None:
    email = await signed_up(browser, smtp)
    settings = auth_app.state.coverproof.settings
    response = await sign_in(new_browser(), email)

    headers = session_cookies(response)
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    header = headers[0]
    value = header.split(";")[0].removeprefix(f"{COOKIE_NAME}=")
    assert len(value) >= 43
    found = attributes(header)
    assert "httponly" in found
    assert "secure" in found
    assert found.get("samesite", "").lower() == "lax"
    assert found.get("path") == "/"
    assert "domain" not in found
    assert found.get("max-age") == str(settings.session_lifetime_hours * 3600)


async def test_every_sign_in_gets_a_new_independent_session(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    email = await signed_up(browser, smtp)
    assert (await browser.gql(SIGN_OUT))["data"] == {"signOut": {"ok": True}}

    laptop, device = new_browser(), new_browser()
    await sign_in(laptop, email)
    first = laptop.session_cookie
    await sign_in(device, email)
    second = device.session_cookie
    assert first is not None
    assert second is not None
    assert first != second

    firm_id = await firm_id_of(device)
    assert (await replay(new_browser(), first))["data"] == {"firm": {"id": firm_id}}

    body = await device.gql(SESSIONS)
    assert "errors" not in body, body
    listed = body["data"]["sessions"]
    assert len(listed) == 2
    assert len({s["id"] for s in listed}) == 2
    assert [s["current"] for s in listed].count(True) == 1
    body = await replay(new_browser(), first, SESSIONS)
    assert {s["id"] for s in body["data"]["sessions"]} == {s["id"] for s in listed}
    first_id = next(s["id"] for s in body["data"]["sessions"] if s["current"])
    assert first_id != next(s["id"] for s in listed if s["current"])

    # Signing the first one out leaves the second alone.
    assert (await replay(new_browser(), first, SIGN_OUT))["data"] == {"signOut": {"ok": True}}
    assert unauthenticated(await replay(new_browser(), first))
    assert await firm_id_of(device) == firm_id
    body = await device.gql(SESSIONS)
    assert [s["current"] for s in body["data"]["sessions"]] == [True]


async def test_signing_in_again_in_a_browser_ends_the_session_it_held(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp, firm="First Firm Ltd")
    first_firm = await firm_id_of(browser)
    held = browser.session_cookie
    assert held is not None
    held_id = await _session_id(superuser_engine, held)

    # A wrong password changes nothing: the session the browser holds goes on working.
    body = await browser.gql(SIGN_IN, {"e": email, "p": "not the password at all"})
    assert codes(body) == ["INVALID_CREDENTIALS"]
    assert browser.session_cookie == held
    assert await firm_id_of(browser) == first_firm

    # Someone else signs in on the same browser: the old session ends, copies of its cookie too.
    other = new_browser()
    other_email = await signed_up(other, smtp, firm="Second Firm Ltd")
    second_firm = await firm_id_of(other)
    await sign_in(browser, other_email)
    assert await firm_id_of(browser) == second_firm
    assert unauthenticated(await replay(new_browser(), held))
    first_trail = await _trail(superuser_engine, first_firm)
    assert _ended(first_trail) == [(str(held_id), {"replaced": True})]
    assert (
        f'"action":"auth.signed_out","actor":{{"id":"{await _user_id(superuser_engine, email)}"'
        in first_trail
    )
    # Neither firm's trail names the other, nor the other's user.
    second_trail = await _trail(superuser_engine, second_firm)
    assert second_firm not in first_trail
    assert other_email not in first_trail
    assert first_firm not in second_trail
    assert str(held_id) not in second_trail

    # The same user signing in again ends their own old session as well.
    replaced = browser.session_cookie
    assert replaced is not None
    await sign_in(browser, other_email)
    assert browser.session_cookie not in (None, replaced)
    assert unauthenticated(await replay(new_browser(), replaced))
    assert await firm_id_of(browser) == second_firm
    assert (await _live_sessions(superuser_engine, other_email))[second_firm] == 2  # its own


async def test_a_sign_in_stands_when_ending_the_session_it_replaced_fails(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sign-in has committed when the old session is ended: a failure there is logged as
    an error (the old session stays usable until it lapses) and the new session is answered."""
    email = await signed_up(browser, smtp)
    held = browser.session_cookie
    assert held is not None

    async def failing(session: object, actor: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(account, "end_replaced_session", failing)
    with caplog.at_level(logging.ERROR, logger="coverproof.graphql"):
        await sign_in(browser, email)
    assert browser.session_cookie not in (None, held)
    assert "errors" not in await browser.gql(FIRM)
    assert "errors" not in await replay(new_browser(), held)
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "work after a commit failed" in logged.getMessage()
    assert logged.exc_info is not None


async def test_a_firm_switch_leaves_no_session_to_end_after_its_commit(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A switch ends the session it leaves itself (recorded as a switch); only a sign-in over
    a held session leaves that session to end once it has committed."""
    email = await signed_up(browser, smtp)
    ended: list[object] = []
    real = account.end_replaced_session

    async def watched(session: AsyncSession, actor: Actor) -> None:
        ended.append(actor.session_id)
        await real(session, actor)

    monkeypatch.setattr(account, "end_replaced_session", watched)
    switched = await browser.post(SWITCH, {"f": await firm_id_of(browser)})
    assert "errors" not in switched.json(), switched.json()
    assert ended == []
    await sign_in(browser, email)
    assert len(ended) == 1


def _ended(trail: str) -> list[tuple[str, dict[str, Any]]]:
    """The sessions a firm's trail records as signed out (by id), with each entry's details."""
    entries = [json.loads(line) for line in trail.splitlines()]
    return [(e["target"]["id"], e["details"]) for e in entries if e["action"] == "auth.signed_out"]


async def _user_id(engine: AsyncEngine, email: str) -> str:
    async with engine.connect() as conn:
        found = await conn.scalar(text("select id::text from users where email = :e"), {"e": email})
    assert isinstance(found, str)
    return found


async def test_sign_out_revokes_the_session_and_clears_the_cookie(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    await signed_up(browser, smtp)
    cookie = browser.session_cookie
    assert cookie is not None
    await firm_id_of(browser)  # works before signing out

    response = await browser.post(SIGN_OUT)
    assert response.json() == {"data": {"signOut": {"ok": True}}}
    headers = session_cookies(response)
    assert len(headers) == 1, response.headers.get_list("set-cookie")
    found = attributes(headers[0])
    expires = found.get("expires")
    cleared = found.get("max-age") == "0" or (
        expires is not None and parsedate_to_datetime(expires) < datetime.now(UTC)
    )
    assert cleared, headers[0]
    assert browser.session_cookie is None

    assert unauthenticated(await replay(new_browser(), cookie))
    assert unauthenticated(await browser.gql(FIRM))


async def test_sign_out_everywhere_ends_every_session_of_the_user(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser
) -> None:
    email = await signed_up(browser, smtp)
    here = browser.session_cookie
    assert here is not None
    laptop = new_browser()
    await sign_in(laptop, email)
    elsewhere = laptop.session_cookie
    assert elsewhere is not None
    # Someone else's session is not touched.
    bystander = new_browser()
    await signed_up(bystander, smtp)

    response = await browser.post(SIGN_OUT_EVERYWHERE)
    assert response.json() == {"data": {"signOutEverywhere": {"ok": True}}}
    assert browser.session_cookie is None

    assert unauthenticated(await replay(new_browser(), here))
    assert unauthenticated(await laptop.gql(FIRM))
    assert unauthenticated(await replay(new_browser(), elsewhere))
    assert "errors" not in await bystander.gql(FIRM)


async def _expiry(engine: AsyncEngine, cookie: str) -> datetime:
    async with engine.connect() as conn:
        ends: datetime = (
            await conn.execute(
                text("select expires_at from sessions where token_hash = :h"),
                {"h": token_hash(cookie)},
            )
        ).scalar_one()
    return ends


async def _session_id(engine: AsyncEngine, cookie: str) -> uuid.UUID:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("select id from sessions where token_hash = :h"), {"h": token_hash(cookie)}
        )
    assert isinstance(found, uuid.UUID)
    return found


async def test_revoke_session_ends_only_your_own_other_device(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)
    phone = new_browser()
    await sign_in(phone, email)
    assert phone.session_cookie is not None
    phone_id = await _session_id(superuser_engine, phone.session_cookie)

    body = await browser.gql(SESSIONS)
    listed = {s["id"]: s["current"] for s in body["data"]["sessions"]}
    assert listed[str(phone_id)] is False

    body = await browser.gql(REVOKE, {"id": str(phone_id)})
    assert body == {"data": {"revokeSession": {"ok": True}}}
    assert unauthenticated(await phone.gql(FIRM))
    assert "errors" not in await browser.gql(FIRM)
    body = await browser.gql(SESSIONS)
    assert str(phone_id) not in [s["id"] for s in body["data"]["sessions"]]

    someone = new_browser()
    await signed_up(someone, smtp)
    assert someone.session_cookie is not None
    theirs = await _session_id(superuser_engine, someone.session_cookie)
    someones_firm = await firm_id_of(someone)
    body = await browser.gql(REVOKE, {"id": str(theirs)})
    assert body["data"] is None
    assert codes(body) == ["NOT_FOUND"]
    assert await firm_id_of(someone) == someones_firm
    async with superuser_engine.connect() as conn:
        revoked = await conn.scalar(
            text("select revoked_at from sessions where id = :i"), {"i": theirs}
        )
    assert revoked is None

    body = await browser.gql(REVOKE, {"id": str(uuid.uuid4())})
    assert codes(body) == ["NOT_FOUND"]


async def test_switch_firm_reissues_the_session_for_another_of_your_firms(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp, firm="Firm A Ltd")
    firm_a = await firm_id_of(browser)
    inviter = new_browser()
    await signed_up(inviter, smtp, firm="Firm B Ltd")
    firm_b = await firm_id_of(inviter)
    body = await inviter.gql(INVITE, {"input": {"email": email, "role": "MEMBER"}})
    assert body == {"data": {"inviteMember": {"ok": True}}}
    token = await link_token(smtp, email, "You are invited")
    held = browser.session_cookie
    assert held is not None
    held_id = await _session_id(superuser_engine, held)
    body = await browser.gql(ACCEPT, {"t": token, "s": True})  # from their session in A
    assert body == {"data": {"acceptInvitation": {"firmId": firm_b, "role": "MEMBER"}}}
    assert await firm_id_of(browser) == firm_b
    # Accepting signed the browser in to firm B: its firm A session ended, recorded in firm A.
    assert unauthenticated(await replay(new_browser(), held))
    assert _ended(await _trail(superuser_engine, firm_a)) == [(str(held_id), {"replaced": True})]

    before = browser.session_cookie
    assert before is not None
    response = await browser.post(SWITCH, {"f": firm_a})
    payload = response.json()
    assert "errors" not in payload, payload
    assert payload["data"]["switchFirm"]["firmId"] == firm_a
    assert payload["data"]["switchFirm"]["role"] == "OWNER"
    assert len(session_cookies(response)) == 1
    after = browser.session_cookie
    assert after is not None
    assert after != before
    assert await firm_id_of(browser) == firm_a
    body = await browser.gql(MY_FIRMS)
    assert {f["firmId"]: (f["role"], f["active"]) for f in body["data"]["myFirms"]} == {
        firm_a: ("OWNER", True),
        firm_b: ("MEMBER", False),
    }
    assert unauthenticated(await replay(new_browser(), before))
    # A switch ends the session it leaves as a switch, not also as a replaced session.
    assert '"action":"auth.firm_switched"' in await _trail(superuser_engine, firm_b)
    assert _ended(await _trail(superuser_engine, firm_b)) == []

    # Switching never moves the session's end: the new one ends when the one it left would
    # have (here made to end in an hour), so switching back and forth cannot outlive it.
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "update sessions set expires_at = now() + interval '1 hour' where token_hash = :h"
            ),
            {"h": token_hash(after)},
        )
    ends = await _expiry(superuser_engine, after)
    for firm in (firm_b, firm_a, firm_a):  # the same firm too
        assert "errors" not in (await browser.post(SWITCH, {"f": firm})).json()
        assert browser.session_cookie is not None
        assert await _expiry(superuser_engine, browser.session_cookie) == ends
    after = browser.session_cookie

    response = await browser.post(SWITCH, {"f": str(uuid.uuid4())})
    body = response.json()
    assert body["data"] is None
    assert codes(body) == ["NOT_FOUND"]
    assert session_cookies(response) == []
    assert browser.session_cookie == after
    assert await firm_id_of(browser) == firm_a

    # Signed out everywhere from firm A, with a session in firm B too: each firm's audit trail
    # says nothing of the other firm (neither its id nor the sessions held there).
    laptop = new_browser()
    await sign_in(laptop, email)
    assert "errors" not in (await laptop.post(SWITCH, {"f": firm_b})).json()
    live = await _live_sessions(superuser_engine, email)
    assert live[firm_b] == 1  # the laptop's
    body = await browser.gql(SIGN_OUT_EVERYWHERE)
    assert body == {"data": {"signOutEverywhere": {"ok": True}}}
    assert unauthenticated(await laptop.gql(FIRM))
    trails = {firm: await _trail(superuser_engine, firm) for firm in (firm_a, firm_b)}
    assert firm_b not in trails[firm_a]
    assert firm_a not in trails[firm_b]
    assert '"action":"auth.firm_switched"' in trails[firm_b]
    assert '"action":"auth.signed_out_everywhere","actor"' in trails[firm_a]
    assert f'"details":{{"sessions":{live[firm_a]}}}' in trails[firm_a]  # none of B's


async def test_a_users_session_in_another_firm_is_that_firms_row(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
    app_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """No query sees a row of a firm other than the bound one: bound to firm A, a user of
    firms A and B neither lists, ends, changes nor starts their session in B, except through
    the two moves that cross firms (signing out everywhere, starting a session in a firm of
    theirs), which act only for the bound user."""
    email = await signed_up(browser, smtp, firm="Firm A Ltd")
    firm_a = uuid.UUID(await firm_id_of(browser))
    inviter = new_browser()
    await signed_up(inviter, smtp, firm="Firm B Ltd")
    firm_b = uuid.UUID(await firm_id_of(inviter))
    body = await inviter.gql(INVITE, {"input": {"email": email, "role": "MEMBER"}})
    assert body == {"data": {"inviteMember": {"ok": True}}}
    laptop = new_browser()
    body = await laptop.gql(ACCEPT, {"t": await link_token(smtp, email, "You are invited")})
    assert body["data"]["acceptInvitation"]["firmId"] == str(firm_b), body
    assert browser.session_cookie is not None
    assert laptop.session_cookie is not None
    here = await _session_id(superuser_engine, browser.session_cookie)
    there = await _session_id(superuser_engine, laptop.session_cookie)

    listed = [s["id"] for s in (await browser.gql(SESSIONS))["data"]["sessions"]]
    assert listed == [str(here)]
    assert codes(await browser.gql(REVOKE, {"id": str(there)})) == ["NOT_FOUND"]
    assert "errors" not in await laptop.gql(FIRM)

    async with superuser_engine.connect() as conn:
        user_id = await conn.scalar(text("select id from users where email = :e"), {"e": email})
        stranger = await conn.scalar(  # firm B's owner, who invited the user
            text("select user_id from memberships where firm_id = :f and user_id <> :u"),
            {"f": firm_b, "u": user_id},
        )
    async with tenant_transaction(app_sessions, firm_a, user_id) as session:
        seen = await session.scalar(
            text("select count(*) from sessions where firm_id = :b"), {"b": firm_b}
        )
        changed = await session.execute(
            text("update sessions set revoked_at = now() where firm_id = :b"), {"b": firm_b}
        )
        assert (seen, changed.rowcount) == (0, 0)  # type: ignore[attr-defined]
    refusals = [
        # A session written straight into the table: the app role may not (not even in the
        # bound firm); every session starts through auth_start_session.
        (
            "insert into sessions (id, token_hash, user_id, firm_id, created_at, "
            "last_seen_at, expires_at) values (:id, :h, :u, :b, now(), now(), "
            "now() + interval '1 hour')",
            "permission denied for table sessions",
        ),
        # Started for a firm the user does not belong to, or for another user.
        (
            "select auth_start_session(:id, :h, :u, :nowhere, now() + interval '1 hour', "
            "null, null)",
            "a session starts only",
        ),
        (
            "select auth_start_session(:id, :h, :stranger, :b, now() + interval '1 hour', "
            "null, null)",
            "a session starts only",
        ),
        ("select auth_end_my_sessions(:stranger)", "ended only by that user"),
    ]
    values = {
        "id": uuid.uuid4(),
        "h": token_hash(uuid.uuid4().hex),
        "u": user_id,
        "b": firm_b,
        "nowhere": uuid.uuid4(),
        "stranger": stranger,
    }
    for statement, refused in refusals:
        with pytest.raises(DBAPIError, match=refused):
            async with tenant_transaction(app_sessions, firm_a, user_id) as session:
                await session.execute(text(statement), values)
    assert "errors" not in await laptop.gql(FIRM)
    assert "errors" not in await inviter.gql(FIRM)
    # Refused by the function (a firm the user has left since it was checked, say): a clean
    # NOT_FOUND, not an internal error.
    with pytest.raises(NotFound):
        async with tenant_transaction(app_sessions, firm_a, user_id) as session:
            await sessions.create(session, user_id, uuid.uuid4(), timedelta(hours=1))

    body = await browser.gql(SIGN_OUT_EVERYWHERE)
    assert body == {"data": {"signOutEverywhere": {"ok": True}}}
    assert unauthenticated(await laptop.gql(FIRM))
    assert "errors" not in await inviter.gql(FIRM)


async def _live_sessions(engine: AsyncEngine, email: str) -> dict[str, int]:
    """How many live sessions the user has, by firm."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select s.firm_id::text, count(*) from sessions s join users u on u.id = s.user_id "
                "where u.email = :e and s.revoked_at is null group by 1"
            ),
            {"e": email},
        )
    return dict(rows.all())


async def _trail(engine: AsyncEngine, firm: str) -> str:
    """A firm's audit trail as the text of its entries' canonical bytes."""
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text("select canonical from audit_log where firm_id = :f order by seq"), {"f": firm}
        )
    return "\n".join(bytes(row).decode() for row in rows.all())


async def test_idle_and_absolute_limits_are_enforced_by_the_server(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    superuser_engine: AsyncEngine,
    auth_app: Starlette,
) -> None:
    idle = auth_app.state.coverproof.settings.session_idle_minutes
    assert idle == 30
    email = await signed_up(browser, smtp)
    idle_cookie = browser.session_cookie
    assert idle_cookie is not None
    other = new_browser()
    await sign_in(other, email)
    old_cookie = other.session_cookie
    assert old_cookie is not None

    set_seen = (
        "update sessions set last_seen_at = now() - make_interval(mins => :minutes) "
        "where token_hash = :h"
    )
    hashed = token_hash(idle_cookie)
    # Just inside the idle limit it still works (and using it resets the clock)...
    assert await execute(superuser_engine, set_seen, minutes=idle - 1, h=hashed) == 1
    assert "errors" not in await browser.gql(FIRM)
    async with superuser_engine.connect() as conn:
        fresh = await conn.scalar(
            text(
                "select last_seen_at > now() - interval '1 minute' from sessions "
                "where token_hash = :h"
            ),
            {"h": hashed},
        )
    assert fresh is True
    # ...past it (31 minutes) the server refuses it.
    assert await execute(superuser_engine, set_seen, minutes=31, h=hashed) == 1
    assert unauthenticated(await browser.gql(FIRM))
    assert unauthenticated(await replay(new_browser(), idle_cookie))

    set_expiry = (
        "update sessions set expires_at = now() - interval '1 second' where token_hash = :h"
    )
    assert "errors" not in await other.gql(FIRM)
    assert await execute(superuser_engine, set_expiry, h=token_hash(old_cookie)) == 1
    assert unauthenticated(await other.gql(FIRM))
    assert unauthenticated(await replay(new_browser(), old_cookie))


@pytest.mark.parametrize("ending", ["sign out everywhere", "reset"])
async def test_a_firm_switched_to_while_every_session_ends_ends_too(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    """Someone holding a stolen cookie switches firm (to the same one) just as its user resets
    the password or signs out everywhere: the session the switch makes ends with the rest,
    whichever commits first (it was made after their end of every session had looked)."""
    email = await signed_up(browser, smtp)
    await browser.gql(RESET_REQUEST, {"e": email})
    token = await link_token(smtp, email, "Reset your")
    thief = browser_for(auth_app)
    async with thief.client:
        assert "errors" not in await thief.gql(SIGN_IN, {"e": email, "p": PASSWORD})
        firm_id = (await thief.gql(FIRM))["data"]["firm"]["id"]
        switching, go_on = asyncio.Event(), asyncio.Event()
        original = sessions.create

        async def held(*args: Any, **kwargs: Any) -> str:
            if kwargs.get("ends_by") is not None and not switching.is_set():
                switching.set()
                await go_on.wait()  # the old session ended, the new one not yet made
            return await original(*args, **kwargs)

        monkeypatch.setattr(sessions, "create", held)
        switch = asyncio.create_task(
            thief.gql("mutation($f: UUID!) { switchFirm(firmId: $f) { firmId } }", {"f": firm_id})
        )
        await switching.wait()
        if ending == "reset":
            ends = browser.gql(RESET, {"t": token, "p": "an entirely new passphrase 77"})
        else:
            ends = browser.gql("mutation { signOutEverywhere { ok } }")
        ending_task = asyncio.create_task(ends)
        await asyncio.sleep(0.5)  # it reaches what the switch holds
        go_on.set()
        await switch
        assert "errors" not in await ending_task
        after = await thief.gql(FIRM)
    assert codes(after) == ["UNAUTHENTICATED"], after


async def test_a_session_made_as_its_member_is_removed_ends_with_the_removal(
    browser: Browser, smtp: SmtpServer, new_browser: NewBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member is removed from firm B as they switch into it: the removal waits for the
    switch (which holds the membership from the session's start), then ends the session it
    made with the others; re-invited, they do not get it back (0033). Before, the removal
    could not see the session, which came back with the re-invitation."""
    await signed_up(browser, smtp, firm="Firm B Ltd")
    firm_b = (await browser.gql(FIRM))["data"]["firm"]["id"]
    user = new_browser()
    email = await signed_up(user, smtp, firm="Firm A Ltd")
    firm_a = (await user.gql(FIRM))["data"]["firm"]["id"]
    invitation = await invited(browser, smtp, email, "MEMBER")
    accepted = await user.gql(ACCEPT_AS_MEMBER, {"t": invitation, "s": True})
    user_id = accepted["data"]["acceptInvitation"]["userId"]
    assert "errors" not in await user.gql(SWITCH, {"f": firm_a})
    inserted, go_on = asyncio.Event(), asyncio.Event()
    original = sessions.create

    async def held(*args: Any, **kwargs: Any) -> str:
        cookie = await original(*args, **kwargs)
        if not inserted.is_set():
            inserted.set()
            await go_on.wait()  # the session in B made, not yet committed
        return cookie

    monkeypatch.setattr(sessions, "create", held)
    switching = asyncio.create_task(user.gql(SWITCH, {"f": firm_b}))
    await inserted.wait()
    removing = asyncio.create_task(browser.gql(REMOVE, {"u": user_id}))
    await asyncio.sleep(0.5)  # it reaches the membership the switch holds
    go_on.set()
    switched = await switching
    assert switched["data"]["switchFirm"]["firmId"] == firm_b, switched
    assert "errors" not in await removing
    monkeypatch.setattr(sessions, "create", original)
    assert codes(await user.gql(FIRM)) == ["UNAUTHENTICATED"]
    mails = len(smtp.to(email))
    assert "errors" not in await invite(browser, email, "MEMBER")
    await smtp.wait_for(lambda _: len(smtp.to(email)) > mails)  # the new one, not the first
    again = await new_browser().gql(ACCEPT_AS_MEMBER, {"t": await link_token(smtp, email, INVITED)})
    assert "errors" not in again, again
    assert codes(await user.gql(FIRM)) == ["UNAUTHENTICATED"]  # not revived


async def test_signing_out_everywhere_as_one_is_removed_still_ends_the_other_firms_sessions(
    browser: Browser,
    smtp: SmtpServer,
    new_browser: NewBrowser,
    monkeypatch: pytest.MonkeyPatch,
    superuser_engine: AsyncEngine,
) -> None:
    """The user signs out everywhere from firm B as firm B removes them: their request waits
    for the removal (which holds their sessions in B), then ends their sessions in the other
    firms and is recorded in B although they are no longer a member there (an act on their own
    account, not a member's: 0035 refused it, and the other firms' sessions stayed live)."""
    await signed_up(browser, smtp, firm="Firm B Ltd")
    user = new_browser()
    email = await signed_up(user, smtp, firm="Firm A Ltd")
    elsewhere = new_browser()  # the user's session in firm A, in another browser
    assert "errors" not in await elsewhere.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    invitation = await invited(browser, smtp, email, "MEMBER")
    accepted = await user.gql(ACCEPT_AS_MEMBER, {"t": invitation, "s": True})
    user_id = accepted["data"]["acceptInvitation"]["userId"]  # the user's session now in B
    holding, go_on = asyncio.Event(), asyncio.Event()
    lock_firm = chain.lock_firm

    async def held(*args: Any) -> None:
        if not holding.is_set():
            holding.set()
            await go_on.wait()  # the member's sessions in B held, the removal not committed
        await lock_firm(*args)

    monkeypatch.setattr(chain, "lock_firm", held)
    removing = asyncio.create_task(browser.gql(REMOVE, {"u": user_id}))
    await holding.wait()
    signing_out = asyncio.create_task(user.gql(SIGN_OUT_EVERYWHERE))
    await until_lock_waited(superuser_engine)  # on the session rows the removal holds
    go_on.set()
    assert "errors" not in await removing
    assert (await signing_out) == {"data": {"signOutEverywhere": {"ok": True}}}
    assert codes(await elsewhere.gql(FIRM)) == ["UNAUTHENTICATED"]
