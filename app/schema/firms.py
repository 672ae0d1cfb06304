"""GraphQL types for firms."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from app.db.models import Firm as FirmModel


@strawberry.type
class Firm:
    id: uuid.UUID
    name: str
    frn: str | None = strawberry.field(description="FCA firm reference number (6-7 digits).")
    created_at: datetime

    @classmethod
    def from_model(cls, firm: FirmModel) -> Firm:
        return cls(id=firm.id, name=firm.name, frn=firm.frn, created_at=firm.created_at)


@strawberry.input
class FirmUpdateInput:
    name: str | None = strawberry.UNSET
    frn: str | None = strawberry.field(
        default=strawberry.UNSET, description="6-7 digits; null clears it."
    )


@strawberry.type
class FirmUpdatePayload:
    firm: Firm
