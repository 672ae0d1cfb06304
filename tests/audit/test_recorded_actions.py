"""Each account and authoring event the vocabulary names (docs/audit.md) is on the firm's trail,
by whom, about what, and with what details, as it happens through the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.auth.sessions import token_hash
from tests.auth.test_flows import failed_already
from tests.browser import (
    MAGIC,
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
from tests.declarations.test_firm_side import CREATE_TEMPLATE, REVOKE, question, template_input
from tests.declarations.test_loop import FIT
from tests.factories import user_and_firm
from tests.mail.smtp import SmtpServer

ME = "{ viewer { user { id } firm { id } } }"
RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) { accepted } }"
RESET = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) { ok } }"
RESEND = "mutation($e: String!) { resendVerification(email: $e) { accepted } }"
REVOKE_SESSION = "mutation($id: UUID!) { revokeSession(id: $id) { ok } }"
CREATE = """mutation($i: DeclarationCreateInput!) {
  createDeclaration(input: $i) { declaration { id } } }"""


async def trail(engine: AsyncEngine, firm_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select action, actor_type, actor_id, target_type, target_id, details "
                "from audit_log where firm_id = :f order by seq"
            ),
            {"f": firm_id},
        )
    return [dict(row._mapping) for row in rows]


def recorded(entries: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "action"} for e in entries if e["action"] == action]


async def whoami(browser: Browser) -> tuple[str, str]:
    body = await browser.gql(ME)
    assert "errors" not in body, body
    return body["data"]["viewer"]["user"]["id"], body["data"]["viewer"]["firm"]["id"]


async def test_sign_in_links_resets_and_ended_sessions_are_on_the_trail(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    email = await signed_up(browser, smtp)
    user_id, firm_id = await whoami(browser)
    user = {"actor_type": "user", "actor_id": user_id, "target_type": "user"}

    assert "errors" not in await browser.gql(MAGIC, {"e": email})
    await link_token(smtp, email, "sign-in link")
    assert "errors" not in await browser.gql(RESET_REQUEST, {"e": email})
    token = await link_token(smtp, email, "Reset your")
    assert "errors" not in await browser.gql(RESET, {"t": token, "p": PASSWORD + "-new"})
    entries = await trail(superuser_engine, firm_id)
    for action in ("auth.magic_link.requested", "auth.password_reset.requested"):
        assert recorded(entries, action) == [{**user, "target_id": user_id, "details": {}}]
    completed = recorded(entries, "auth.password_reset.completed")
    assert [(e["actor_id"], e["target_id"]) for e in completed] == [(user_id, user_id)]

    # One of the user's devices ended from another.
    laptop, phone = browser_for(auth_app), browser_for(auth_app)
    async with laptop.client, phone.client:
        for device in (laptop, phone):
            body = await device.gql(SIGN_IN, {"e": email, "p": PASSWORD + "-new"})
            assert "errors" not in body, body
        cookie = phone.session_cookie
        assert cookie is not None
        async with superuser_engine.connect() as conn:
            phone_id = await conn.scalar(
                text("select id from sessions where token_hash = :h"), {"h": token_hash(cookie)}
            )
        ended = await laptop.gql(REVOKE_SESSION, {"id": str(phone_id)})
        assert ended == {"data": {"revokeSession": {"ok": True}}}, ended
    revoked = recorded(await trail(superuser_engine, firm_id), "auth.session.revoked")
    assert [(e["actor_id"], e["target_type"], e["target_id"]) for e in revoked] == [
        (user_id, "session", str(phone_id))
    ]


async def test_a_throttled_sign_in_and_a_resent_verification_are_on_the_trail(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    email = new_email()
    variables = {"input": {"email": email, "password": PASSWORD, "firmName": "Unverified Ltd"}}
    assert (await browser.gql(SIGN_UP, variables))["data"]["signUp"]["accepted"] is True
    await link_token(smtp, email, "Confirm your email")
    assert "errors" not in await browser.gql(RESEND, {"e": email})
    await smtp.wait_for(lambda _: len(smtp.to(email)) == 2)
    user_id, firm_id = await user_and_firm(superuser_engine, email)
    await failed_already(auth_app, superuser_engine, email, 104)
    wrong = await browser.gql(SIGN_IN, {"e": email, "p": "wrong password here"})
    assert codes(wrong) == ["INVALID_CREDENTIALS"]
    assert codes(await browser.gql(SIGN_IN, {"e": email, "p": PASSWORD})) == ["RATE_LIMITED"]
    entries = await trail(superuser_engine, firm_id)
    for action in ("auth.verification.sent", "auth.sign_in.failed", "auth.sign_in.throttled"):
        assert [(e["actor_id"], e["target_id"]) for e in recorded(entries, action)] == [
            (user_id, user_id)
        ], action


async def test_a_second_sign_up_with_a_registered_address_is_on_the_platform_trail(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """No firm's: the address is someone's, and the one asking may be anyone."""
    email = await signed_up(browser, smtp)
    again = {"input": {"email": email, "password": PASSWORD, "firmName": "Second Try Ltd"}}
    newest = text(
        "select seq, action, details from audit_log where firm_id is null order by seq desc limit 1"
    )
    async with superuser_engine.connect() as conn:
        before = (await conn.execute(newest)).one_or_none()
    assert (await browser.gql(SIGN_UP, again))["data"]["signUp"]["accepted"] is True
    async with superuser_engine.connect() as conn:
        after = (await conn.execute(newest)).one()
    assert (after.seq, after.action) == (
        (before.seq if before else 0) + 1,
        "auth.sign_up.duplicate",
    )
    assert email not in str(after.details)  # the address itself is not kept


async def test_templates_and_revocations_are_on_the_trail(
    browser: Browser, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    user_id, firm_id = await whoami(browser)
    made = await browser.gql(
        CREATE_TEMPLATE, {"i": template_input("Our own", question("q1", "short_text"))}
    )
    assert "errors" not in made, made
    template_id = made["data"]["createTemplate"]["template"]["id"]
    created = await browser.gql(
        CREATE,
        {"i": {"templateId": str(FIT.id), "recipientName": "Pat", "recipientEmail": new_email()}},
    )
    declaration_id = created["data"]["createDeclaration"]["declaration"]["id"]
    assert "errors" not in await browser.gql(REVOKE, {"id": declaration_id})
    entries = await trail(superuser_engine, firm_id)
    template = recorded(entries, "template.created")
    assert [(e["actor_id"], e["target_type"], e["target_id"]) for e in template] == [
        (user_id, "template", template_id)
    ]
    revoked = recorded(entries, "declaration.revoked")
    assert [(e["actor_id"], e["target_id"]) for e in revoked] == [(user_id, declaration_id)]
