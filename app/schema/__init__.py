"""The Strawberry schema: root types and the extensions every document passes through."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from app.resolvers import firms, viewer
from app.schema.access import PUBLIC, AccessGate
from app.schema.firms import Firm, FirmUpdatePayload
from app.schema.limits import SelectionLimits
from app.schema.viewer import Viewer

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000


@strawberry.type
class Query:
    viewer: Viewer | None = strawberry.field(
        resolver=viewer.viewer,
        metadata=PUBLIC,
        description="The signed-in user, their role and active firm; null when signed out.",
    )
    firm: Firm = strawberry.field(resolver=firms.firm, description="The active firm.")


@strawberry.type
class Mutation:
    update_firm: FirmUpdatePayload = strawberry.mutation(
        resolver=firms.update_firm, description="Change the firm's details (owners and admins)."
    )


def build_schema(*, production: bool) -> strawberry.Schema:
    """The schema; production also hides introspection and "did you mean" suggestions."""
    # Factories, so each request gets fresh extension instances; the caches are shared by size.
    extensions: list[Any] = [
        AccessGate,
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules([SelectionLimits]),
    ]
    if production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=production),
    )
