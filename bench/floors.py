"""The floors the stack cannot beat, served the same way as the app (uvicorn, one worker):

- ``starlette_app``: Starlette + asyncpg doing the same RLS transaction (set_config, then the
  same select) with no GraphQL and no authentication;
- ``strawberry_app``: a minimal Strawberry schema over asyncpg, no authentication, answering the
  same ``declarations(first: 50)`` query;
- ``starlette_write_app``: Starlette + asyncpg doing createDeclaration's insert and chained
  audit append (``write``, which the in-process floor also runs), no GraphQL, no authentication.

The firm comes from an ``x-firm-id`` header. Both read COVERPROOF_BENCH_DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from app.audit import canonical, chain
from app.declarations.templates import snapshot
from bench.seed import FIT

SELECT = (
    "select id, recipient_name, recipient_email, status, created_at from declarations "
    "order by created_at desc, id desc limit $1"
)
SET = "select set_config('app.firm_id', $1, true)"
SET_ACTOR = "select set_config('app.firm_id', $1, true), set_config('app.actor_id', $2, true)"
SNAPSHOT = json.dumps(snapshot(FIT.spec, template_id=FIT.id, version=FIT.version, key=FIT.key))
# The draft with its form, which the firm already has (0036), in one statement, as the app.
INSERT = (
    "with form as (insert into declaration_forms (firm_id, snapshot) values ($2, $4::jsonb) "
    "on conflict (firm_id, sha256) do nothing) "
    "insert into declarations (id, firm_id, template_id, template_version, form_key, "
    "recipient_name, recipient_email, status, created_at, reminder_count) "
    "values ($1, $2, $3, 1, declaration_form_key($4::jsonb), 'Load Test', 'load@example.test', "
    "'draft', now(), 0)"
)
HEAD = "select seq, hash from audit_locked_head($1, $2)"  # the lock, then the head, as the app
APPEND = (
    "insert into audit_log (id, firm_id, seq, occurred_at, actor_type, actor_id, action, "
    "target_type, target_id, details, ip, prev_hash, hash, canonical) "
    "values ($1, $2, $3, $4, 'user', $5, 'declaration.created', 'declaration', $6, $7::jsonb, "
    "null, $8, $9, $10)"
)


def _url() -> str:
    return os.environ["COVERPROOF_BENCH_DATABASE_URL"]


@asynccontextmanager
async def _pool(app: Any) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(_url(), min_size=8, max_size=32)
    yield
    await app.state.pool.close()


async def page(pool: asyncpg.Pool, firm: str, first: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SET, firm)
        return await conn.fetch(SELECT, first)


async def _declarations(request: Request) -> Response:
    rows = await page(request.app.state.pool, request.headers["x-firm-id"], 50)
    nodes = [
        {
            "id": str(r["id"]),
            "recipientName": r["recipient_name"],
            "recipientEmail": r["recipient_email"],
            "status": r["status"].upper(),
            "createdAt": r["created_at"].isoformat(),
        }
        for r in rows
    ]
    body = {"data": {"declarations": {"edges": [{"node": n} for n in nodes]}}}
    return Response(orjson.dumps(body), media_type="application/json")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/graphql", _declarations, methods=["POST"])], lifespan=_pool)


async def write(pool: asyncpg.Pool, firm: str) -> uuid.UUID:
    """The insert and chained append createDeclaration does, with nothing else: the tenant set,
    the row with its form, the firm's chain lock and its head (one call), the next entry hashed
    and appended."""
    firm_id, actor, declaration = uuid.UUID(firm), str(uuid.uuid4()), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SET_ACTOR, firm, actor)
        await conn.execute(INSERT, declaration, firm_id, FIT.id, SNAPSHOT)
        head = await conn.fetchrow(HEAD, firm_id, chain._lock_key(firm_id))
        seq, prev = (head["seq"] + 1, head["hash"]) if head else (1, canonical.GENESIS)
        details = {"template_id": str(FIT.id), "version": 1}
        at = datetime.now(UTC)
        body = canonical.encode(
            canonical.entry_body(
                firm_id=firm,
                seq=seq,
                occurred_at=at,
                actor_type="user",
                actor_id=actor,
                action="declaration.created",
                target_type="declaration",
                target_id=str(declaration),
                details=details,
                ip=None,
            )
        )
        await conn.execute(
            APPEND,
            uuid.uuid4(),
            firm_id,
            seq,
            at,
            actor,
            str(declaration),
            json.dumps(details),
            prev,
            canonical.chain_hash(prev, body),
            body,
        )
    return declaration


async def _create(request: Request) -> Response:
    declaration = await write(request.app.state.pool, request.headers["x-firm-id"])
    body = {"data": {"createDeclaration": {"declaration": {"id": str(declaration)}}}}
    return Response(orjson.dumps(body), media_type="application/json")


def starlette_write_app() -> Starlette:
    """The write floor over HTTP: the same chained append, one per request."""
    return Starlette(routes=[Route("/graphql", _create, methods=["POST"])], lifespan=_pool)


@strawberry.type
class Node:
    id: uuid.UUID
    recipient_name: str
    recipient_email: str
    status: str
    created_at: datetime


@strawberry.type
class Edge:
    node: Node


@strawberry.type
class Connection:
    edges: list[Edge]


@strawberry.type
class Query:
    @strawberry.field
    async def declarations(self, info: strawberry.Info, first: int = 50) -> Connection:
        request = info.context["request"]
        rows = await page(request.app.state.pool, request.headers["x-firm-id"], first)
        return Connection(
            edges=[
                Edge(
                    node=Node(
                        id=r["id"],
                        recipient_name=r["recipient_name"],
                        recipient_email=r["recipient_email"],
                        status=r["status"].upper(),
                        created_at=r["created_at"],
                    )
                )
                for r in rows
            ]
        )


def strawberry_app() -> Starlette:
    graphql = GraphQL(strawberry.Schema(query=Query))
    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=_pool)
