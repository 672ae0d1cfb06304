"""GraphQL types for evidence packs (root fields in ``evidence_root.py``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry

from app.db.models import EvidencePack as EvidencePackModel
from app.evidence import service
from app.evidence.service import EvidenceEnv
from app.schema.context import Info
from app.schema.pagination import PageInfo


@strawberry.enum(description="pending while it is made (never seen by others), then one of two.")
class EvidencePackStatus(Enum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@strawberry.type(description="What the pack covers, as requested.")
class EvidencePackScope:
    start: date = strawberry.field(name="from", description="First day (UTC) of the period.")
    end: date = strawberry.field(name="to", description="Last day (UTC) of the period.")
    declaration_ids: list[uuid.UUID] | None
    counterparty_ids: list[uuid.UUID] | None

    @classmethod
    def of(cls, scope: dict[str, Any]) -> EvidencePackScope:
        def ids(key: str) -> list[uuid.UUID] | None:
            values = scope.get(key)
            return None if values is None else [uuid.UUID(v) for v in values]

        return cls(
            start=date.fromisoformat(scope["from"]),
            end=date.fromisoformat(scope["to"]),
            declaration_ids=ids("declaration_ids"),
            counterparty_ids=ids("counterparty_ids"),
        )


def evidence_env(info: Info) -> EvidenceEnv:
    """What the pack services need from the request context."""
    context = info.context
    if context.storage is None or context.sessions is None:
        raise RuntimeError("the request context has no evidence-pack storage or sessions")
    return EvidenceEnv(
        sessions=context.sessions,
        storage=context.storage,
        signing_key=context.signing_key,
        secret_key=context.secret_key,
        public_url=context.settings.public_url,
        cover_window_days=context.settings.cover_expiry_window_days,
        limiter=context.limiter,
    )


async def _download_url(root: EvidencePack, info: Info) -> str | None:
    return await info.context.run(service.download_url, evidence_env(info), root.id)


@strawberry.type
class EvidencePack:
    id: uuid.UUID
    title: str
    status: EvidencePackStatus
    failure_reason: str | None
    scope: EvidencePackScope
    sha256: str | None = strawberry.field(description="Hex SHA-256 of the PDF, once ready.")
    size_bytes: int | None
    page_count: int | None
    created_at: datetime
    completed_at: datetime | None
    download_url: str | None = strawberry.field(
        resolver=_download_url,
        description="Null until ready; the app's own link, valid for 5 minutes. It also needs "
        "a session of the same firm, or its partner key with evidence:read as a Bearer header; "
        "the file is checked against its SHA-256, and every download is audited as it is served.",
    )

    @classmethod
    def of(cls, pack: EvidencePackModel) -> EvidencePack:
        return cls(
            id=pack.id,
            title=pack.title,
            status=EvidencePackStatus(pack.status),
            failure_reason=pack.failure_reason,
            scope=EvidencePackScope.of(pack.scope),
            sha256=pack.sha256.hex() if pack.sha256 else None,
            size_bytes=pack.size_bytes,
            page_count=pack.page_count,
            created_at=pack.created_at,
            completed_at=pack.completed_at,
        )


@strawberry.type
class EvidencePackEdge:
    cursor: str
    node: EvidencePack


@strawberry.type
class EvidencePackConnection:
    edges: list[EvidencePackEdge]
    page_info: PageInfo


@strawberry.input
class EvidencePackGenerateInput:
    start: date = strawberry.field(name="from", description="First day (UTC) of the period.")
    end: date = strawberry.field(name="to", description="Last day (UTC) of the period.")
    title: str
    declaration_ids: list[uuid.UUID] | None = strawberry.field(
        default=None, description="Exactly these declarations, whatever their dates."
    )
    counterparty_ids: list[uuid.UUID] | None = strawberry.field(
        default=None,
        description=(
            "Only these counterparties' cover status, and (unless declarationIds names the "
            "declarations) only their declarations."
        ),
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying: the first result returns."
    )


@strawberry.type(description="A failed pack is a result too: see status and failureReason.")
class EvidencePackPayload:
    pack: EvidencePack
