"""Resolvers for partner API keys (admins and owners, signed in)."""

from __future__ import annotations

import uuid

from app.partners import keys
from app.schema.context import Info
from app.schema.pagination import PageInfo
from app.schema.partners import (
    ApiKey,
    ApiKeyConnection,
    ApiKeyCreateInput,
    ApiKeyCreatePayload,
    ApiKeyEdge,
    ApiKeyPayload,
)


async def api_keys(info: Info, first: int = 50, after: str | None = None) -> ApiKeyConnection:
    rows, more = await info.context.run(keys.list_api_keys, first, after)
    edges = [ApiKeyEdge(cursor=keys.encode_cursor(k), node=ApiKey.of(k)) for k in rows]
    end = edges[-1].cursor if edges else None
    return ApiKeyConnection(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))


async def create_api_key(info: Info, input: ApiKeyCreateInput) -> ApiKeyCreatePayload:
    record, secret = await info.context.run(
        keys.create_api_key, input.name, list(input.scopes), input.expires_at
    )
    return ApiKeyCreatePayload(api_key=ApiKey.of(record), secret=secret)


async def revoke_api_key(info: Info, id: uuid.UUID) -> ApiKeyPayload:
    return ApiKeyPayload(api_key=ApiKey.of(await info.context.run(keys.revoke_api_key, id)))
