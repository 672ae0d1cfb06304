"""A recipient's receipt (``responseSha256``) covers what they answered and the form they
answered, word for word, in the format docs/audit.md gives, so whoever holds the stored form
and response can recompute it."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.db.models import Declaration
from app.declarations.public import receipt_covers_form, receipt_hash, response_matches
from tests.browser import Browser, signed_up
from tests.declarations.test_loop import FIT
from tests.evidence.support import submitted_declaration
from tests.mail.smtp import SmtpServer


def _sha256(value: Any) -> str:
    """As docs/audit.md says: UTF-8 JSON, keys sorted, no spaces."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


async def test_a_receipt_is_the_documented_hash_of_the_response_and_its_form(
    browser: Browser, smtp: SmtpServer, auth_app: Starlette, superuser_engine: AsyncEngine
) -> None:
    await signed_up(browser, smtp)
    done = await submitted_declaration(browser, smtp, auth_app, "Robin Receipt")
    async with superuser_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select d.*, f.snapshot, f.sha256 from declarations d join declaration_forms f "
                    "on f.firm_id = d.firm_id and f.sha256 = d.form_key where d.id = :id"
                ),
                {"id": done.id},
            )
        ).one()
    assert row.template_snapshot is None  # the form is the firm's, kept once (0036)
    body = {
        "declaration_id": done.id,
        "firm_id": str(row.firm_id),
        "template_id": str(row.template_id),
        "template_version": row.template_version,
        "answers": done.answers,
        "attestation_accepted": True,
        "signature_name": "Robin Receipt",
        "submitted_at": row.submitted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "form_sha256": _sha256(row.snapshot),
    }
    assert _sha256(body) == done.receipt
    read = await browser.gql(
        "query($id: UUID!) { declaration(id: $id) { response { receiptCoversForm } } }",
        {"id": done.id},
    )
    assert read["data"]["declaration"]["response"] == {"receiptCoversForm": True}, read
    assert row.snapshot["questions"] == [q.model_dump(mode="json") for q in FIT.spec.questions]


def _submitted(snapshot: dict[str, Any]) -> Declaration:
    return Declaration(
        id=uuid.uuid4(),
        firm_id=uuid.uuid4(),
        template_id=FIT.id,
        template_version=1,
        template_snapshot=snapshot,
        answers={"q1": True},
        attestation_accepted=True,
        signature_name="Pat Doe",
        submitted_at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
    )


def _reworded(snapshot: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(snapshot)
    changed["attestation"] = "I confirm nothing."
    return changed


def test_a_reworded_form_no_longer_matches_its_receipt() -> None:
    snapshot = {"name": "Fit", "questions": [{"id": "q1", "label": "Ever?"}], "attestation": "Yes."}
    declaration = _submitted(snapshot)
    declaration.response_sha256 = receipt_hash(
        declaration, {"q1": True}, True, "Pat Doe", declaration.submitted_at
    )
    assert response_matches(declaration)
    assert receipt_covers_form(declaration)
    declaration.template_snapshot = _reworded(snapshot)
    assert not response_matches(declaration)
    assert not receipt_covers_form(declaration)


def test_a_receipt_given_before_forms_were_covered_still_matches_its_response() -> None:
    """Receipts hashed over the response alone stay valid (their form was never covered);
    their response is still held to them."""
    snapshot = {"name": "Fit", "questions": [{"id": "q1", "label": "Ever?"}], "attestation": "Yes."}
    declaration = _submitted(snapshot)
    at = declaration.submitted_at
    declaration.response_sha256 = receipt_hash(
        declaration, {"q1": True}, True, "Pat Doe", at, form=False
    )
    assert response_matches(declaration)
    assert not receipt_covers_form(declaration)  # what packs and the API say of it
    declaration.signature_name = "Someone Else"
    assert not response_matches(declaration)
