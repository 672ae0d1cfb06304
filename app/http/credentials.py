"""Who a request says it is: a session cookie, a partner's API key (``Authorization: Bearer``,
never the URL), both, or neither. Every route reads them here, so none reads them differently;
what a route answers to each case (a refusal, its status) stays the route's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.auth import sessions
from app.auth.sessions import SessionIdentity
from app.partners import keys
from app.partners.keys import ApiKeyIdentity


@dataclass(frozen=True, slots=True)
class Credentials:
    cookie: str | None
    authorization: str | None

    @property
    def anonymous(self) -> bool:
        return self.cookie is None and self.authorization is None

    @property
    def both(self) -> bool:
        return self.cookie is not None and self.authorization is not None

    @property
    def api_key(self) -> str | None:
        """The key an ``Authorization: Bearer`` header carries; None for another scheme."""
        if self.authorization is None:
            return None
        scheme, _, key = self.authorization.partition(" ")
        return key.strip() if scheme.lower() == "bearer" else None


def credentials(request: Request) -> Credentials:
    return Credentials(
        request.cookies.get(sessions.COOKIE_NAME), request.headers.get("authorization")
    )


async def identify(
    session: AsyncSession, presented: Credentials, idle: timedelta
) -> SessionIdentity | ApiKeyIdentity | None:
    """The live key an Authorization header names, when one is sent (None if it names none),
    else the live session the cookie names. Whether sending both is refused is the caller's."""
    if presented.authorization is None:
        return await sessions.lookup(session, presented.cookie, idle) if presented.cookie else None
    key = presented.api_key
    return await keys.authenticate(session, key) if key is not None else None
