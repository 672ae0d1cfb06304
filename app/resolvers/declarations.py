"""Resolvers for templates and declarations (firm side) and the recipients' public fields."""

from __future__ import annotations

import uuid
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from app import idempotency
from app.declarations import public, service, template_service
from app.declarations.schemas import (
    BulkDeclarationCreate,
    DeclarationCreate,
    DeclarationFilter,
    Submission,
    SubmissionKey,
)
from app.declarations.templates import NewTemplateSpec, spec_from_snapshot
from app.errors import MethodNotAllowed, field_error
from app.schema.context import Info
from app.schema.declarations import (
    BulkDeclarationCreateInput,
    BulkDeclarationPayload,
    Declaration,
    DeclarationConnection,
    DeclarationCounts,
    DeclarationCreateInput,
    DeclarationEdge,
    DeclarationFilterInput,
    DeclarationPayload,
    RecipientForm,
    SubmissionInput,
    SubmitDeclarationPayload,
    Template,
    TemplateConnection,
    TemplateEdge,
    TemplateInput,
    TemplatePayload,
    questions_of,
)
from app.schema.pagination import PageInfo

if TYPE_CHECKING:
    from app.db.models import Declaration as Row

_SUBMISSION_KEY: TypeAdapter[str] = TypeAdapter(SubmissionKey)


def _plain(value: Any) -> Any:
    """Strawberry inputs (and enums) as plain data for pydantic."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "__strawberry_definition__") and not isinstance(value, type):
        return {key: _plain(item) for key, item in vars(value).items()}
    return value


async def templates(
    info: Info, first: int = template_service.MAX_PAGE, after: str | None = None
) -> TemplateConnection:
    found, has_next_page = await info.context.run(
        template_service.list_templates, first=first, after=after
    )
    edges = [
        TemplateEdge(cursor=template_service.encode_cursor(t), node=Template.of(t)) for t in found
    ]
    end_cursor = edges[-1].cursor if edges else None
    return TemplateConnection(
        edges=edges, page_info=PageInfo(has_next_page=has_next_page, end_cursor=end_cursor)
    )


async def template(info: Info, id: uuid.UUID) -> Template:
    return Template.of(await info.context.run(template_service.get_template, id))


async def create_template(info: Info, input: TemplateInput) -> TemplatePayload:
    fields = _plain(input)
    key = idempotency.checked_key(fields.pop("idempotency_key"))
    spec = NewTemplateSpec.model_validate(fields)
    created = await info.context.run(template_service.create_template, spec, key)
    return TemplatePayload(template=Template.of(created))


async def create_template_version(
    info: Info,
    template_id: uuid.UUID,
    input: TemplateInput,
) -> TemplatePayload:
    fields = _plain(input)
    key = idempotency.checked_key(fields.pop("idempotency_key"))
    spec = NewTemplateSpec.model_validate(fields)
    created = await info.context.run(
        template_service.create_template_version, template_id, spec, key
    )
    return TemplatePayload(template=Template.of(created))


async def declarations(
    info: Info,
    filter: DeclarationFilterInput | None = None,
    first: int = 20,
    after: str | None = None,
) -> DeclarationConnection:
    filters = DeclarationFilter.model_validate(_plain(filter) if filter else {})
    rows, more = await info.context.run(service.list_declarations, filters, first, after)
    edges = [DeclarationEdge(cursor=service.encode_cursor(d), node=Declaration.of(d)) for d in rows]
    end = edges[-1].cursor if edges else None
    return DeclarationConnection(
        edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end)
    )


async def declaration(info: Info, id: uuid.UUID) -> Declaration:
    return Declaration.of(await info.context.run(service.get_declaration, id))


async def declaration_counts(info: Info) -> DeclarationCounts:
    return DeclarationCounts(**await info.context.run(service.counts))


def create_input(input: DeclarationCreateInput) -> DeclarationCreate:
    """The validated input of ``createDeclaration`` (the write lane validates it here too)."""
    return DeclarationCreate.model_validate(_plain(input))


async def create_declaration(info: Info, input: DeclarationCreateInput) -> DeclarationPayload:
    data = create_input(input)
    return DeclarationPayload(
        declaration=Declaration.of(await info.context.run(service.create_declaration, data))
    )


async def send_declaration(info: Info, id: uuid.UUID) -> DeclarationPayload:
    sent = await info.context.run(service.send_declaration, info.context.auth_env, id)
    return DeclarationPayload(declaration=Declaration.of(sent))


async def remind_declaration(info: Info, id: uuid.UUID) -> DeclarationPayload:
    reminded = await info.context.run(service.remind_declaration, info.context.auth_env, id)
    return DeclarationPayload(declaration=Declaration.of(reminded))


async def reissue_declaration_link(info: Info, id: uuid.UUID) -> DeclarationPayload:
    reissued = await info.context.run(service.reissue_declaration_link, info.context.auth_env, id)
    return DeclarationPayload(declaration=Declaration.of(reissued))


async def revoke_declaration(info: Info, id: uuid.UUID) -> DeclarationPayload:
    return DeclarationPayload(
        declaration=Declaration.of(await info.context.run(service.revoke_declaration, id))
    )


async def bulk_create_declarations(
    info: Info,
    input: BulkDeclarationCreateInput,
) -> BulkDeclarationPayload:
    data = BulkDeclarationCreate.model_validate(_plain(input))
    created = await info.context.run(service.bulk_create_declarations, info.context.auth_env, data)
    return BulkDeclarationPayload(declarations=[Declaration.of(d) for d in created])


async def recipient_form(info: Info, token: str) -> RecipientForm:
    if info.context.method != "POST":
        # The first view is recorded (the declaration becomes opened), and a GET, which link
        # scanners and prefetchers send unasked, must change nothing.
        raise MethodNotAllowed("Open the form with POST: viewing it is recorded.")
    found, firm_name = await info.context.run_public(public.recipient_form, token)
    spec = spec_from_snapshot(found.template_snapshot)
    return RecipientForm(
        firm_name=firm_name,
        recipient_name=found.recipient_name,
        template_name=spec.name,
        template_version=found.template_version,
        questions=questions_of(spec),
        attestation=spec.attestation,
        due_date=found.due_date,
        link_expires_at=found.token_expires_at,
    )


async def submission_receipt(
    info: Info, token: str, idempotency_key: str
) -> SubmitDeclarationPayload:
    if info.context.method != "POST":
        raise MethodNotAllowed("Ask with POST: the link and the key stay out of URLs and logs.")
    try:
        key = _SUBMISSION_KEY.validate_python(idempotency_key)
    except ValidationError as error:
        raise field_error("idempotencyKey", "Send the key the submission was sent with.") from error
    return _receipt(await info.context.run_public(public.submission_receipt, token, key))


async def submit_declaration(
    info: Info, token: str, input: SubmissionInput
) -> SubmitDeclarationPayload:
    data = Submission.model_validate(_plain(input))
    return _receipt(await info.context.run_public(public.submit_declaration, token, data))


def _receipt(done: Row) -> SubmitDeclarationPayload:
    assert done.submitted_at is not None
    assert done.response_sha256 is not None
    return SubmitDeclarationPayload(
        submitted_at=done.submitted_at, response_sha256=done.response_sha256.hex()
    )
