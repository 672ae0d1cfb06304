"""Enums shared by several schema modules, registered with Strawberry once."""

from __future__ import annotations

from typing import NewType

import strawberry

from app.auth.actor import Role

# Registers the service layer's enum itself, so resolvers pass Role values straight through.
strawberry.enum(Role, description="What a member may do: viewer < member < admin < owner.")

__all__ = ["LONG", "Long", "Role"]


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
