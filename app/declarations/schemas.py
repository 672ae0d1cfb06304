"""Validated inputs for declarations (pydantic, strict: unknown keys are refused)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.auth.schemas import Email
from app.idempotency import Key
from app.visible import plain_name

# Listed to every member and printed in the packs: shown as stored.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(plain_name),
]
MAX_BULK = 500
# A due date's link expiry is counted past it in datetimes, which end in year 9999.
LATEST_DUE = date(2200, 12, 31)
DueDate = Annotated[date, Field(le=LATEST_DUE)]


def _signed(name: str) -> str:
    """A signature, if given, is a name shown as stored (the pack prints it as signed)."""
    return plain_name(name) if name else name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recipient(Strict):
    name: Name
    email: Email


class DeclarationCreate(Strict):
    template_id: uuid.UUID
    recipient_name: Name
    recipient_email: Email
    counterparty_id: uuid.UUID | None = None
    due_date: DueDate | None = None
    link_days: int | None = Field(default=None, ge=1, le=90)
    idempotency_key: Key | None = None


class BulkDeclarationCreate(Strict):
    template_id: uuid.UUID
    recipients: list[Recipient] = Field(min_length=1, max_length=MAX_BULK)
    due_date: DueDate | None = None
    link_days: int | None = Field(default=None, ge=1, le=90)
    send: bool = True
    idempotency_key: Key | None = None


# A used link answers whoever holds it and the key: the key must be as hard to guess.
SubmissionKey = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=32, max_length=100)
]


class Submission(Strict):
    answers: dict[str, Any]
    attestation_accepted: bool
    # May be empty here: a missing signature is refused with the other problems of the
    # submission (public.submit_declaration), not before them.
    signature_name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=200),
        AfterValidator(_signed),
    ]
    idempotency_key: SubmissionKey | None = None


class DeclarationFilter(Strict):
    status: str | None = None
    template_id: uuid.UUID | None = None
    counterparty_id: uuid.UUID | None = None
    search: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    due_before: date | None = None
