"""GraphQL types for sign-up, sign-in, sessions and members."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from app.schema.enums import Role


@strawberry.input
class SignUpInput:
    email: str
    password: str | None = strawberry.field(
        default=None, description="12-128 characters; omit to sign in by magic link only."
    )
    firm_name: str
    frn: str | None = None


@strawberry.type
class MailSentPayload:
    """The same answer whether or not the address is registered."""

    accepted: bool
    message: str


@strawberry.type
class SignInPayload:
    """The session cookie is set on the response (HttpOnly); it is never in the body."""

    user_id: uuid.UUID
    firm_id: uuid.UUID
    role: Role
    email_verified: bool


@strawberry.type
class OkPayload:
    ok: bool


@strawberry.type
class SessionInfo:
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


@strawberry.type
class FirmMembership:
    firm_id: uuid.UUID
    firm_name: str
    role: Role
    active: bool


@strawberry.type
class Member:
    user_id: uuid.UUID
    email: str
    email_verified: bool
    role: Role


@strawberry.type
class Invitation:
    """An invitation not yet accepted, withdrawn or expired."""

    id: uuid.UUID
    email: str
    role: Role
    invited_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


@strawberry.input
class InviteMemberInput:
    email: str
    role: Role
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.input
class MemberRoleChangeInput:
    user_id: uuid.UUID
    role: Role


@strawberry.type
class MemberRoleChangePayload:
    member: Member
