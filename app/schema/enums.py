"""Enums and scalars shared by several schema modules, registered with Strawberry once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NewType, cast

import strawberry
from strawberry.schema.types.base_scalars import DateTimeDefinition

from app.auth.actor import Role

# Registers the service layer's enum itself, so resolvers pass Role values straight through.
strawberry.enum(Role, description="What a member may do: viewer < member < admin < owner.")

__all__ = ["DATETIME", "LONG", "Long", "Role"]


# Money in pence can pass GraphQL's 32-bit Int (£21.47m); JSON carries integers exactly up to
# 2^53, which this scalar enforces.
MAX_SAFE = 2**53 - 1


def _safe_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SAFE:
        raise ValueError("Expected an integer of at most 2^53 - 1.")
    return value


Long = NewType("Long", int)
LONG = strawberry.scalar(
    name="Long",
    description="An integer of up to 53 bits (exact in JSON), e.g. an amount in pence.",
    serialize=_safe_int,
    parse_value=_safe_int,
)


_PARSE = cast(Callable[[object], object], DateTimeDefinition.parse_value)


# Strawberry's own DateTime (whose parser this one calls first) takes a moment without an offset,
# which no comparison with our aware times survives, and one PostgreSQL cannot turn into UTC
# (year 9999 at -05:00): ours asks for the offset and converts to UTC here.
def _moment(value: object) -> datetime:
    moment = _PARSE(value)  # Strawberry's own refusal of what is no date and time
    expected = "Expected a date and time with its offset, as 2030-01-31T09:00:00+00:00."
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(expected)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("Expected a moment that is within years 1 to 9999 in UTC.") from error


DATETIME = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat)",
    serialize=datetime.isoformat,
    parse_value=_moment,
)
