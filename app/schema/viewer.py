"""GraphQL types for the signed-in caller."""

from __future__ import annotations

import uuid

import strawberry

from app.auth.actor import Role
from app.schema.firms import Firm

strawberry.enum(Role, description="What a member may do: viewer < member < admin < owner.")


@strawberry.type
class User:
    id: uuid.UUID
    email: str
    email_verified: bool


@strawberry.type
class Viewer:
    user: User
    role: Role
    firm: Firm
