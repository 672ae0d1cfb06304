"""The Strawberry schema: root types and the extensions every document passes through."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from app.schema.access import AccessGate
from app.schema.audit_root import AuditMutation, AuditQuery
from app.schema.core import CoreMutation, CoreQuery
from app.schema.counterparties_root import CounterpartyMutation, CounterpartyQuery
from app.schema.declarations_root import DeclarationMutation, DeclarationQuery
from app.schema.enums import DATETIME, LONG, Long
from app.schema.evidence_root import EvidenceMutation, EvidenceQuery
from app.schema.limits import (
    ALIAS_LIMIT,
    MAX_ALIASES,
    MAX_DEPTH,
    CredentialsAlone,
    DepthLimit,
    ListsOnce,
    SelectionLimits,
)
from app.schema.partners_root import PartnerMutation, PartnerQuery

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_TOKENS", "build_schema"]

MAX_TOKENS = 2_000


# Each domain contributes its root fields as a base class (one line here per domain).
@strawberry.type
class Query(
    EvidenceQuery, PartnerQuery, AuditQuery, CounterpartyQuery, DeclarationQuery, CoreQuery
):
    pass


@strawberry.type
class Mutation(
    EvidenceMutation,
    PartnerMutation,
    AuditMutation,
    CounterpartyMutation,
    DeclarationMutation,
    CoreMutation,
):
    pass


class Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Not logged here: app.errors logs the unexpected ones, with the request id; the rest
        are the client's mistakes (and may echo its input)."""


def build_schema(*, production: bool) -> strawberry.Schema:
    """The schema; production also hides introspection and "did you mean" suggestions."""
    # Factories, so each request gets fresh extension instances; the caches are shared by size.
    extensions: list[Any] = [
        AccessGate,
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules(
            [DepthLimit, SelectionLimits, CredentialsAlone, ListsOnce, ALIAS_LIMIT]
        ),
    ]
    if production:
        extensions.append(DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(
            disable_field_suggestions=production, scalar_map={Long: LONG, datetime: DATETIME}
        ),
    )
