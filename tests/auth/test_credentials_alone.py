"""A mutation that checks a password or redeems a token is the only field of its operation.
Beside another field that fails, the whole request rolls back, its success unrecorded, yet the
answer says which field failed: a stolen password could be confirmed leaving no trace."""

from __future__ import annotations

import graphql
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.schema import build_schema
from app.schema.limits import ALONE
from tests.browser import PASSWORD, Browser, browser_for, signed_up
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
