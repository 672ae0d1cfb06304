"""GraphQL types for templates, declarations and the recipients' form."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from app.db.models import Declaration as DeclarationModel
from app.declarations.public import receipt_covers_form
from app.declarations.service import effective_status
from app.declarations.template_service import Template as TemplateValue
from app.declarations.templates import TemplateSpec, spec_from_snapshot
from app.schema.access import scoped
from app.schema.context import Info
from app.schema.counterparties import Counterparty, counterparty_loader
from app.schema.enums import Long
from app.schema.pagination import PageInfo


@strawberry.enum
class DeclarationStatus(Enum):
    DRAFT = "draft"
    SENT = "sent"
    OPENED = "opened"
    SUBMITTED = "submitted"
    EXPIRED = "expired"
    REVOKED = "revoked"


@strawberry.enum
class QuestionKind(Enum):
    YES_NO = "yes_no"
    SHORT_TEXT = "short_text"
    LONG_TEXT = "long_text"
    DATE = "date"
    MONEY = "money"
    CHOICE = "choice"


@strawberry.enum
class TemplateAudience(Enum):
    PERSON = "person"
    COUNTERPARTY = "counterparty"


@strawberry.type
class TemplateQuestion:
    id: str
    label: str
    kind: QuestionKind
    required: bool
    help: str | None
    explain_if: str | None = strawberry.field(
        description=(
            '"yes" or "no": that answer requires the explanation "<id>_explanation", which any '
            "other answer, or none, refuses."
        )
    )
    explain_label: str | None
    choices: list[str] | None
    max_length: int | None
    min_pence: Long | None
    max_pence: Long | None


def questions_of(spec: TemplateSpec) -> list[TemplateQuestion]:
    return [
        TemplateQuestion(
            id=q.id,
            label=q.label,
            kind=QuestionKind(q.kind.value),
            required=q.required,
            help=q.help,
            explain_if=q.explain_if,
            explain_label=q.explain_label,
            choices=list(q.choices) if q.choices else None,
            max_length=q.max_length,
            min_pence=None if q.min_pence is None else Long(q.min_pence),
            max_pence=None if q.max_pence is None else Long(q.max_pence),
        )
        for q in spec.questions
    ]


@strawberry.type
class Template:
    id: uuid.UUID
    name: str
    audience: TemplateAudience
    version: int
    built_in: bool
    questions: list[TemplateQuestion]
    attestation: str

    @classmethod
    def of(cls, template: TemplateValue) -> Template:
        return cls.from_spec(template.id, template.version, template.spec, template.built_in)

    @classmethod
    def from_spec(cls, id: uuid.UUID, version: int, spec: TemplateSpec, built_in: bool) -> Template:
        return cls(
            id=id,
            name=spec.name,
            audience=TemplateAudience(spec.audience),
            version=version,
            built_in=built_in,
            questions=questions_of(spec),
            attestation=spec.attestation,
        )


@strawberry.type
class TemplateEdge:
    cursor: str
    node: Template


@strawberry.type
class TemplateConnection:
    edges: list[TemplateEdge]
    page_info: PageInfo


def _receipt_covers_form(root: DeclarationResponse) -> bool:
    # Worked out only when asked for: it hashes the whole form.
    return receipt_covers_form(root.submitted)


@strawberry.type
class DeclarationResponse:
    answers: JSON
    attestation_accepted: bool
    signature_name: str
    submitted_at: datetime
    submitted_ip: str | None
    submitted_user_agent: str | None
    response_sha256: str = strawberry.field(description="Hex SHA-256 of the canonical response.")
    submitted: strawberry.Private[DeclarationModel]
    receipt_covers_form: bool = strawberry.field(
        resolver=_receipt_covers_form,
        description=(
            "Whether responseSha256 covers the form answered as well as the answers: false for "
            "a receipt given before receipts covered the form (docs/audit.md)."
        ),
    )


async def _counterparty(root: Declaration, info: Info) -> Counterparty | None:
    if root.counterparty_id is None:
        return None
    found = await counterparty_loader(info.context).load(root.counterparty_id)
    return Counterparty.from_model(found) if found is not None else None


def _pinned_template(root: Declaration) -> Template:
    # Built only when asked for: validating a whole template per row is the costly part of a page.
    spec = spec_from_snapshot(root.snapshot)
    return Template.from_spec(
        root.template_id, root.template_version, spec, root.snapshot.get("key") is not None
    )


@strawberry.type
class Declaration:
    id: uuid.UUID
    template_id: uuid.UUID
    template_version: int
    template_name: str
    snapshot: strawberry.Private[dict[str, Any]]
    pinned_template: Template = strawberry.field(
        resolver=_pinned_template,
        description="The exact questions the recipient was sent, whatever changed since.",
    )
    recipient_name: str
    recipient_email: str
    counterparty_id: uuid.UUID | None
    counterparty: Counterparty | None = strawberry.field(
        resolver=_counterparty, metadata=scoped("counterparties:read")
    )
    due_date: date | None
    status: DeclarationStatus
    created_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    submitted_at: datetime | None
    revoked_at: datetime | None
    last_reminded_at: datetime | None
    reminder_count: int
    link_expires_at: datetime | None
    response: DeclarationResponse | None

    @classmethod
    def of(cls, d: DeclarationModel) -> Declaration:
        snap = d.template_snapshot
        response = None
        if d.status == "submitted" and d.submitted_at and d.response_sha256:
            response = DeclarationResponse(
                answers=cast(JSON, d.answers or {}),
                attestation_accepted=bool(d.attestation_accepted),
                signature_name=d.signature_name or "",
                submitted_at=d.submitted_at,
                submitted_ip=d.submitted_ip,
                submitted_user_agent=d.submitted_user_agent,
                response_sha256=d.response_sha256.hex(),
                submitted=d,
            )
        return cls(
            id=d.id,
            template_id=d.template_id,
            template_version=d.template_version,
            template_name=snap["name"],
            snapshot=snap,
            recipient_name=d.recipient_name,
            recipient_email=d.recipient_email,
            counterparty_id=d.counterparty_id,
            due_date=d.due_date,
            status=DeclarationStatus(effective_status(d)),
            created_at=d.created_at,
            sent_at=d.sent_at,
            opened_at=d.opened_at,
            submitted_at=d.submitted_at,
            revoked_at=d.revoked_at,
            last_reminded_at=d.last_reminded_at,
            reminder_count=d.reminder_count,
            link_expires_at=d.token_expires_at,
            response=response,
        )


@strawberry.type
class DeclarationEdge:
    cursor: str
    node: Declaration


@strawberry.type
class DeclarationConnection:
    edges: list[DeclarationEdge]
    page_info: PageInfo


@strawberry.type
class DeclarationCounts:
    draft: int
    sent: int
    opened: int
    submitted: int
    expired: int
    revoked: int


@strawberry.type
class RecipientForm:
    """What a recipient sees: no other declaration, person or firm data."""

    firm_name: str
    recipient_name: str
    template_name: str
    template_version: int
    questions: list[TemplateQuestion]
    attestation: str
    due_date: date | None
    link_expires_at: datetime | None


@strawberry.input
class DeclarationCreateInput:
    template_id: uuid.UUID
    recipient_name: str
    recipient_email: str
    counterparty_id: uuid.UUID | None = None
    due_date: date | None = strawberry.field(
        default=None,
        description="The last day to answer, a day in London (where the firm's days are): "
        "refused once it has passed there; the link ends with it, plus the grace days.",
    )
    link_days: int | None = strawberry.field(
        default=None, description="Days the link works (default 14; never past due date + grace)."
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.input
class RecipientInput:
    name: str
    email: str


@strawberry.input
class BulkDeclarationCreateInput:
    template_id: uuid.UUID
    recipients: list[RecipientInput]
    due_date: date | None = strawberry.field(
        default=None,
        description="The last day to answer, a day in London (where the firm's days are): "
        "refused once it has passed there; the link ends with it, plus the grace days.",
    )
    link_days: int | None = None
    send: bool = True
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.input
class DeclarationFilterInput:
    status: DeclarationStatus | None = None
    template_id: uuid.UUID | None = None
    counterparty_id: uuid.UUID | None = None
    search: str | None = None
    due_before: date | None = None


@strawberry.input
class SubmissionInput:
    answers: JSON = strawberry.field(description="Question id to answer; see the form's questions.")
    attestation_accepted: bool
    signature_name: str
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="A random value, the same on every attempt at this submission: a retry "
        "after an answer was lost returns the first receipt instead of TOKEN_USED.",
    )


@strawberry.input
class TemplateInput:
    name: str
    audience: TemplateAudience
    questions: JSON
    attestation: str
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.type
class DeclarationPayload:
    declaration: Declaration


@strawberry.type
class BulkDeclarationPayload:
    declarations: list[Declaration]


@strawberry.type
class TemplatePayload:
    template: Template


@strawberry.type
class SubmitDeclarationPayload:
    submitted_at: datetime
    response_sha256: str
