"""A recipient's retry after a lost answer: with the first attempt's idempotency key and the
same input it gets the first receipt back and writes nothing; anything else is refused as
before (a used link stays used)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.audit import chain
from app.partners import first_party
from app.partners.documents import document_id
from tests.browser import Browser, browser_for, codes, new_email, signed_up
from tests.declarations.test_firm_side import actions_on
from tests.declarations.test_loop import FORM, SUBMIT, sent_declaration, valid_answers
from tests.factories import until_lock_waited
from tests.mail.smtp import SmtpServer

KEYS = "select count(*) from idempotency_keys where actor_id = :id"
# Confirmations queued (committed with their submission, whether or not delivered yet).
CONFIRMATIONS = (
    "select count(*) from mail_outbox o join declarations d on d.recipient_email = o.to_address "
    "where d.id = :id and o.subject like 'Received:%'"
)
RECEIPT = """query($t: String!, $k: String!) { submissionReceipt(token: $t, idempotencyKey: $k)
  { submittedAt responseSha256 } }"""


@pytest.fixture
async def link(browser: Browser, smtp: SmtpServer) -> tuple[str, str]:
    """A declaration sent by a new firm: its id and its link's token."""
    await signed_up(browser, smtp)
    return await sent_declaration(browser, smtp, new_email())


async def _submission(recipient: Browser, token: str, key: str | None) -> dict[str, Any]:
    form = (await recipient.gql(FORM, {"t": token}))["data"]["recipientForm"]
    submission = {
        "answers": valid_answers(form["questions"]),
        "attestationAccepted": True,
        "signatureName": "Pat Doe",
    }
    return submission if key is None else {**submission, "idempotencyKey": key}


async def test_a_retry_with_the_first_key_gets_the_first_receipt_and_writes_nothing(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    declaration_id, token = link
    key = secrets.token_hex(16)
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, token, key)
        first = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in first, first
        written = await actions_on(superuser_engine, declaration_id)
        assert written[-1] == "declaration.submitted"
        for _ in range(3):
            again = await recipient.gql(SUBMIT, {"t": token, "i": submission})
            assert again == first
        # Nothing more on the record: no second submission, and no refusal either.
        assert await actions_on(superuser_engine, declaration_id) == written

        # Anything but the same key with the same input is refused as before (the key with
        # other input too: it must not tell a guess of the response from a wrong one).
        changed = {**submission, "signatureName": "Someone Else"}
        assert codes(await recipient.gql(SUBMIT, {"t": token, "i": changed})) == ["TOKEN_USED"]
        other = {**submission, "idempotencyKey": secrets.token_hex(16)}
        assert codes(await recipient.gql(SUBMIT, {"t": token, "i": other})) == ["TOKEN_USED"]
        plain = {k: v for k, v in submission.items() if k != "idempotencyKey"}
        assert codes(await recipient.gql(SUBMIT, {"t": token, "i": plain})) == ["TOKEN_USED"]
    after = await actions_on(superuser_engine, declaration_id)
    assert after[: len(written)] == written
    assert set(after[len(written) :]) == {"declaration.token_refused"}
    async with superuser_engine.connect() as conn:  # one confirmation, whatever the retries
        assert (await conn.execute(text(CONFIRMATIONS), {"id": declaration_id})).scalar_one() == 1


async def test_a_reloaded_page_learns_from_its_key_that_its_submission_arrived(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """After an answer lost on the way and a reload, the form is refused (the link is used) and
    the page no longer holds the input to send again: the key the submission was sent with
    asks whether it arrived, and gets the receipt. Any other key learns nothing, not even
    whether the link was used; asking writes nothing, and is refused over GET."""
    declaration_id, token = link
    key, other = secrets.token_hex(16), {"t": token, "k": secrets.token_hex(16)}
    recipient = browser_for(auth_app)
    async with recipient.client:
        before = await _state(superuser_engine, declaration_id)
        assert codes(await recipient.gql(RECEIPT, {"t": token, "k": key})) == ["NOT_FOUND"]
        assert codes(await recipient.gql(RECEIPT, other)) == ["NOT_FOUND"]
        assert await _state(superuser_engine, declaration_id) == before  # not even opened
        submission = await _submission(recipient, token, key)
        first = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in first, first
        written = await _state(superuser_engine, declaration_id)
        receipt = await recipient.gql(RECEIPT, {"t": token, "k": key})
        assert receipt == {"data": {"submissionReceipt": first["data"]["submitDeclaration"]}}
        assert codes(await recipient.gql(RECEIPT, other)) == ["NOT_FOUND"]  # used, unsaid
        short = await recipient.gql(RECEIPT, {"t": token, "k": "short"})
        assert codes(short) == ["BAD_USER_INPUT"]
        unknown = await recipient.gql(RECEIPT, {"t": token + "x", "k": key})
        assert codes(unknown) == ["TOKEN_INVALID"]
        persisted = "sha256:" + document_id(first_party.SUBMISSION_RECEIPT)
        variables = json.dumps({"t": token, "k": key})
        fetched = await recipient.client.get(
            "/graphql", params={"documentId": persisted, "variables": variables}
        )
        assert fetched.status_code == 405, fetched.text
        assert fetched.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        assert await _state(superuser_engine, declaration_id) == written


async def _state(engine: AsyncEngine, declaration_id: str) -> tuple[Any, ...]:
    """What asking must not change: the declaration's status and first view, its audit
    entries, and the idempotency keys kept for it."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("select status, opened_at from declarations where id = :id"),
                {"id": declaration_id},
            )
        ).one()
        keys = await conn.scalar(text(KEYS), {"id": declaration_id})
    return (*row, keys, await actions_on(engine, declaration_id))


async def test_concurrent_attempts_with_one_key_all_get_the_one_receipt(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    declaration_id, token = link
    recipients = [browser_for(auth_app) for _ in range(10)]
    submission = await _submission(recipients[0], token, secrets.token_hex(16))
    results = await asyncio.gather(
        *(r.gql(SUBMIT, {"t": token, "i": submission}) for r in recipients)
    )
    for r in recipients:
        await r.client.aclose()
    assert all("errors" not in r for r in results), results
    receipts = {r["data"]["submitDeclaration"]["responseSha256"] for r in results}
    assert len(receipts) == 1
    entries = await actions_on(superuser_engine, declaration_id)
    assert entries.count("declaration.submitted") == 1
    async with superuser_engine.connect() as conn:
        stored = await conn.execute(
            text("select response_sha256 from declarations where id = :id"), {"id": declaration_id}
        )
        assert stored.scalar_one().hex() == receipts.pop()
        assert (await conn.execute(text(KEYS), {"id": declaration_id})).scalar_one() == 1
        assert (await conn.execute(text(CONFIRMATIONS), {"id": declaration_id})).scalar_one() == 1


async def test_a_key_answers_only_for_its_own_declaration(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    first_id, first_token = await sent_declaration(browser, smtp, new_email())
    second_id, second_token = await sent_declaration(browser, smtp, new_email())
    key = secrets.token_hex(16)
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, first_token, key)
        first = await recipient.gql(SUBMIT, {"t": first_token, "i": submission})
        # The same key and input on another link is that link's own first attempt.
        second = await recipient.gql(SUBMIT, {"t": second_token, "i": submission})
    assert "errors" not in first, first
    assert "errors" not in second, second
    assert first != second
    for declaration_id in (first_id, second_id):
        entries = await actions_on(superuser_engine, declaration_id)
        assert entries.count("declaration.submitted") == 1


async def test_a_refused_first_attempt_keeps_nothing_so_its_retry_submits(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    declaration_id, token = link
    key = secrets.token_hex(16)
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, token, key)
        unsigned = {**submission, "attestationAccepted": False}
        refused = await recipient.gql(SUBMIT, {"t": token, "i": unsigned})
        assert codes(refused) == ["BAD_USER_INPUT"]
        async with superuser_engine.connect() as conn:  # a refused submission confirms nothing
            assert (await conn.scalar(text(CONFIRMATIONS), {"id": declaration_id})) == 0
        done = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in done, done
    async with superuser_engine.connect() as conn:
        assert (await conn.execute(text(KEYS), {"id": declaration_id})).scalar_one() == 1
        assert (await conn.scalar(text(CONFIRMATIONS), {"id": declaration_id})) == 1


async def test_a_submissions_key_must_be_hard_to_guess(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    declaration_id, token = link
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, token, "x" * 31)
        refused = await recipient.gql(SUBMIT, {"t": token, "i": submission})
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"]["fields"][0]["field"] == "idempotencyKey"
    assert "declaration.submitted" not in await actions_on(superuser_engine, declaration_id)


async def test_a_keyed_submission_waiting_for_its_row_holds_no_firm_wide_lock(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """A reminder (or revocation) locks the row, then the firm's chain lock; a submission
    that took the firm's lock first and then waited for the row would deadlock with it."""
    declaration_id, token = link
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, token, secrets.token_hex(16))
        async with superuser_engine.connect() as conn:
            firm_id = await conn.scalar(
                text("select firm_id from declarations where id = :id for update"),
                {"id": declaration_id},
            )
            submitting = asyncio.create_task(recipient.gql(SUBMIT, {"t": token, "i": submission}))
            await until_lock_waited(superuser_engine)
            free = await conn.scalar(
                text("select pg_try_advisory_xact_lock(:key)"), {"key": chain._lock_key(firm_id)}
            )
            await conn.commit()
        done = await submitting
    assert free, "the submission held the firm's chain lock while it waited for the row"
    assert "errors" not in done, done


async def test_a_retry_is_not_answered_from_a_row_altered_since(
    link: tuple[str, str], auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    """Past the finality trigger, a row given another hash is not handed back as the receipt
    its key was kept with."""
    declaration_id, token = link
    recipient = browser_for(auth_app)
    async with recipient.client:
        submission = await _submission(recipient, token, secrets.token_hex(16))
        first = await recipient.gql(SUBMIT, {"t": token, "i": submission})
        assert "errors" not in first, first
        async with superuser_engine.begin() as conn:
            await conn.execute(text("alter table declarations disable trigger user"))
            await conn.execute(
                text("update declarations set response_sha256 = sha256('x') where id = :id"),
                {"id": declaration_id},
            )
            await conn.execute(text("alter table declarations enable trigger user"))
        again = await recipient.gql(SUBMIT, {"t": token, "i": submission})
    assert codes(again) == ["TOKEN_USED"]
