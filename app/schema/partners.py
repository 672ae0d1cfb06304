"""GraphQL types for partner API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from app.db.models import ApiKey as ApiKeyModel
from app.partners.keys import Scope
from app.schema.pagination import PageInfo

# The service's own enum, registered once, so resolvers pass scopes straight through.
strawberry.enum(Scope, name="ApiKeyScope")


@strawberry.type
class ApiKey:
    id: uuid.UUID
    name: str
    prefix: str = strawberry.field(description="The key's public start, to recognise it by.")
    scopes: list[Scope]
    created_at: datetime
    created_by: uuid.UUID | None = strawberry.field(
        description="The member who created the key (a user id, as on Member)."
    )
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyModel) -> ApiKey:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.display_prefix,
            scopes=[Scope(scope) for scope in key.scopes],
            created_at=key.created_at,
            created_by=key.created_by,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


@strawberry.type
class ApiKeyEdge:
    cursor: str
    node: ApiKey


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: PageInfo


@strawberry.input
class ApiKeyCreateInput:
    name: str
    scopes: list[Scope]
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
