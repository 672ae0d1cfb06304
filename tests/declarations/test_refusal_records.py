"""A replayed link is on the record once per declaration, reason and hour; when the shared
limiter (Redis) cannot answer for that count, the refusal is recorded anyway, since losing the
evidence would be worse than a repeated entry. The fault is real: Redis holds a value of the
wrong type where the count lives, so it answers that key with an error. A link is never on the
record as used when it was not."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import coredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.main import create_app
from app.ratelimit.limiter import key_digest
from app.ratelimit.policies import Policy
from tests.browser import Browser, browser_for, codes, new_email, signed_up
from tests.conftest import Database, make_settings, started
from tests.declarations.test_firm_side import actions_on
from tests.declarations.test_loop import FORM, SUBMIT, sent_declaration, valid_answers
from tests.mail.smtp import SmtpServer

REFUSED = "declaration.token_refused"
REDIS_URL = os.environ.get("COVERPROOF_TEST_REDIS_URL", "redis://127.0.0.1:6379")


async def test_a_refusal_is_recorded_when_the_limiter_cannot_count_it(
    database: Database, smtp: SmtpServer, tmp_path: Path, superuser_engine: AsyncEngine
) -> None:
    settings = make_settings(database, tmp_path, smtp_url=smtp.url, rate_limit_storage=REDIS_URL)
    redis: coredis.Redis[bytes] = coredis.Redis.from_url(REDIS_URL)
    try:
        async for app in started(create_app(settings)):
            firm, recipient = browser_for(app), browser_for(app)
            async with firm.client, recipient.client:
                await signed_up(firm, smtp)
                declaration_id, token = await sent_declaration(firm, smtp, new_email())
                form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
                submission = {
                    "answers": valid_answers(form["questions"]),
                    "attestationAccepted": True,
                    "signatureName": "Pat Doe",
                }
                done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
                assert "errors" not in done, done
                # Counted: a replay is on the record once, however often it comes.
                for _ in range(2):
                    assert codes(await recipient.gql(SUBMIT, {"t": token, "i": submission})) == [
                        "TOKEN_USED"
                    ]
                assert (await actions_on(superuser_engine, declaration_id)).count(REFUSED) == 1
                # The count's key now holds a string: Redis answers it with WRONGTYPE.
                item = Policy.REFUSAL_RECORDS.item
                count_key = "coverproof:" + item.key_for(key_digest(f"{declaration_id}:TOKEN_USED"))
                assert await redis.exists([count_key]) == 1  # the key the count really uses
                await redis.set(count_key, "not a window", ex=60)
                for _ in range(2):
                    assert codes(await recipient.gql(SUBMIT, {"t": token, "i": submission})) == [
                        "TOKEN_USED"
                    ]
                assert (await actions_on(superuser_engine, declaration_id)).count(REFUSED) == 3
                await redis.delete([count_key])
    finally:
        redis.connection_pool.disconnect()


TWICE = """mutation($t: String!, $a: SubmissionInput!, $b: SubmissionInput!) {
  a: submitDeclaration(token: $t, input: $a) { responseSha256 }
  b: submitDeclaration(token: $t, input: $b) { responseSha256 } }"""


async def test_a_link_submitted_twice_in_one_operation_is_refused_before_either_runs(
    browser: Browser, auth_app: Starlette, smtp: SmtpServer, superuser_engine: AsyncEngine
) -> None:
    """Run, the second field would be refused as used by the first, then the rollback would
    undo the first: a refusal of a link never used would be on the record, and would use up
    the hour's entry that a real replay after the submission should have."""
    await signed_up(browser, smtp)
    declaration_id, token = await sent_declaration(browser, smtp, new_email())
    recipient = browser_for(auth_app)
    async with recipient.client:
        form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
        submission = {
            "answers": valid_answers(form["questions"]),
            "attestationAccepted": True,
            "signatureName": "Pat Doe",
        }
        keys = [{"idempotencyKey": secrets.token_hex(16)} for _ in range(2)]
        twice = {"t": token, "a": {**submission, **keys[0]}, "b": {**submission, **keys[1]}}
        refused = await recipient.gql(TWICE, twice)
        assert set(codes(refused)) == {"GRAPHQL_VALIDATION_FAILED"}, refused
        assert "submitDeclaration must be the only field of its operation." in [
            e["message"] for e in refused["errors"]
        ]
        async with superuser_engine.connect() as conn:
            status = await conn.scalar(
                text("select status from declarations where id = :id"), {"id": declaration_id}
            )
        assert status == "opened"
        assert REFUSED not in await actions_on(superuser_engine, declaration_id)
        assert "errors" not in await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert codes(await recipient.gql(SUBMIT, {"t": token, "i": submission})) == ["TOKEN_USED"]
        assert (await actions_on(superuser_engine, declaration_id)).count(REFUSED) == 1
