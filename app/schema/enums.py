"""Enums and scalars shared by several schema modules, registered with Strawberry once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry

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


# Strawberry's own DateTime takes a moment without an offset (which no comparison with our
# aware times survives) and any year Python can hold (which PostgreSQL's conversion to UTC may
# not): ours asks for the offset and a year a record of ours could bear.
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200


def _moment(value: object) -> datetime:
    expected = "Expected a date and time with its offset, as 2030-01-31T09:00:00+00:00."
    try:
        moment = datetime.fromisoformat(value)  # type: ignore[arg-type]
        if moment.tzinfo is None:
            raise ValueError(expected)
        moment = moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(expected) from error
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"Expected a moment from {EARLIEST_YEAR} to {LATEST_YEAR}.")
    return moment


DATETIME = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat)",
    serialize=datetime.isoformat,
    parse_value=_moment,
)
