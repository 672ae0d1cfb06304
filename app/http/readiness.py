"""Readiness: whether the database answers, asked at most once a second."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import calls

log = logging.getLogger("coverproof.http")

# How long the database's answer to a readiness probe stands for the probes after it.
READY_FOR_SECONDS = 1.0


@dataclass
class Readiness:
    """The database's last answer to a readiness probe, standing for a second. Probes pass the
    per-address limits (app/ratelimit/middleware.py), and each took a connection of the pool:
    a flood of them took the pool from every firm's requests. One check runs at a time; the
    probes that wait for it hold no connection, and get its answer."""

    checked_at: float = -math.inf
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def check(self, engine: AsyncEngine) -> bool:
        async with self.lock:
            if time.monotonic() - self.checked_at >= READY_FOR_SECONDS:
                try:
                    async with engine.connect() as conn:
                        await calls.ping(conn)
                    self.ready = True
                except Exception as error:
                    log.warning("not ready: %s", type(error).__name__)
                    self.ready = False
                self.checked_at = time.monotonic()
            return self.ready
