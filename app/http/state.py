"""What the app holds for its lifetime, built in the lifespan and read by the routes."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.audit.signing import SigningKey
from app.audit.witness import Witness
from app.config import Settings
from app.evidence.storage import Storage
from app.http.readiness import Readiness
from app.mail.sender import MailSender
from app.partners.documents import ApqCache
from app.ratelimit.limiter import RateLimiter
from app.ratelimit.request import RequestLimiter
from app.schema.fastpath import FastPathState


@dataclass(frozen=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    schema: strawberry.Schema
    secret_key: str
    mail_key: bytes
    limiter: RateLimiter
    signing_key: SigningKey
    mailer: MailSender
    apq: ApqCache = field(default_factory=ApqCache)
    trusted: dict[str, str] = field(default_factory=dict)
    fast_path: FastPathState = field(default_factory=FastPathState)
    storage: Storage | None = None  # evidence-pack PDFs; opened in the lifespan
    lane_pool: asyncpg.Pool | None = None  # the fast path's lanes (app/http/lane.py)
    witness: Witness = field(default_factory=Witness)  # of each chain's newest entry
    readiness: Readiness = field(default_factory=Readiness)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.coverproof
    return state


# Where a request keeps its counts for every run of it.
_LIMITER = "coverproof.limiter"


def request_limiter(request: Request, state: AppState) -> RequestLimiter:
    """The request's view of the shared limiter, the same for each of its runs."""
    found: RequestLimiter | None = request.scope["state"].get(_LIMITER)
    if found is None:
        found = request.scope["state"][_LIMITER] = RequestLimiter(state.limiter)
    return found
