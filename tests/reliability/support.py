"""Sizes and helpers shared by the reliability tests.

Every test here runs in ``make test`` at its small size and at its large size in ``make soak``
(``COVERPROOF_SOAK=1``). Sizes are chosen by ``sized(small, soak)``; every loop is bounded by a
count and every wait by a deadline, so a test that stops making progress fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.declarations.templates import load_builtins
from tests.conftest import started

SOAK = os.environ.get("COVERPROOF_SOAK") == "1"
REDIS_URL = os.environ.get("COVERPROOF_TEST_REDIS_URL", "redis://127.0.0.1:6379")
FIT_AND_PROPER = next(b for b in load_builtins() if b.key == "fit_and_proper")
# Every limit of an in-process app is multiplied by this where a test's point is not the
# limits: thousands of requests from one member would otherwise trip the per-user limit.
UNLIMITED = 100_000
JSON_TYPES = ("application/json", "application/graphql-response+json")

CREATE_DECLARATION = """mutation($i: DeclarationCreateInput!) {
  createDeclaration(input: $i) { declaration { id } } }"""


def new_seed() -> int:
    """A seed for a test's random schedule; tests print or assert with it, so a failing
    schedule can be replayed."""
    return secrets.randbits(32)


def seeded(seed: int) -> random.Random:
    """A reproducible source of schedule choices (delays, kinds, firms), never of secrets."""
    return random.Random(seed)  # noqa: S311


# The app running for a block: ``async with serving(create_app(settings)) as app``.
serving = asynccontextmanager(started)


def sized(small: int, soak: int) -> int:
    """``small`` in ``make test``, ``soak`` in ``make soak``."""
    return soak if SOAK else small


def json_answer(response: httpx.Response) -> dict[str, Any]:
    """The response must be a well-formed JSON answer: a GraphQL result or a JSON error."""
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith(JSON_TYPES), (response.status_code, content_type, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    assert "data" in body or "errors" in body, body
    for error in body.get("errors") or ():
        assert isinstance(error.get("message"), str), body
        assert isinstance(error.get("extensions", {}).get("code"), str), body
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or ()]


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.test"


async def firm_tables(session: AsyncSession) -> list[str]:
    """Every table holding firm data that the session's role may read: those with a firm_id
    column, ``firms`` itself (its id is the firm) and ``users`` (seen through memberships)."""
    rows = await session.execute(
        text(
            "select c.relname from pg_class c "
            "where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') "
            "and (c.relname in ('firms', 'users') or exists (select from pg_attribute a "
            "  where a.attrelid = c.oid and a.attname = 'firm_id' and not a.attisdropped)) "
            "and has_table_privilege(c.oid, 'select') order by 1"
        )
    )
    return list(rows.scalars())


async def visible_rows(session: AsyncSession, tables: list[str]) -> dict[str, int]:
    """How many rows of each table the session can see."""
    counts = {}
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        counts[table] = (await session.execute(text(f"select count(*) from {quoted}"))).scalar_one()
    return counts


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``check`` until it holds; AssertionError naming ``what`` after ``within`` seconds.
    Returns the seconds it took."""
    started = time.monotonic()
    deadline = started + within
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {within} s")
