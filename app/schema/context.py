"""The typed per-request context every resolver reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from app.audit.signing import SigningKey
from app.auth.actor import Actor, ActorType
from app.auth.env import AuthEnv
from app.auth.sessions import SessionIdentity
from app.config import Settings
from app.db.tenant import bind_tenant
from app.errors import EmailNotVerified, Unauthenticated
from app.evidence.storage import Storage
from app.partners.keys import ApiKeyIdentity
from app.ratelimit.request import RequestLimiter

P = ParamSpec("P")
T = TypeVar("T")


def actor_of(identity: SessionIdentity | ApiKeyIdentity, ip: str | None) -> Actor:
    """Who acts, for a session or a partner's key (the fast path's lanes build it here too)."""
    partner = isinstance(identity, ApiKeyIdentity)
    return Actor(
        type=ActorType.API_KEY if partner else ActorType.USER,
        id=identity.user_id,
        firm_id=identity.firm_id,
        role=identity.role,
        ip=ip,
        session_id=identity.session_id,
    )


@dataclass
class Context:
    """One request: its transaction, who is calling, and a lock that serialises use of the
    session (Strawberry resolves sibling fields concurrently).

    A signed-in caller's tenant is bound on the first private service call; until then the
    transaction sees no firm's rows. Public flows (sign-in, token holders) bind the tenant they
    resolve themselves, once.
    """

    request_id: str
    session: AsyncSession
    settings: Settings
    secret_key: str
    mail_key: bytes
    # The request's counts: a run again (a deadlock's, or after a lane) does not count twice.
    limiter: RequestLimiter
    signing_key: SigningKey
    ip: str | None
    user_agent: str | None
    identity: SessionIdentity | ApiKeyIdentity | None
    # The HTTP method: a GET must change nothing, so a query that records something refuses it.
    method: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    persisted: bool = False
    new_session_cookie: str | None = None
    mail_queued: bool = False
    clear_session_cookie: bool = False
    # Work for after the commit, each in a transaction of its own (it binds its own tenant).
    after_commit: list[Callable[[AsyncSession], Awaitable[None]]] = field(default_factory=list)
    # The root fields that read the firm's whole chain this request has run (once each).
    whole_chain_reads: set[str] = field(default_factory=set)
    # Per-request DataLoaders by name, so a page's fields share one batch (and its cache).
    loaders: dict[str, Any] = field(default_factory=dict)
    # Where evidence-pack PDFs are stored (and the app-wide render slots).
    storage: Storage | None = None
    # New transactions of the app's, for work that needs its own (a pack's snapshot).
    sessions: async_sessionmaker[AsyncSession] | None = None
    started: float = field(default_factory=time.monotonic)
    # The moment (time.monotonic) before which the answer is not sent (``answer_no_sooner``).
    answer_not_before: float | None = None

    def answer_no_sooner(self, seconds: float) -> None:
        """Hold the answer until ``seconds`` after the request began (the HTTP layer waits,
        after the commit): a public flow whose work differs with what it must not reveal, such
        as whether an address is registered, then answers after the same time either way."""
        self.answer_not_before = self.started + seconds

    @property
    def actor(self) -> Actor:
        """The signed-in, verified caller; raises for anyone else."""
        actor = self.signed_in_actor
        if self.identity is not None and not self.identity.email_verified:
            raise EmailNotVerified()
        return actor

    @property
    def signed_in_actor(self) -> Actor:
        """The signed-in caller, verified or not (for signing out and seeing who you are)."""
        if self.identity is None:
            raise Unauthenticated()
        return actor_of(self.identity, self.ip)

    @property
    def auth_env(self) -> AuthEnv:
        return AuthEnv(
            self.settings,
            self.secret_key,
            self.mail_key,
            self.limiter,
            self.ip,
            self.user_agent,
            self._mail_queued,
        )

    def _mail_queued(self) -> None:
        self.mail_queued = True

    async def run(
        self,
        service: Callable[Concatenate[AsyncSession, Actor, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call one service with the request's session and actor, one call at a time."""
        return await self._call(self.actor, service, *args, **kwargs)

    async def run_signed_in(
        self,
        service: Callable[Concatenate[AsyncSession, Actor, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like ``run``, for the few services an unverified user may call."""
        return await self._call(self.signed_in_actor, service, *args, **kwargs)

    async def _call(
        self,
        actor: Actor,
        service: Callable[Concatenate[AsyncSession, Actor, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with self.lock:
            await bind_tenant(self.session, actor.firm_id, actor.id)
            return await service(self.session, actor, *args, **kwargs)

    async def run_public(
        self,
        service: Callable[Concatenate[AsyncSession, AuthEnv, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call a public flow with the request's (not yet bound) session."""
        async with self.lock:
            return await service(self.session, self.auth_env, *args, **kwargs)


Info = StrawberryInfo[Context, None]
