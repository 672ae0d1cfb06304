"""Enums shared by several schema modules, registered with Strawberry once."""

from __future__ import annotations

import strawberry

from app.auth.actor import Role

# Registers the service layer's enum itself, so resolvers pass Role values straight through.
strawberry.enum(Role, description="What a member may do: viewer < member < admin < owner.")

__all__ = ["Role"]
