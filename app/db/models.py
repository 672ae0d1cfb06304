"""SQLAlchemy models. The tables themselves, their grants and RLS policies live in migrations/."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        bytes: LargeBinary,
    }


class Firm(Base):
    __tablename__ = "firms"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    frn: Mapped[str | None] = mapped_column(String(7))
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    email_verified_at: Mapped[datetime | None]
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    links_spent_at: Mapped[datetime | None]


class Membership(Base):
    __tablename__ = "memberships"

    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID | None]
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str | None] = mapped_column(Text)
    target_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    ip: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[bytes]
    hash: Mapped[bytes]
    canonical: Mapped[bytes]


class AuthToken(Base):
    __tablename__ = "auth_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[bytes]
    user_id: Mapped[uuid.UUID | None]
    firm_id: Mapped[uuid.UUID | None]
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class DeclarationTemplate(Base):
    __tablename__ = "declaration_templates"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(Text)
    latest_version: Mapped[int]
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]


class TemplateVersion(Base):
    __tablename__ = "template_versions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    template_id: Mapped[uuid.UUID]
    version: Mapped[int]
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    attestation: Mapped[str] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]


class Counterparty(Base):
    __tablename__ = "counterparties"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    frn: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_email: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]


class DeclarationForm(Base):
    """A template version as a firm sent it, once, by its hash."""

    __tablename__ = "declaration_forms"

    firm_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The database's hash of the form, never the writer's to give (0036).
    sha256: Mapped[bytes] = mapped_column(
        Computed("declaration_form_key(snapshot)", persisted=True), primary_key=True
    )
    snapshot: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Declaration(Base):
    __tablename__ = "declarations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID] = mapped_column()
    template_id: Mapped[uuid.UUID]
    template_version: Mapped[int]
    # What the declaration was sent with: its own copy, on rows made before 0036, or its firm's
    # form by hash (exactly one is set). Read ``template_snapshot``, which is either.
    own_snapshot: Mapped[dict[str, Any] | None] = mapped_column("template_snapshot", deferred=True)
    form_key: Mapped[bytes | None] = mapped_column()
    template_snapshot: Mapped[dict[str, Any]] = column_property(
        func.coalesce(
            own_snapshot,
            select(DeclarationForm.snapshot)
            .where(DeclarationForm.firm_id == firm_id, DeclarationForm.sha256 == form_key)
            .correlate_except(DeclarationForm)
            .scalar_subquery(),
            type_=JSONB,
        ),
        expire_on_flush=False,  # a declaration's form never changes (0032, 0036)
    )
    recipient_name: Mapped[str] = mapped_column(Text)
    recipient_email: Mapped[str] = mapped_column(Text)
    counterparty_id: Mapped[uuid.UUID | None]
    due_date: Mapped[date | None] = mapped_column(Date)
    # Days each link it is sent lasts (null: the default), never past due date + grace.
    link_days: Mapped[int | None]
    status: Mapped[str] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_reminded_at: Mapped[datetime | None]
    reminder_count: Mapped[int]
    token_hash: Mapped[bytes | None]
    token_expires_at: Mapped[datetime | None]
    answers: Mapped[dict[str, Any] | None]
    attestation_accepted: Mapped[bool | None]
    signature_name: Mapped[str | None] = mapped_column(Text)
    submitted_ip: Mapped[str | None] = mapped_column(Text)
    submitted_user_agent: Mapped[str | None] = mapped_column(Text)
    response_sha256: Mapped[bytes | None]


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes]
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(Text)
    signature: Mapped[bytes]
    created_by: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(Text)
    secret_hash: Mapped[bytes]
    display_prefix: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class TrustedDocument(Base):
    __tablename__ = "trusted_documents"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    operation_type: Mapped[str | None] = mapped_column(Text)
    loaded_at: Mapped[datetime]


class EvidencePack(Base):
    __tablename__ = "evidence_packs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    firm_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(Text)
    scope: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(Text)
    # The stored object's version, where the store keeps versions (S3 with versioning on).
    storage_version: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[bytes | None]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    page_count: Mapped[int | None]
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    firm_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    actor_id: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    operation: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
