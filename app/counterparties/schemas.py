"""Validated inputs for counterparty services; bounds match the table's CHECK constraints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from app.auth.schemas import Email
from app.firms.schemas import Frn
from app.idempotency import Key
from app.visible import plain_name


class CounterpartyKind(StrEnum):
    """The values are the ones the ``counterparties.kind`` CHECK accepts."""

    APPOINTED_REPRESENTATIVE = "appointed_representative"
    INTRODUCER = "introducer"
    INSURER = "insurer"
    OUTSOURCED_SERVICE_PROVIDER = "outsourced_service_provider"
    OTHER = "other"


def _blank_is_none(value: object) -> object:
    # A form that empties an optional box sends "": store that as "not given", not as "".
    if isinstance(value, str) and not value.strip():
        return None
    return value


# Shown as stored: in every member's list, and in the evidence packs given to the regulator.
CounterpartyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(plain_name),
]
ContactName = Annotated[
    Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(plain_name)
    ]
    | None,
    BeforeValidator(_blank_is_none),
]
ContactEmail = Annotated[Email | None, BeforeValidator(_blank_is_none)]
Notes = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] | None,
    BeforeValidator(_blank_is_none),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold NUL: refuse it as bad input rather than fail in the DB.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class CounterpartyCreate(_Input):
    name: CounterpartyName
    kind: CounterpartyKind
    frn: Frn | None = None
    contact_name: ContactName = None
    contact_email: ContactEmail = None
    notes: Notes = None
    idempotency_key: Key | None = None


class CounterpartyUpdate(_Input):
    """Only the fields the caller sent are changed (``model_fields_set``); an explicit null
    clears an optional field. Name and kind cannot be cleared, so null is refused for them."""

    name: CounterpartyName = Field(default=None)  # type: ignore[assignment]
    kind: CounterpartyKind = Field(default=None)  # type: ignore[assignment]
    frn: Frn | None = None
    contact_name: ContactName = None
    contact_email: ContactEmail = None
    notes: Notes = None
