"""Sign-up, verification and sign-in, end to end through HTTP with real mail."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth import passwords, service, throttle
from app.http import graphql
from app.resolvers import auth as auth_resolvers
from tests.browser import (
    FIRM,
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
from tests.factories import tables_holding
from tests.mail.smtp import SmtpServer

RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) { accepted message } }"
RESET = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) { ok } }"
RESEND = "mutation($e: String!) { resendVerification(email: $e) { accepted message } }"
SIGN_OUT = "mutation { signOut { ok } }"


async def test_sign_up_verify_sign_in_by_password_and_magic_link_and_sign_out(
    browser: Browser, smtp: SmtpServer
) -> None:
    email = await signed_up(browser, smtp, firm="Whole Flow Ltd")
    first_cookie = browser.session_cookie
    assert first_cookie
    assert (await browser.gql(FIRM))["data"]["firm"]["name"] == "Whole Flow Ltd"
    assert (await browser.gql(SIGN_OUT))["data"]["signOut"]["ok"] is True
    assert codes(await browser.gql(FIRM)) == ["UNAUTHENTICATED"]

    body = await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert body["data"]["signInWithPassword"]["emailVerified"] is True
    password_cookie = browser.session_cookie
    assert password_cookie not in (None, first_cookie)
    assert (await browser.gql(FIRM))["data"]["firm"]["name"] == "Whole Flow Ltd"

    await browser.gql(SIGN_OUT)
    assert (await browser.gql(MAGIC, {"e": email}))["data"]["requestMagicLink"]["accepted"]
    token = await link_token(smtp, email, "sign-in link")
    body = await browser.gql(MAGIC_SIGN_IN, {"t": token})
    assert "errors" not in body, body
    assert browser.session_cookie not in (None, first_cookie, password_cookie)
    assert (await browser.gql(FIRM))["data"]["firm"]["name"] == "Whole Flow Ltd"


async def test_confirming_an_address_signed_up_with_a_password_needs_it(
    browser: Browser, smtp: SmtpServer
) -> None:
    """The link proves the mailbox; the password proves who signed up. A wrong one is refused
    and leaves the link unspent; the right one then confirms and signs in."""
    email = new_email()
    signed = {"input": {"email": email, "password": PASSWORD, "firmName": "Confirm Ltd"}}
    assert "errors" not in await browser.gql(SIGN_UP, signed)
    token = await link_token(smtp, email, "Confirm your email")
    wrong = await browser.gql(VERIFY, {"t": token, "p": "not the password at all"})
    assert codes(wrong) == ["INVALID_CREDENTIALS"]
    assert browser.session_cookie is None
    body = await browser.gql(VERIFY, {"t": token, "p": PASSWORD})
    assert body["data"]["verifyEmail"]["emailVerified"] is True, body
    assert (await browser.gql(FIRM))["data"]["firm"]["name"] == "Confirm Ltd"


async def test_a_magic_link_only_user_has_no_password(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    email = new_email()
    body = await browser.gql(SIGN_UP, {"input": {"email": email, "firmName": "No Password Ltd"}})
    assert body["data"]["signUp"]["accepted"] is True
    token = await link_token(smtp, email, "Confirm your email")
    assert "errors" not in await browser.gql(VERIFY, {"t": token})
    async with superuser_engine.connect() as conn:
        stored = await conn.execute(
            text("select password_hash from users where email = :e"), {"e": email}
        )
        assert stored.scalar_one() is None
    body = await browser.gql(SIGN_IN, {"e": email, "p": "anything at all, really"})
    assert codes(body) == ["INVALID_CREDENTIALS"]


async def test_answers_never_reveal_whether_an_address_is_registered(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    known = await signed_up(browser, smtp)
    unknown = new_email()
    for mutation in (MAGIC, RESET_REQUEST, RESEND):
        other = browser_for(auth_app)
        async with other.client:
            assert await other.gql(mutation, {"e": known}) == await other.gql(
                mutation, {"e": unknown}
            )
    sign_up = {"password": PASSWORD, "firmName": "Twice Ltd"}
    first = await browser.gql(SIGN_UP, {"input": {"email": known, **sign_up}})
    second = await browser.gql(SIGN_UP, {"input": {"email": new_email(), **sign_up}})
    assert first == second
    wrong_password = await browser.gql(SIGN_IN, {"e": known, "p": "not the password at all"})
    no_such_user = await browser.gql(SIGN_IN, {"e": unknown, "p": "not the password at all"})
    assert wrong_password["errors"][0]["message"] == no_such_user["errors"][0]["message"]
    assert codes(wrong_password) == codes(no_such_user) == ["INVALID_CREDENTIALS"]
    # Verification, magic link, reset and the duplicate-sign-up notice; nothing to the unknown.
    await smtp.wait_for(lambda _: len(smtp.to(known)) >= 4)
    subjects = sorted(str(m["subject"]) for m in smtp.to(known))
    assert len(subjects) == 4
    assert "Someone tried to sign up with your address" in subjects
    assert smtp.to(unknown) == []


async def test_answers_that_are_alike_for_any_address_take_as_long_for_any_address(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered address costs a few round trips more than an unknown one (a link issued,
    a mail queued, its firm's chain appended to): each answer waits for the same moment after
    its request began, so that difference does not show in when it comes."""
    known = await signed_up(browser, smtp)
    unverified = new_email()
    sign_up = {"password": PASSWORD, "firmName": "Alike Ltd"}
    assert "errors" not in await browser.gql(SIGN_UP, {"input": {"email": unverified, **sign_up}})
    monkeypatch.setattr(auth_resolvers, "ALIKE_SECONDS", 0.3)
    asked = [
        (MAGIC, {"e": known}, {"e": new_email()}),
        (RESET_REQUEST, {"e": known}, {"e": new_email()}),
        (RESEND, {"e": unverified}, {"e": new_email()}),
        (
            SIGN_UP,
            {"input": {"email": known, **sign_up}},
            {"input": {"email": new_email(), **sign_up}},
        ),
    ]
    for mutation, registered, unknown in asked:
        for variables in (registered, unknown):
            started = time.monotonic()
            body = await browser.gql(mutation, variables)
            assert "errors" not in body, body
            assert time.monotonic() - started >= 0.3, (mutation, variables)
    # The registered addresses were each sent their mail: their flows did run.
    await smtp.wait_for(lambda _: len(smtp.to(known)) >= 4 and len(smtp.to(unverified)) >= 2)
    # A refused password sign-in, registered or not (a registered one's is on its firm's chain
    # too); one that succeeds is not held back.
    for email in (known, new_email()):
        started = time.monotonic()
        refused = await browser.gql(SIGN_IN, {"e": email, "p": "not the password 123"})
        assert codes(refused) == ["INVALID_CREDENTIALS"]
        assert time.monotonic() - started >= 0.3, email


async def test_failures_of_flows_that_answer_alike_wait_as_their_answers_do(
    browser: Browser, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure on a registered address's longer way (a 500 after the operation, an
    unexpected error on the way to refusing a password) comes no sooner than the answer would
    have: otherwise how soon it came would tell the address apart."""
    known = await signed_up(browser, smtp)
    monkeypatch.setattr(auth_resolvers, "ALIKE_SECONDS", 0.3)

    async def fails(*args: Any) -> None:
        raise RuntimeError("failed after the operation")

    with monkeypatch.context() as patched:
        patched.setattr(graphql, "after_commit", fails)
        started = time.monotonic()
        response = await browser.client.post(
            "/graphql", json={"query": MAGIC, "variables": {"e": known}}
        )
        assert response.status_code == 500, response.text
        assert time.monotonic() - started >= 0.3
    with monkeypatch.context() as patched:
        patched.setattr(service, "sign_in_with_password", fails)
        started = time.monotonic()
        failed = await browser.gql(SIGN_IN, {"e": known, "p": "not the password 123"})
        assert codes(failed) == ["INTERNAL_SERVER_ERROR"], failed
        assert time.monotonic() - started >= 0.3


async def test_registered_and_unknown_addresses_alike_wait_for_the_platform_chain(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """Every request of these flows, and every refused password sign-in, appends to the
    platform chain, whose one lock a flood of unknown addresses would hold (here, a session of
    the test's): a registered address's answer then waits for it as an unknown one's does, so
    their times still do not differ."""
    known = await signed_up(browser, smtp)
    unverified = new_email()
    sign_up = {"email": unverified, "password": PASSWORD, "firmName": "Waits Ltd"}
    assert "errors" not in await browser.gql(SIGN_UP, {"input": sign_up})

    def signing_up(address: str) -> dict[str, Any]:
        return {"input": {**sign_up, "email": address}}

    def failing(address: str) -> dict[str, Any]:
        return {"e": address, "p": "not the password at all"}

    asked_for = [
        (MAGIC, {"e": known}, {"e": new_email()}),
        (RESET_REQUEST, {"e": known}, {"e": new_email()}),
        (RESEND, {"e": unverified}, {"e": new_email()}),
        (SIGN_UP, signing_up(known), signing_up(new_email())),
        (SIGN_IN, failing(known), failing(new_email())),  # recorded before it is answered
    ]
    for mutation, registered, unknown in asked_for:
        callers = [browser_for(auth_app), browser_for(auth_app)]
        async with callers[0].client, callers[1].client, superuser_engine.connect() as holder:
            await holder.execute(text("select pg_advisory_lock(0)"))
            try:
                asked = [
                    asyncio.create_task(caller.gql(mutation, variables))
                    for caller, variables in zip(callers, (registered, unknown), strict=True)
                ]
                await _until_waiting_for_the_platform_chain(superuser_engine, 2)
                assert not any(task.done() for task in asked)
            finally:
                await holder.execute(text("select pg_advisory_unlock(0)"))
            answers = await asyncio.gather(*asked)
        assert [(a.get("data"), codes(a)) for a in answers] == [
            (answers[0].get("data"), codes(answers[0]))
        ] * 2, answers


async def _until_waiting_for_the_platform_chain(engine: AsyncEngine, count: int) -> None:
    """Polls pg_locks until ``count`` transactions wait for the platform chain's lock."""
    waiting = text(
        "select count(*) from pg_locks where locktype = 'advisory' and not granted "
        "and classid = 0 and objid = 0 and objsubid = 1"
    )
    async with asyncio.timeout(10):
        while True:
            async with engine.connect() as conn:
                if await conn.scalar(waiting) == count:
                    return
            await asyncio.sleep(0.02)


async def test_a_magic_link_works_once_under_twenty_concurrent_redemptions(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)
    await browser.gql(MAGIC, {"e": email})
    token = await link_token(smtp, email, "sign-in link")
    async with superuser_engine.connect() as conn:
        before = await conn.execute(
            text(
                "select count(*) from sessions s join users u on u.id = s.user_id "
                "where u.email = :e"
            ),
            {"e": email},
        )
        sessions_before = before.scalar_one()
    browsers = [browser_for(auth_app) for _ in range(20)]
    results = await asyncio.gather(*(b.gql(MAGIC_SIGN_IN, {"t": token}) for b in browsers))
    for b in browsers:
        await b.client.aclose()
    outcomes = sorted(codes(r)[0] if "errors" in r else "OK" for r in results)
    assert outcomes == ["OK"] + ["TOKEN_USED"] * 19
    async with superuser_engine.connect() as conn:
        after = await conn.execute(
            text(
                "select count(*) from sessions s join users u on u.id = s.user_id "
                "where u.email = :e"
            ),
            {"e": email},
        )
        assert after.scalar_one() == sessions_before + 1


async def test_expired_forged_wrong_purpose_and_reused_tokens_get_distinct_codes(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)
    await browser.gql(MAGIC, {"e": email})
    token = await link_token(smtp, email, "sign-in link")
    verification = await link_token(smtp, email, "Confirm your email")
    assert codes(await browser.gql(MAGIC_SIGN_IN, {"t": token[:-3] + "xyz"})) == ["TOKEN_INVALID"]
    assert codes(await browser.gql(MAGIC_SIGN_IN, {"t": "garbage"})) == ["TOKEN_INVALID"]
    wrong = await browser.gql(MAGIC_SIGN_IN, {"t": verification})
    assert codes(wrong) == ["TOKEN_WRONG_PURPOSE"]
    assert codes(await browser.gql(VERIFY, {"t": verification})) == ["TOKEN_USED"]
    async with superuser_engine.begin() as conn:
        await conn.execute(
            text(
                "update auth_tokens set expires_at = now() - interval '1 second' "
                "where purpose = 'magic_link' and used_at is null and user_id = "
                "(select id from users where email = :e)"
            ),
            {"e": email},
        )
    assert codes(await browser.gql(MAGIC_SIGN_IN, {"t": token})) == ["TOKEN_EXPIRED"]


async def test_refused_tokens_and_failed_sign_ins_are_audited_without_secrets(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)
    verification = await link_token(smtp, email, "Confirm your email")
    assert codes(await browser.gql(VERIFY, {"t": verification})) == ["TOKEN_USED"]
    wrong_password = "a wrong password attempt 123"
    assert codes(await browser.gql(SIGN_IN, {"e": email, "p": wrong_password})) == [
        "INVALID_CREDENTIALS"
    ]
    async with superuser_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select a.action, a.canonical from audit_log a join memberships m "
                    "on m.firm_id = a.firm_id join users u on u.id = m.user_id "
                    "where u.email = :e order by a.seq"
                ),
                {"e": email},
            )
        ).all()
    actions = [row.action for row in rows]
    assert actions[:2] == ["auth.signed_up", "auth.email_verified"]
    assert "auth.token.refused" in actions
    assert "auth.sign_in.failed" in actions
    everything = b"".join(row.canonical for row in rows)
    for secret in (verification.encode(), wrong_password.encode(), PASSWORD.encode()):
        assert secret not in everything


async def test_an_unverified_user_signs_in_to_no_firm_data(
    browser: Browser, smtp: SmtpServer
) -> None:
    email = new_email()
    await browser.gql(
        SIGN_UP, {"input": {"email": email, "password": PASSWORD, "firmName": "Waiting Ltd"}}
    )
    body = await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert body["data"]["signInWithPassword"]["emailVerified"] is False
    for query in (
        FIRM,
        "{ members { email } }",
        "{ sessions { id } }",
        "{ viewer { firm { id } } }",
    ):
        assert codes(await browser.gql(query)) == ["EMAIL_NOT_VERIFIED"], query
    mutation = 'mutation { updateFirm(input: {name: "Sneaky"}) { firm { name } } }'
    assert codes(await browser.gql(mutation)) == ["EMAIL_NOT_VERIFIED"]
    viewer = await browser.gql("{ viewer { user { email emailVerified } } }")
    assert viewer["data"]["viewer"]["user"] == {"email": email, "emailVerified": False}


async def test_reset_password_revokes_every_session_and_a_weak_one_keeps_the_link(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    email = await signed_up(browser, smtp)
    other = browser_for(auth_app)
    async with other.client:
        assert "errors" not in await other.gql(SIGN_IN, {"e": email, "p": PASSWORD})
        await browser.gql(RESET_REQUEST, {"e": email})
        token = await link_token(smtp, email, "Reset your")
        weak = await browser.gql(RESET, {"t": token, "p": "password1234"})
        assert codes(weak) == ["BAD_USER_INPUT"]
        assert weak["errors"][0]["extensions"]["fields"][0]["field"] == "newPassword"
        new_password = "an entirely new passphrase 77"
        assert (await browser.gql(RESET, {"t": token, "p": new_password}))["data"]["resetPassword"]
        for b in (browser, other):
            assert codes(await b.gql(FIRM)) == ["UNAUTHENTICATED"]
        assert codes(await other.gql(SIGN_IN, {"e": email, "p": PASSWORD})) == [
            "INVALID_CREDENTIALS"
        ]
        assert "errors" not in await other.gql(SIGN_IN, {"e": email, "p": new_password})


async def test_a_password_sign_in_under_way_as_the_password_is_reset_gets_no_session(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone holding the old password signs in while its owner resets it: the password checks
    out (its hash was read before the reset), but no session may outlive the reset."""
    email = await signed_up(browser, smtp)
    await browser.gql(RESET_REQUEST, {"e": email})
    token = await link_token(smtp, email, "Reset your")
    checked, go_on = asyncio.Event(), asyncio.Event()
    verify = passwords.verify_password

    async def slow(password_hash: str | None, password: str) -> bool:
        matches = await verify(password_hash, password)
        if password == PASSWORD:  # the old password: held here while the owner resets
            checked.set()
            await go_on.wait()
        return matches

    monkeypatch.setattr(passwords, "verify_password", slow)
    holder = browser_for(auth_app)
    async with holder.client:
        signing_in = asyncio.create_task(holder.gql(SIGN_IN, {"e": email, "p": PASSWORD}))
        await checked.wait()
        body = await browser.gql(RESET, {"t": token, "p": "an entirely new passphrase 77"})
        assert "errors" not in body, body
        go_on.set()
        assert codes(await signing_in) == ["INVALID_CREDENTIALS"]
        assert codes(await holder.gql(FIRM)) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("order", ["together", "one after the other"])
async def test_sign_ins_that_rehash_the_password_at_once_both_succeed(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    """After the hashing settings change, each sign-in rehashes: two of one user at once (a
    double click) must neither deadlock on the user's row nor take the other's new hash for
    a reset and refuse the right password."""
    email = await signed_up(browser, smtp)
    monkeypatch.setattr(passwords, "needs_rehash", lambda _: True)
    verify, both, checks = passwords.verify_password, asyncio.Barrier(2), [0]
    first, go_on = asyncio.Event(), asyncio.Event()

    async def slow(password_hash: str | None, password: str) -> bool:
        matches = await verify(password_hash, password)
        checks[0] += 1
        if order == "together" and checks[0] <= 2:
            await both.wait()  # both checked the hash they read before either locks it
        elif order != "together" and not first.is_set():
            first.set()
            await go_on.wait()  # held while the other signs in and rehashes
        return matches

    monkeypatch.setattr(passwords, "verify_password", slow)
    a, b = browser_for(auth_app), browser_for(auth_app)
    async with a.client, b.client:
        held = asyncio.create_task(a.gql(SIGN_IN, {"e": email, "p": PASSWORD}))
        if order != "together":
            await first.wait()
        other = await b.gql(SIGN_IN, {"e": email, "p": PASSWORD})
        go_on.set()
        answers = [await held, other]
    assert ["errors" in answer for answer in answers] == [False, False], answers


@pytest.mark.parametrize("ending", ["reset", "sign out everywhere"])
async def test_a_sign_in_by_link_under_way_as_links_are_spent_gets_no_session(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    """A magic link redeemed, its session not yet begun, as the user resets the password or
    signs out everywhere: the link's row is held until that sign-in commits, so the sessions
    are ended after it, its own with them. A wrong password on record has both flows clear the
    address's failures too: neither may hold that while waiting for the other."""
    email = await signed_up(browser, smtp)
    stranger = browser_for(auth_app)
    async with stranger.client:
        wrong = await stranger.gql(SIGN_IN, {"e": email, "p": "not the password 123"})
        assert codes(wrong) == ["INVALID_CREDENTIALS"]
    await browser.gql(MAGIC, {"e": email})
    magic = await link_token(smtp, email, "sign-in link")
    await browser.gql(RESET_REQUEST, {"e": email})
    reset = await link_token(smtp, email, "Reset your")
    redeemed, go_on = asyncio.Event(), asyncio.Event()
    prove = service.prove_address

    async def slow(session: Any, user_id: Any, *, clear_password: bool) -> None:
        await prove(session, user_id, clear_password=clear_password)
        if not redeemed.is_set():  # the magic link's, not the reset's
            redeemed.set()
            await go_on.wait()

    monkeypatch.setattr(service, "prove_address", slow)
    holder = browser_for(auth_app)
    async with holder.client:
        signing_in = asyncio.create_task(holder.gql(MAGIC_SIGN_IN, {"t": magic}))
        await redeemed.wait()
        if ending == "reset":
            ended = asyncio.create_task(
                browser.gql(RESET, {"t": reset, "p": "an entirely new passphrase 77"})
            )
        else:
            ended = asyncio.create_task(browser.gql("mutation { signOutEverywhere { ok } }"))
        await asyncio.sleep(0.2)  # it reaches the link's row, held by the sign-in
        go_on.set()
        assert "errors" not in await signing_in
        assert "errors" not in await ended
        assert codes(await holder.gql(FIRM)) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize("ending", ["reset", "sign out everywhere"])
async def test_links_already_mailed_stop_working_once_the_user_resets_or_signs_out_everywhere(
    browser: Browser, smtp: SmtpServer, ending: str
) -> None:
    """Someone who once read the mailbox may hold a sign-in or reset link: resetting the
    password, or signing out everywhere, spends every such link the user has not used."""
    email = await signed_up(browser, smtp)
    await browser.gql(MAGIC, {"e": email})
    magic = await link_token(smtp, email, "sign-in link")
    await browser.gql(RESET_REQUEST, {"e": email})
    held = await link_token(smtp, email, "Reset your")
    await browser.gql(RESET_REQUEST, {"e": email})
    await smtp.wait_for(lambda _: len(_mails(smtp, email, "Reset your")) == 2)
    used = await link_token(smtp, email, "Reset your")
    assert used != held
    if ending == "reset":
        body = await browser.gql(RESET, {"t": used, "p": "an entirely new passphrase 77"})
        assert "errors" not in body, body
    else:
        assert "errors" not in await browser.gql("mutation { signOutEverywhere { ok } }")
    assert codes(await browser.gql(MAGIC_SIGN_IN, {"t": magic})) == ["TOKEN_USED"]
    assert codes(await browser.gql(RESET, {"t": held, "p": "yet another passphrase 88"})) == [
        "TOKEN_USED"
    ]
    # A link asked for afterwards works.
    await browser.gql(MAGIC, {"e": email})
    await smtp.wait_for(lambda _: len(_mails(smtp, email, "sign-in link")) == 2)
    fresh = await link_token(smtp, email, "sign-in link")
    assert "errors" not in await browser.gql(MAGIC_SIGN_IN, {"t": fresh})


async def test_an_unused_verification_link_stops_signing_in_once_the_user_signs_out_everywhere(
    browser: Browser, smtp: SmtpServer
) -> None:
    """A verification link signs its account in (an account for sign-in links has no password
    to ask for): one left unused is spent with the sessions, like a magic link."""
    email = new_email()
    assert "errors" not in await browser.gql(SIGN_UP, {"input": {"email": email, "firmName": "L"}})
    unused = await link_token(smtp, email, "Confirm your email")
    assert "errors" not in await browser.gql(RESEND, {"e": email})
    await smtp.wait_for(lambda _: len(_mails(smtp, email, "Confirm your email")) == 2)
    used = await link_token(smtp, email, "Confirm your email")
    assert used != unused
    assert "errors" not in await browser.gql(VERIFY, {"t": used})
    assert "errors" not in await browser.gql("mutation { signOutEverywhere { ok } }")
    assert codes(await browser.gql(VERIFY, {"t": unused})) == ["TOKEN_USED"]


def _mails(smtp: SmtpServer, email: str, subject_part: str) -> list[Any]:
    return [m for m in smtp.to(email) if subject_part in str(m["subject"])]


async def test_passwords_are_argon2id_and_never_stored_logged_or_mailed(
    browser: Browser,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    email = await signed_up(browser, smtp)
    await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    async with superuser_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("select password_hash from users where email = :e"), {"e": email}
            )
        ).scalar_one()
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await tables_holding(superuser_engine, PASSWORD) == []
    assert PASSWORD not in caplog.text
    for message in smtp.to(email):
        assert PASSWORD not in message.as_string()


async def test_refused_passwords_are_never_stored_logged_echoed_or_mailed(
    browser: Browser,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The failure paths, where a value is easiest to let slip into an error or a log line: a
    wrong password, a guessable one, one too long for its field, one for a malformed email, a
    new one offered with a link that is no good, and a wrong one confirming an address. Each
    is refused; none appears in the answer, the logs, the database or the mail."""
    caplog.set_level(logging.DEBUG)
    email = await signed_up(browser, smtp)
    secret = f"wrong {secrets.token_hex(8)} password"
    guessable = f"pw{secrets.token_hex(2)}"  # too short to accept
    too_long = f"long{secrets.token_hex(8)}" + "x" * 200  # past the field's 128 characters
    malformed = f"malformed {secrets.token_hex(8)} sign-in"
    reset = f"reset {secrets.token_hex(8)} password"
    confirming = f"confirming {secrets.token_hex(8)} password"
    unconfirmed = new_email()
    signed = {"input": {"email": unconfirmed, "password": PASSWORD, "firmName": "Unsure Ltd"}}
    assert "errors" not in await browser.gql(SIGN_UP, signed)
    verification = await link_token(smtp, unconfirmed, "Confirm your email")
    attempts = [
        (VERIFY, {"t": verification, "p": confirming}, "INVALID_CREDENTIALS"),
        (SIGN_IN, {"e": email, "p": secret}, "INVALID_CREDENTIALS"),
        (SIGN_IN, {"e": email, "p": too_long}, "BAD_USER_INPUT"),
        (SIGN_IN, {"e": "not an email", "p": malformed}, "BAD_USER_INPUT"),
        (
            SIGN_UP,
            {"input": {"email": new_email(), "password": guessable, "firmName": "Weak Ltd"}},
            "BAD_USER_INPUT",
        ),
        (
            SIGN_UP,
            {"input": {"email": new_email(), "password": too_long, "firmName": "Long Ltd"}},
            "BAD_USER_INPUT",
        ),
        (RESET, {"t": secrets.token_urlsafe(32), "p": reset}, "TOKEN_INVALID"),
    ]
    passwords = [secret, guessable, too_long, malformed, reset, confirming]
    for query, variables, code in attempts:
        response = await browser.post(query, variables)
        assert codes(response.json()) == [code], response.text
        assert not [p for p in passwords if p in response.text], response.text
    assert not [p for p in passwords if p in caplog.text]
    for password in passwords:
        assert await tables_holding(superuser_engine, password) == [], password
    for message in [*smtp.to(email), *smtp.to(unconfirmed)]:
        assert not [p for p in passwords if p in message.as_string()]


async def test_sign_in_is_limited_per_address_and_caller_under_a_ceiling_per_address(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette
) -> None:
    """10 a minute per address from one caller: a stranger hammering the address locks out
    only themselves, and its owner, from elsewhere, still signs in. Spread over many callers,
    100 a minute per address. Aliased sign-ins are refused before any runs (each must be
    alone), so none is counted."""
    email = await signed_up(browser, smtp)
    fields = " ".join(
        f'a{n}: signInWithPassword(email: "{email}", password: "{PASSWORD}") {{ userId }}'
        for n in range(15)
    )
    body = await browser.gql(f"mutation {{ {fields} }}")
    assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    stranger = browser_for(auth_app)
    async with stranger.client:
        for _ in range(10):
            wrong = await stranger.gql(SIGN_IN, {"e": email, "p": "not the password at all"})
            assert codes(wrong) == ["INVALID_CREDENTIALS"]
        refused = await stranger.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert codes(refused) == ["RATE_LIMITED"]
    assert 1 <= refused["errors"][0]["extensions"]["retryAfter"] <= 60
    assert "errors" not in await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})  # the owner

    # 12 counted so far (the confirmation of the sign-up, with its password, the stranger's 10,
    # the owner's 1): 88 more callers reach the ceiling.
    burst = [browser_for(auth_app) for _ in range(95)]
    results = await asyncio.gather(*(b.gql(SIGN_IN, {"e": email, "p": PASSWORD}) for b in burst))
    for b in burst:
        await b.client.aclose()
    outcomes = sorted("OK" if "errors" not in r else ",".join(codes(r)) for r in results)
    assert outcomes == ["OK"] * 88 + ["RATE_LIMITED"] * 7


async def failed_already(
    app: Starlette, engine: AsyncEngine, email: str, failures: int, throttled_for: float = 0
) -> None:
    """As if ``failures`` password sign-ins to the address had failed (counted by address), the
    address throttled for ``throttled_for`` seconds more (by default, not throttled now)."""
    address = throttle.address_key(app.state.coverproof.secret_key, email)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "insert into sign_in_failures (address_key, failures, last_failed_at, "
                "throttled_until) values (:a, :n, now(), "
                "case when cast(:s as float8) > 0 "
                "then now() + make_interval(secs => cast(:s as float8)) end) "
                "on conflict (address_key) do update set failures = :n, "
                "throttled_until = excluded.throttled_until"
            ),
            {"a": address, "n": failures, "s": throttled_for},
        )


async def test_a_throttled_sign_ins_retry_after_is_rounded_up(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """3.5 s left is 4, not 3: a client waiting exactly retryAfter meets the throttle again."""
    email = await signed_up(browser, smtp)
    await failed_already(auth_app, superuser_engine, email, 104, throttled_for=3.5)
    held = await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert codes(held) == ["RATE_LIMITED"], held
    assert held["errors"][0]["extensions"]["retryAfter"] == 4


async def failures_of(app: Starlette, engine: AsyncEngine, email: str) -> int | None:
    address = throttle.address_key(app.state.coverproof.secret_key, email)
    async with engine.connect() as conn:
        found: int | None = await conn.scalar(
            text("select failures from sign_in_failures where address_key = :a"), {"a": address}
        )
    return found


async def test_after_many_failures_password_sign_in_is_throttled_but_magic_links_work(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """A hundred failures throttle password sign-in (growing: 32 s from the 105th); a magic
    link still works, and proving the address so forgives the failures."""
    email = await signed_up(browser, smtp)
    await failed_already(auth_app, superuser_engine, email, 104)
    assert codes(await browser.gql(SIGN_IN, {"e": email, "p": "wrong password here"})) == [
        "INVALID_CREDENTIALS"
    ]
    throttled = await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})
    assert codes(throttled) == ["RATE_LIMITED"]
    assert 30 <= throttled["errors"][0]["extensions"]["retryAfter"] <= 32
    assert await failures_of(auth_app, superuser_engine, email) == 105
    await browser.gql(MAGIC, {"e": email})
    token = await link_token(smtp, email, "sign-in link")
    assert "errors" not in await browser.gql(MAGIC_SIGN_IN, {"t": token})
    assert await failures_of(auth_app, superuser_engine, email) is None
    assert "errors" not in await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})


async def test_the_throttle_answers_alike_for_registered_and_unknown_addresses(
    browser: Browser,
    smtp: SmtpServer,
    auth_app: Starlette,
    superuser_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failures are counted by address, so an unknown address is throttled exactly as a
    registered one is: a hundred wrong passwords no longer tell which addresses have accounts,
    nor does when the answer comes (a registered one's is on its firm's chain too). A
    successful sign-in clears the count, and so does proving the address."""
    registered, unknown = await signed_up(browser, smtp), new_email()
    monkeypatch.setattr(auth_resolvers, "ALIKE_SECONDS", 0.3)
    answers: dict[str, list[Any]] = {}
    for email in (registered, unknown):
        await failed_already(auth_app, superuser_engine, email, 104)
        attempt = browser_for(auth_app)  # a client address of its own: per-IP limits apart
        async with attempt.client:
            wrong = await attempt.gql(SIGN_IN, {"e": email, "p": "wrong password here"})
            started = time.monotonic()
            held = await attempt.gql(SIGN_IN, {"e": email, "p": PASSWORD})
            assert time.monotonic() - started >= 0.3, email
        retry_after = held["errors"][0]["extensions"]["retryAfter"]
        assert 30 <= retry_after <= 32, held
        answers[email] = [codes(wrong), codes(held), held["errors"][0]["message"]]
        assert await failures_of(auth_app, superuser_engine, email) == 105
    assert answers[registered] == answers[unknown]
    assert answers[unknown][:2] == [["INVALID_CREDENTIALS"], ["RATE_LIMITED"]]

    await failed_already(auth_app, superuser_engine, registered, 50)
    fresh = browser_for(auth_app)
    async with fresh.client:
        assert "errors" not in await fresh.gql(SIGN_IN, {"e": registered, "p": PASSWORD})
    assert await failures_of(auth_app, superuser_engine, registered) is None
    # Throttled before it was registered: the confirmation's password is refused as a sign-in's
    # would be (a link is no way round the throttle), but proving the address by a sign-in
    # link, which no stranger's failures block, forgives it.
    newcomer = browser_for(auth_app)
    async with newcomer.client:
        variables = {"input": {"email": unknown, "password": PASSWORD, "firmName": "New Ltd"}}
        assert "errors" not in await newcomer.gql(SIGN_UP, variables)
        link = await link_token(smtp, unknown, "Confirm your email")
        assert codes(await newcomer.gql(VERIFY, {"t": link, "p": PASSWORD})) == ["RATE_LIMITED"]
        assert "errors" not in await newcomer.gql(MAGIC, {"e": unknown})
        magic = await link_token(smtp, unknown, "sign-in link")
        assert "errors" not in await newcomer.gql(MAGIC_SIGN_IN, {"t": magic})
    assert await failures_of(auth_app, superuser_engine, unknown) is None


async def test_link_pages_change_nothing_and_run_under_a_nonce_csp(browser: Browser) -> None:
    for page in ("verify-email", "magic-link", "reset-password", "invitation"):
        response = await browser.client.get(f"/auth/{page}")
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in response.text
        assert "unsafe-inline" not in csp
        assert "connect-src 'self'" in csp
        assert browser.client.cookies.get("__Host-cp_session") is None
