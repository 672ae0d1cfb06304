"""The ASGI application factory. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from limits.errors import ConfigurationError
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from app.audit import checkpoints, signing, witness
from app.config import ConfigError, Settings, read_settings
from app.db.engine import create_engine, create_lane_pool, session_factory
from app.db.safety import check_runtime_role
from app.evidence import sweep
from app.evidence.signature import pack_signer
from app.evidence.stores import open_storage
from app.http.evidence import ROUTES as EVIDENCE_ROUTES
from app.http.graphql import graphql_endpoint
from app.http.middleware import BodySizeLimit, RefuseUpgrade, SecurityHeaders
from app.http.pages import PAGES
from app.http.respond import ROUTES as RESPOND_ROUTES
from app.http.routes import (
    audit_key,
    audit_key_jwk,
    audit_keys,
    healthz,
    pack_certificate,
    readyz,
    security_txt,
)
from app.http.state import AppState
from app.mail.sealing import mail_key
from app.mail.sender import MailSender
from app.mail.transport import transport_for
from app.ratelimit.limiter import RateLimiter, open_limiter
from app.ratelimit.middleware import IpCeiling
from app.schema import build_schema
from app.schema.fastpath import FastPathState

log = logging.getLogger("coverproof")


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app and what it serves with, connecting to nothing, so that a setting any of
    it refuses raises ConfigError here; the lifespan connects, checks the database role,
    starts the mail sender and the rate-limit storage, and undoes all of it on shutdown."""
    settings = settings or read_settings()
    settings.check_production()
    if settings.database_url is None:
        raise ConfigError(
            ["COVERPROOF_DATABASE_URL is not set; `coverproof serve` starts an embedded database."]
        )
    database_url = settings.database_url.get_secret_value()
    secret_key = settings.resolved_secret_key()
    signing_key = signing.load(settings)
    pack_signer(signing_key)  # derived now, so a key that cannot sign packs stops the start
    # So an operator can see that a revoked key is no longer among them (a mistyped id is not).
    log.info(
        "audit keys: signing with %s; trusted %s; revoked %s",
        signing_key.key_id,
        ", ".join(signing_key.trusted),
        ", ".join(sorted(signing_key.revoked)) or "none",
    )
    # Built now, connecting to nothing, for the lifespan to open: a setting they refuse stops
    # `coverproof serve` before uvicorn starts, where each worker failed on its own.
    storage = open_storage(settings)
    engine = _engine(database_url, settings.db_pool_size)
    limiter = _limiter(settings)
    seen = _witness(settings)
    transport_for(settings)  # as the mail sender's start() does
    limiter_holder: list[RateLimiter] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sessions = session_factory(engine, {witness.INFO: seen})
        mailer = MailSender(sessions, settings)
        background: list[asyncio.Task[None]] = []
        lane_pool = None
        try:
            await check_runtime_role(engine)
            if settings.fast_path:
                lane_pool = await create_lane_pool(database_url, settings.db_pool_size)
            if not await limiter.check():
                raise ConfigError(["COVERPROOF_RATE_LIMIT_STORAGE does not answer."])
            await mailer.start()
            await storage.open()
            if settings.audit_checkpoint_minutes > 0:
                background.append(
                    asyncio.create_task(
                        checkpoints.run_periodically(
                            sessions, signing_key, settings.audit_checkpoint_minutes
                        )
                    )
                )
            if settings.pack_sweep_minutes > 0:
                background.append(
                    asyncio.create_task(
                        sweep.run_periodically(sessions, storage, settings.pack_sweep_minutes)
                    )
                )
            limiter_holder.append(limiter)
            app.state.coverproof = AppState(
                settings=settings,
                engine=engine,
                sessions=sessions,
                schema=build_schema(production=settings.is_production),
                secret_key=secret_key,
                mail_key=mail_key(secret_key),
                limiter=limiter,
                mailer=mailer,
                signing_key=signing_key,
                fast_path=FastPathState(enabled=settings.fast_path),
                storage=storage,
                lane_pool=lane_pool,
                witness=seen,
            )
            # Everything built so far (schema, models, plans) lives as long as the process;
            # moved out of the collector's sight, a full collection no longer walks it, which
            # was the slowest request of each hundred.
            gc.collect()  # start-up's own garbage is not frozen with the rest
            gc.freeze()
            yield
        finally:
            gc.unfreeze()
            if lane_pool is not None:
                await lane_pool.close()
            for task in background:
                task.cancel()
            limiter_holder.clear()
            await mailer.stop()
            await storage.close()
            await limiter.close()
            await seen.close()
            await engine.dispose()

    return Starlette(
        routes=[
            Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/.well-known/security.txt", security_txt),
            Route("/.well-known/coverproof-audit-key", audit_key),
            Route("/.well-known/coverproof-audit-key.jwk", audit_key_jwk),
            Route("/.well-known/coverproof-audit-keys.pem", audit_keys),
            Route("/.well-known/coverproof-pack-certificate.pem", pack_certificate),
            *PAGES,
            *RESPOND_ROUTES,
            *EVIDENCE_ROUTES,
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(RefuseUpgrade),
            Middleware(
                IpCeiling,
                limiter=lambda: limiter_holder[0] if limiter_holder else None,
                per_minute=settings.ip_requests_per_minute,
                trusted_proxies=settings.trusted_proxies,
            ),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            # Only other origins need CORS; with none allowed, a browser's same-origin rules
            # are all there is (and SecurityHeaders sends the Vary: Origin it would).
            *(
                [
                    Middleware(
                        CORSMiddleware,
                        allow_origins=settings.allowed_origins,
                        allow_credentials=True,
                        allow_methods=["POST"],
                        allow_headers=["content-type", "accept"],
                        max_age=600,
                    )
                ]
                if settings.allowed_origins
                else []
            ),
        ],
        lifespan=lifespan,
    )


def _engine(database_url: str, pool_size: int) -> AsyncEngine:
    try:
        return create_engine(database_url, pool_size=pool_size)
    except (ValueError, ArgumentError):
        # Not the parser's message: a URL missing its "@" puts the password where a port is.
        raise ConfigError(
            [
                "COVERPROOF_DATABASE_URL cannot be read as postgresql://user:password@host:port/"
                "database, with ssl or sslmode given at most once (the URL is not printed)."
            ]
        ) from None


def _witness(settings: Settings) -> witness.Witness:
    """The audit witness, kept where the limits are (their URI read already by ``_limiter``)."""
    try:
        return witness.open_witness(settings.rate_limit_storage, settings.rate_limit_prefix)
    except Exception:  # the Redis client's own message may print the URI, password and all
        raise ConfigError(
            ["COVERPROOF_RATE_LIMIT_STORAGE cannot be read as a storage URI (it is not printed)."]
        ) from None


def _limiter(settings: Settings) -> RateLimiter:
    try:
        return open_limiter(
            settings.rate_limit_storage, settings.rate_limit_scale, settings.rate_limit_prefix
        )
    except ValueError as error:  # its message names the scheme only, never the URI
        raise ConfigError([str(error)]) from None
    # The library's, which prints the URI, password and all; or the Redis client's own, on an
    # option it cannot take (rediss://...?ssl_cert_reqs=bogus: a KeyError).
    except (ConfigurationError, KeyError, TypeError):
        raise ConfigError(
            ["COVERPROOF_RATE_LIMIT_STORAGE cannot be read as a storage URI (it is not printed)."]
        ) from None
