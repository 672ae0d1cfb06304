"""Resolver for the signed-in caller (public: anonymous callers get null)."""

from __future__ import annotations

from app.auth import service
from app.schema.context import Info
from app.schema.firms import Firm
from app.schema.viewer import User, Viewer


async def viewer(info: Info) -> Viewer | None:
    if info.context.identity is None or not info.context.identity.email_verified:
        return None
    user, firm = await info.context.run(service.get_viewer)
    return Viewer(
        user=User(id=user.id, email=user.email, email_verified=user.email_verified_at is not None),
        role=info.context.actor.role,
        firm=Firm.from_model(firm),
    )
