"""Root fields for managing partner API keys (never usable with an API key itself)."""

from __future__ import annotations

import strawberry

from app.resolvers import partners as r
from app.schema.partners import ApiKeyConnection, ApiKeyCreatePayload, ApiKeyPayload


@strawberry.type
class PartnerQuery:
    api_keys: ApiKeyConnection = strawberry.field(
        resolver=r.api_keys,
        description="The firm's API keys, revoked ones too, newest first; `first` is at most "
        "100 (admins).",
    )


@strawberry.type
class PartnerMutation:
    create_api_key: ApiKeyCreatePayload = strawberry.mutation(
        resolver=r.create_api_key,
        description="A key for a partner system; the secret shows once (admins).",
    )
    revoke_api_key: ApiKeyPayload = strawberry.mutation(
        resolver=r.revoke_api_key, description="Kill a key at once (admins)."
    )
