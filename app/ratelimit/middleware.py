"""Pure-ASGI per-IP ceiling on HTTP requests, in front of everything that parses a body.

This is the coarse flood guard; the precise limits (sign-in, mail sends, mutations) count
operations inside GraphQL, where one request can carry many of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from limits.errors import StorageError

from app.errors import RateLimited
from app.ratelimit.asgi import ASGIApp, Receive, Scope, Send
from app.ratelimit.client_ip import client_ip, ip_bucket
from app.ratelimit.limiter import RateLimiter
from app.ratelimit.policies import Policy

log = logging.getLogger("coverproof.ratelimit")

# Probes come from the orchestrator, often through the same proxy address as everyone else;
# limiting them would turn a busy minute into a restart.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})


class IpCeiling:
    """Answers 429 with Retry-After once a client IP has sent ``per_minute`` requests in the
    last minute; requests with no known client IP, and probe paths, pass uncounted."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: Callable[[], RateLimiter | None],
        per_minute: int,
        trusted_proxies: Sequence[str],
    ) -> None:
        if per_minute < 1:
            raise ValueError("COVERPROOF_IP_REQUESTS_PER_MINUTE must be at least 1.")
        self.app = app
        # Fetched per request: the limiter is opened in the lifespan, after middleware is built.
        self.limiter = limiter
        self.policy = Policy("ip_requests", f"{per_minute}/minute")
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter()
        ip = client_ip(scope, self.trusted_proxies)
        if limiter is not None and ip is not None:
            try:
                await limiter.hit(self.policy, ip_bucket(ip))
            except RateLimited as error:
                await self._refuse(send, int(error.extensions["retryAfter"]))
                return
            except StorageError:
                # Fail open: this ceiling is a flood guard, and an unreachable Redis should not
                # take the whole API down with it. The GraphQL-level limits still fail closed.
                log.exception("rate-limit storage unavailable; request let through")
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, retry_after: int) -> None:
        body = {
            "errors": [
                {
                    "message": "Too many requests.",
                    "extensions": {"code": RateLimited.code, "retryAfter": retry_after},
                }
            ]
        }
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
