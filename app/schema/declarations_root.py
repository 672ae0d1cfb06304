"""Root fields for templates and declarations, and the recipients' public fields."""

from __future__ import annotations

import strawberry

from app.resolvers import declarations as r
from app.schema.access import PUBLIC, scoped
from app.schema.declarations import (
    BulkDeclarationPayload,
    Declaration,
    DeclarationConnection,
    DeclarationCounts,
    DeclarationPayload,
    RecipientForm,
    SubmitDeclarationPayload,
    Template,
    TemplateConnection,
    TemplatePayload,
)


@strawberry.type
class DeclarationQuery:
    templates: TemplateConnection = strawberry.field(
        metadata=scoped("declarations:read"),
        resolver=r.templates,
        description="Built-in templates, then the firm's own by name; `first` is at most 20.",
    )
    template: Template = strawberry.field(metadata=scoped("declarations:read"), resolver=r.template)
    declarations: DeclarationConnection = strawberry.field(
        metadata=scoped("declarations:read"),
        resolver=r.declarations,
        description="Newest first; `first` is at most 100.",
    )
    declaration: Declaration = strawberry.field(
        metadata=scoped("declarations:read"), resolver=r.declaration
    )
    declaration_counts: DeclarationCounts = strawberry.field(
        metadata=scoped("declarations:read"), resolver=r.declaration_counts
    )
    recipient_form: RecipientForm = strawberry.field(
        resolver=r.recipient_form,
        metadata=PUBLIC,
        description=(
            "A recipient's form, by the token in their link; viewing does not use it up. "
            "POST only: the first view is recorded (METHOD_NOT_ALLOWED over GET)."
        ),
    )
    submission_receipt: SubmitDeclarationPayload = strawberry.field(
        resolver=r.submission_receipt,
        metadata=PUBLIC,
        description=(
            "The receipt of a recipient's submission, asked with the token and the "
            "idempotencyKey it was sent with: after an answer lost on the way, whether it "
            "arrived. NOT_FOUND while nothing has arrived with that key; writes nothing."
        ),
    )


@strawberry.type
class DeclarationMutation:
    create_template: TemplatePayload = strawberry.mutation(
        resolver=r.create_template, description="Add a form of the firm's own (admins)."
    )
    create_template_version: TemplatePayload = strawberry.mutation(
        resolver=r.create_template_version,
        description="A new version of the firm's form; declarations keep theirs (admins).",
    )
    create_declaration: DeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"),
        resolver=r.create_declaration,
        description="A draft, pinned to the template's version.",
    )
    bulk_create_declarations: BulkDeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"),
        resolver=r.bulk_create_declarations,
        description="All or nothing; sends by default.",
    )
    send_declaration: DeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"), resolver=r.send_declaration
    )
    remind_declaration: DeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"),
        resolver=r.remind_declaration,
        description="Emails a fresh link; the old one stops working.",
    )
    reissue_declaration_link: DeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"), resolver=r.reissue_declaration_link
    )
    revoke_declaration: DeclarationPayload = strawberry.mutation(
        metadata=scoped("declarations:write"), resolver=r.revoke_declaration
    )
    submit_declaration: SubmitDeclarationPayload = strawberry.mutation(
        resolver=r.submit_declaration,
        metadata=PUBLIC,
        description="The one public mutation: a recipient submits, once, by their link's token.",
    )
