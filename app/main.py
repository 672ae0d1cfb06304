"""The ASGI application factory. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from app.config import ConfigError, Settings
from app.db.engine import create_engine, session_factory
from app.db.safety import check_runtime_role
from app.http.graphql import graphql_endpoint
from app.http.middleware import BodySizeLimit, RequestId, SecurityHeaders
from app.http.routes import healthz, readyz, security_txt
from app.http.state import AppState
from app.schema import build_schema


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; the lifespan connects, checks the database role, and disposes."""
    settings = settings or Settings()
    settings.check_production()
    if settings.database_url is None:
        raise ConfigError(
            ["COVERPROOF_DATABASE_URL is not set; `coverproof serve` starts an embedded database."]
        )
    database_url = settings.database_url.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(database_url, pool_size=settings.db_pool_size)
        try:
            await check_runtime_role(engine)
            app.state.coverproof = AppState(
                settings=settings,
                engine=engine,
                sessions=session_factory(engine),
                schema=build_schema(production=settings.is_production),
            )
            yield
        finally:
            await engine.dispose()

    return Starlette(
        routes=[
            Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/.well-known/security.txt", security_txt),
        ],
        middleware=[
            Middleware(RequestId),
            Middleware(SecurityHeaders),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_credentials=True,
                allow_methods=["POST"],
                allow_headers=["content-type", "accept"],
                max_age=600,
            ),
        ],
        lifespan=lifespan,
    )
