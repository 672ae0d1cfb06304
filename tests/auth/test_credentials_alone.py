"""A mutation that checks a password or redeems a token is the only field of its operation.
Beside another field that fails, the whole request rolls back, its success unrecorded, yet the
answer says which field failed: a stolen password could be confirmed leaving no trace. So is one
that answers alike for any address: beside a field that bound a firm, it would fail only for a
registered address (whose firm it binds too)."""

from __future__ import annotations

import graphql
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.schema import build_schema
from app.schema.limits import ALONE
from tests.browser import PASSWORD, Browser, browser_for, new_email, signed_up
from tests.factories import codes, user_and_firm
from tests.mail.smtp import SmtpServer

SIGN_IN = "signInWithPassword(email: $e, password: $p) { userId }"


@pytest.mark.parametrize(
    "document",
    [
        f"mutation($e: String!, $p: String!) {{ s: {SIGN_IN} o: signOut {{ ok }} }}",
        f"mutation($e: String!, $p: String!) {{ a: {SIGN_IN} b: {SIGN_IN} }}",
        f"mutation($e: String!, $p: String!) {{ {SIGN_IN} "
        "... on Mutation { signOut { ok } } }",
        f"mutation($e: String!, $p: String!) {{ ...F }} fragment F on Mutation {{ {SIGN_IN} "
        "__typename }",
    ],
    ids=["beside-another", "twice", "inline-fragment", "named-fragment"],
)
async def test_a_password_checked_beside_another_field_is_refused_unchecked(
    browser: Browser,
    auth_app: Starlette,
    smtp: SmtpServer,
    superuser_engine: AsyncEngine,
    document: str,
) -> None:
    email = await signed_up(browser, smtp)
    before = await _sign_ins(superuser_engine, email)
    stranger = browser_for(auth_app)
    async with stranger.client:
        body = await stranger.gql(document, {"e": email, "p": PASSWORD})
        assert codes(body)
        assert set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
        assert "data" not in body
        assert "signInWithPassword must be the only field of its operation." in [
            e["message"] for e in body["errors"]
        ]
        assert stranger.session_cookie is None
        assert await _sign_ins(superuser_engine, email) == before  # nothing ran, nothing recorded
        alone = f"mutation($e: String!, $p: String!) {{ {SIGN_IN} }}"
        assert "errors" not in await stranger.gql(alone, {"e": email, "p": PASSWORD})
        assert await _sign_ins(superuser_engine, email) == before + 1


ALIKE = {
    "requestMagicLink": "requestMagicLink(email: $x) { accepted }",
    "requestPasswordReset": "requestPasswordReset(email: $x) { accepted }",
    "resendVerification": "resendVerification(email: $x) { accepted }",
    "signUp": f'signUp(input: {{email: $x, password: "{PASSWORD}", firmName: "Probe Ltd"}}) '
    "{ accepted }",
}


@pytest.mark.parametrize("flow", sorted(ALIKE))
async def test_a_flow_that_answers_alike_for_any_address_is_refused_beside_another(
    browser: Browser, auth_app: Starlette, smtp: SmtpServer, flow: str
) -> None:
    """A signed-in caller's signOut binds the request to the caller's firm first: a second
    field naming someone else's registered address would bind theirs, which fails, where an
    unknown address's does not."""
    await signed_up(browser, smtp)
    registered = await signed_up(browser_for(auth_app), smtp)
    document = f"mutation($x: String!) {{ a: signOut {{ ok }} b: {ALIKE[flow]} }}"
    answers = [await browser.gql(document, {"x": x}) for x in (registered, new_email())]
    assert answers[0] == answers[1]
    assert set(codes(answers[0])) == {"GRAPHQL_VALIDATION_FAILED"}
    assert [e["message"] for e in answers[0]["errors"]] == [
        f"{flow} must be the only field of its operation."
    ]


def test_every_mutation_held_alone_exists() -> None:
    """A renamed mutation would otherwise slip out of the rule unnoticed."""
    schema = graphql.build_schema(build_schema(production=False).as_str())
    assert schema.mutation_type is not None
    assert set(schema.mutation_type.fields) >= ALONE


async def _sign_ins(engine: AsyncEngine, email: str) -> int:
    """The address's recorded sign-ins (targeting its user)."""
    user_id, _ = await user_and_firm(engine, email)
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "select count(*) from audit_log where action = 'auth.sign_in.succeeded' "
                "and target_id = :u"
            ),
            {"u": user_id},
        )
    assert isinstance(found, int)
    return found
