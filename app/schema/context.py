"""The typed per-request context every resolver reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info as StrawberryInfo

from app.auth.actor import Actor, ActorType
from app.auth.sessions import SessionIdentity
from app.config import Settings
from app.errors import EmailNotVerified, Unauthenticated

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Context:
    """One request: its tenant-bound transaction, who is calling, and a lock that serialises
    use of the session (Strawberry resolves sibling fields concurrently)."""

    request_id: str
    session: AsyncSession
    settings: Settings
    ip: str | None
    identity: SessionIdentity | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def actor(self) -> Actor:
        """The signed-in, verified caller; raises for anyone else."""
        if self.identity is None:
            raise Unauthenticated()
        if not self.identity.email_verified:
            raise EmailNotVerified()
        return Actor(
            type=ActorType.USER,
            id=self.identity.user_id,
            firm_id=self.identity.firm_id,
            role=self.identity.role,
            ip=self.ip,
            session_id=self.identity.session_id,
        )

    async def run(
        self,
        service: Callable[Concatenate[AsyncSession, Actor, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call one service with the request's session and actor, one call at a time."""
        actor = self.actor
        async with self.lock:
            return await service(self.session, actor, *args, **kwargs)


Info = StrawberryInfo[Context, None]
