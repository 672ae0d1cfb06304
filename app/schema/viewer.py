"""GraphQL types for the signed-in caller."""

from __future__ import annotations

import uuid

import strawberry

from app.errors import EmailNotVerified
from app.schema.enums import Role
from app.schema.firms import Firm


@strawberry.type
class User:
    id: uuid.UUID
    email: str
    email_verified: bool


def _firm(root: Viewer) -> Firm:
    if root.firm_record is None:
        raise EmailNotVerified()
    return root.firm_record


@strawberry.type
class Viewer:
    user: User
    role: Role
    firm_record: strawberry.Private[Firm | None]
    firm: Firm = strawberry.field(
        resolver=_firm, description="The active firm; EMAIL_NOT_VERIFIED until the email is."
    )
