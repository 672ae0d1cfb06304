"""What the app holds for its lifetime, built in the lifespan and read by the routes."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.audit.signing import SigningKey
from app.config import Settings
from app.mail.sender import MailSender
from app.ratelimit.limiter import RateLimiter


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


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.coverproof
    return state
