"""Who is acting: the value every service receives alongside the tenant session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from app.errors import Forbidden


class Role(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class ActorType(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    RECIPIENT = "recipient"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """An authenticated caller bound to exactly one firm."""

    type: ActorType
    id: uuid.UUID
    firm_id: uuid.UUID
    role: Role
    ip: str | None = None
    session_id: uuid.UUID | None = None

    def require(self, role: Role) -> None:
        """Raise Forbidden unless the actor holds ``role`` or a higher one."""
        if self.role.rank < role.rank:
            raise Forbidden()
