"""The floors the stack cannot beat, served the same way as the app (uvicorn, one worker):

- ``starlette_app``: Starlette + asyncpg doing the same RLS transaction (set_config, then the
  same select) with no GraphQL and no authentication;
- ``strawberry_app``: a minimal Strawberry schema over asyncpg, no authentication, answering the
  same ``declarations(first: 50)`` query.

The firm comes from an ``x-firm-id`` header. Both read COVERPROOF_BENCH_DATABASE_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

SELECT = (
    "select id, recipient_name, recipient_email, status, created_at from declarations "
    "order by created_at desc, id desc limit $1"
)
SET = "select set_config('app.firm_id', $1, true)"


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
