"""Resolver for the signed-in caller (public: anonymous callers get null)."""

from __future__ import annotations

from app.auth import service
from app.schema.context import Info
from app.schema.firms import Firm
from app.schema.viewer import User, Viewer


async def viewer(info: Info) -> Viewer | None:
    context = info.context
    if context.identity is None:
        return None
    user, firm = await context.run_signed_in(service.get_viewer)
    verified = user.email_verified_at is not None
    return Viewer(
        user=User(id=user.id, email=user.email, email_verified=verified),
        role=context.identity.role,
        firm_record=Firm.from_model(firm) if verified else None,
    )
