"""GraphQL types for partner API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum

import strawberry

from app.db.models import ApiKey as ApiKeyModel


@strawberry.enum
class ApiKeyScope(Enum):
    DECLARATIONS_READ = "declarations:read"
    DECLARATIONS_WRITE = "declarations:write"
    COUNTERPARTIES_READ = "counterparties:read"
    COUNTERPARTIES_WRITE = "counterparties:write"
    AUDIT_READ = "audit:read"
    EVIDENCE_READ = "evidence:read"


@strawberry.type
class ApiKey:
    id: uuid.UUID
    name: str
    prefix: str = strawberry.field(description="The key's public start, to recognise it by.")
    scopes: list[ApiKeyScope]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyModel) -> ApiKey:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.display_prefix,
            scopes=[ApiKeyScope(scope) for scope in key.scopes],
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


@strawberry.input
class ApiKeyCreateInput:
    name: str
    scopes: list[ApiKeyScope]
    expires_at: datetime | None = None


@strawberry.type
class ApiKeyCreatePayload:
    api_key: ApiKey
    secret: str = strawberry.field(
        description="The whole key (cp_live_...), shown this once; only its hash is kept."
    )


@strawberry.type
class ApiKeyPayload:
    api_key: ApiKey
