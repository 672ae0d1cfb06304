"""Resolvers for partner API keys (admins and owners, signed in)."""

from __future__ import annotations

import uuid

from app.partners import keys
from app.schema.context import Info
from app.schema.partners import ApiKey, ApiKeyCreateInput, ApiKeyCreatePayload, ApiKeyPayload


async def api_keys(info: Info) -> list[ApiKey]:
    return [ApiKey.of(key) for key in await info.context.run(keys.list_api_keys)]


async def create_api_key(info: Info, input: ApiKeyCreateInput) -> ApiKeyCreatePayload:
    record, secret = await info.context.run(
        keys.create_api_key, input.name, list(input.scopes), input.expires_at
    )
    return ApiKeyCreatePayload(api_key=ApiKey.of(record), secret=secret)


async def revoke_api_key(info: Info, id: uuid.UUID) -> ApiKeyPayload:
    return ApiKeyPayload(api_key=ApiKey.of(await info.context.run(keys.revoke_api_key, id)))
