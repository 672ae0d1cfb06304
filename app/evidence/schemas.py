"""The evidence-pack request, validated strictly at the boundary."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.idempotency import Key
from app.visible import Unshown, shown_otherwise, shows_anything

MAX_IDS = 1000
MAX_PERIOD = timedelta(days=366 * 10)
EARLIEST = date(2000, 1, 1)
LATEST = date(2200, 12, 31)  # the day after the period is counted too, in datetimes

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Ids = Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_IDS)]
_TITLE_REFUSALS: dict[Unshown, str] = {
    "reorders": "The title may not hold characters that reorder text.",
    "control": "The title may not contain control characters.",
    "hides": "The title may not hold characters that show as nothing.",
}


class PackCreate(BaseModel):
    """What a pack covers: the period (inclusive days, UTC) and, optionally, exactly which
    declarations and counterparties."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    title: Title
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    declaration_ids: Ids | None = None
    counterparty_ids: Ids | None = None
    idempotency_key: Key | None = None

    @field_validator("title")
    @classmethod
    def _shown_as_stored(cls, value: str) -> str:
        # The title heads the regulator's copy, beside names held to this (visible.plain_name):
        # "Q1 review \u202edevorppa ton\u202c" showed there as "Q1 review not approved".
        problem = shown_otherwise(value)
        if problem is None and not shows_anything(value):
            problem = "hides"
        if problem is not None:
            raise ValueError(_TITLE_REFUSALS[problem])
        return value

    @field_validator("declaration_ids", "counterparty_ids")
    @classmethod
    def _distinct(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if value is None else list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _period(self) -> PackCreate:
        if self.start < EARLIEST:
            raise ValueError(f"The period cannot start before {EARLIEST.isoformat()}.")
        if self.end > LATEST:
            raise ValueError(f"The period cannot end after {LATEST.isoformat()}.")
        if self.end < self.start:
            raise ValueError("The period must end on or after the day it starts.")
        if self.end - self.start > MAX_PERIOD:
            raise ValueError("The period may be at most ten years.")
        return self

    def scope(self) -> dict[str, Any]:
        """The JSON stored on the pack (and in its audit entry)."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "declaration_ids": _strings(self.declaration_ids),
            "counterparty_ids": _strings(self.counterparty_ids),
        }

    @classmethod
    def from_scope(cls, title: str, scope: dict[str, Any]) -> PackCreate:
        """The request a stored pack was made from (for a retry)."""
        return cls.model_validate({"title": title, **scope})


def _strings(ids: list[uuid.UUID] | None) -> list[str] | None:
    return None if ids is None else [str(i) for i in ids]
