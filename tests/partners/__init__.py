"""Partner systems: firm API keys, scopes, and persisted (trusted and automatic) documents.

Helpers shared by this folder's tests. Trusted documents are loaded the way an operator loads
them (``coverproof persisted-queries load FILE``); the allow-list is shared by the whole test
database, so every test makes its own document texts (``tagged``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

import app.cli
from app.declarations.templates import load_builtins
from tests.browser import loopback_ip, new_email
from tests.conftest import Database
from tests.factories import Member

FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
CREATE_KEY = """mutation($i: ApiKeyCreateInput!) {
  createApiKey(input: $i) { secret apiKey { id prefix scopes expiresAt } } }"""
REVOKE_KEY = "mutation($id: UUID!) { revokeApiKey(id: $id) { apiKey { id revokedAt } } }"
LIST_KEYS = """{ apiKeys { edges { node {
  id name prefix scopes createdAt lastUsedAt expiresAt revokedAt } } } }"""


def listed_keys(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys of a page of ``apiKeys``."""
    return [edge["node"] for edge in body["data"]["apiKeys"]["edges"]]


def doc_id(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def tagged(template: str) -> str:
    """A document text unique to this call: ``{tag}`` becomes a fresh operation-name suffix."""
    return template.replace("{tag}", secrets.token_hex(4))


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def session_client(application: Starlette, member: Member | None = None) -> httpx.AsyncClient:
    """A first-party client (its own loopback address), signed in as ``member`` if given."""
    transport = httpx.ASGITransport(app=application, client=(loopback_ip(), 50000))
    headers = member.headers if member else {}
    return httpx.AsyncClient(transport=transport, base_url="https://testserver", headers=headers)


def partner_client(application: Starlette, key: str) -> httpx.AsyncClient:
    """A partner system: nothing but its API key in the Authorization header (from a loopback
    address of its own, so the per-IP ceiling of one test never touches another)."""
    transport = httpx.ASGITransport(app=application, client=(loopback_ip(), 5000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="https://testserver",
        headers={"authorization": f"Bearer {key}"},
    )


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    return body


async def run_persisted(
    client: httpx.AsyncClient,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    form: str = "documentId",
) -> httpx.Response:
    """Run a document by id only: GraphQL-over-HTTP's ``documentId``, Apollo's extension, or GET."""
    digest = doc_id(document)
    if form == "documentId":
        payload: dict[str, Any] = {"documentId": f"sha256:{digest}", "variables": variables}
        return await client.post("/graphql", json=payload)
    if form == "apollo":
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        return await client.post(
            "/graphql", json={"extensions": extensions, "variables": variables}
        )
    assert form == "get", form
    params = {"documentId": f"sha256:{digest}", "variables": json.dumps(variables or {})}
    return await client.get("/graphql", params=params)


async def persisted(
    client: httpx.AsyncClient,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    form: str = "documentId",
) -> dict[str, Any]:
    body: dict[str, Any] = (await run_persisted(client, document, variables, form=form)).json()
    return body


async def load_trusted(
    monkeypatch: pytest.MonkeyPatch, database: Database, tmp_path: Path, *documents: str
) -> None:
    """Load documents with the operator's CLI, as an Apollo manifest."""
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": doc_id(body), "name": f"Op{i}", "type": kind(body), "body": body}
            for i, body in enumerate(documents)
        ],
    }
    path = tmp_path / f"manifest-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(manifest))
    assert await run_cli(monkeypatch, database, "persisted-queries", "load", str(path)) == 0


async def trust(superuser: AsyncEngine, documents: list[str]) -> None:
    """Make documents trusted directly in the table (what the operator's CLI loads)."""
    async with superuser.begin() as conn:
        for body in documents:
            await conn.execute(
                text(
                    "insert into trusted_documents (id, body) values (:id, :body) "
                    "on conflict do nothing"
                ),
                {"id": doc_id(body), "body": body},
            )


async def run_cli(monkeypatch: pytest.MonkeyPatch, database: Database, *argv: str) -> int:
    monkeypatch.setenv("COVERPROOF_ADMIN_DATABASE_URL", database.owner_url)
    monkeypatch.setenv("COVERPROOF_DATABASE_URL", database.app_url)
    return await asyncio.to_thread(app.cli.main, list(argv))


def kind(body: str) -> str:
    return "mutation" if body.lstrip().startswith("mutation") else "query"


async def create_key(client: httpx.AsyncClient, scopes: list[str], **extra: Any) -> tuple[str, str]:
    """A new key through GraphQL, as the signed-in client; returns (secret, id)."""
    body = await gql(client, CREATE_KEY, {"i": {"name": "HR system", "scopes": scopes, **extra}})
    assert "errors" not in body, body
    created = body["data"]["createApiKey"]
    return created["secret"], created["apiKey"]["id"]


async def key_headers(
    application: Starlette, owner: Member, scopes: list[str]
) -> tuple[dict[str, str], str]:
    """A new key of the owner's firm with these scopes: its Authorization header, and its id."""
    async with session_client(application, owner) as first_party:
        secret, key_id = await create_key(first_party, scopes)
    return {"authorization": f"Bearer {secret}"}, key_id


def declaration_input(email: str | None = None) -> dict[str, Any]:
    return {
        "templateId": str(FIT.id),
        "recipientName": "Pat Doe",
        "recipientEmail": email or new_email(),
    }


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    """Read as the superuser (no RLS), to see what really was written."""
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def count(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())
