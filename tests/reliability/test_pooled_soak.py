"""Pooled soak: thousands of interleaved requests from four firms over two pooled connections.

Reads, successful writes (persisted creates among them, which the fast path's write lane writes
on its own pool), refused writes and documents that fail half-way (rolled back whole) are mixed
with random delays, so each pooled connection keeps passing from one firm's
transaction to another's, committed or rolled back. No answer may carry another firm's row, a
transaction that forgot to bind a tenant sees nothing on those same connections, and afterwards
every firm's audit trail holds exactly the writes its members were told succeeded, and its
declarations are exactly those it created.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.auth.actor import Role
from app.db.models import AuditEntry, Declaration, Firm
from app.db.tenant import tenant_transaction, transaction
from app.main import create_app
from app.partners.documents import document_id
from tests.conftest import Database, http_client, make_settings
from tests.factories import Member, Members
from tests.reliability.support import (
    CREATE_DECLARATION,
    FIT_AND_PROPER,
    UNLIMITED,
    error_codes,
    firm_tables,
    json_answer,
    new_seed,
    seeded,
    serving,
    sized,
    visible_rows,
)

FIRMS = 4
DECLARATIONS_PER_FIRM = 3
REQUESTS = sized(1_000, 10_000)
CONCURRENCY = 16
POOL = 2

LIST = "{ declarations(first: 50) { edges { node { id recipientEmail } } } firm { id } }"
# A persisted page: answered by the fast path's read lane, on a pool of its own (also POOL).
PAGE = "query Page { declarations(first: 50) { edges { node { id recipientEmail } } } }"
FIRM = "{ firm { id name } }"
ONE = "query($id: UUID!) { declaration(id: $id) { id recipientEmail } }"
FIRM_THEN_MISSING = "query($id: UUID!) { firm { id } declaration(id: $id) { id } }"
RENAME = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { id name } } }"
BAD_FRN = 'mutation { updateFirm(input: {frn: "bad"}) { firm { id } } }'
# A persisted create: answered by the fast path's write lane, on the same pool as the page.
DRAFT = (
    "mutation Draft($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id recipientEmail } } }"
)
DRAFT_ID = document_id(DRAFT)
RENAME_THEN_FAIL = """mutation($n: String!) {
  a: updateFirm(input: {name: $n}) { firm { id name } }
  b: updateFirm(input: {frn: "bad"}) { firm { id } } }"""
KINDS = (
    "list",
    "persisted_list",
    "firm",
    "own",
    "foreign",
    "missing",
    "rename",
    "bad_frn",
    "rename_then_fail",
    "forgot_tenant",
    "persisted_create",
)
WEIGHTS = (5, 5, 3, 2, 2, 1, 2, 1, 1, 1, 2)
PAGE_SIZE = 50
PAGE_ID = document_id(PAGE)


@dataclass
class Tenant:
    member: Member
    declarations: dict[str, str] = field(default_factory=dict)  # id -> recipient email
    drafted: dict[str, str] = field(default_factory=dict)  # persisted creates acknowledged
    renamed_to: list[str] = field(default_factory=list)  # names the API said it stored
    rolled_back: list[str] = field(default_factory=list)  # names of refused documents


async def _tenants(client: httpx.AsyncClient, members: Members) -> list[Tenant]:
    tenants = []
    for n in range(FIRMS):
        member = await members.create(Role.OWNER, name=f"Soak firm {n}")
        tenant = Tenant(member)
        for d in range(DECLARATIONS_PER_FIRM):
            email = f"soak-{member.firm_id.hex[:8]}-{d}@example.test"
            variables = {
                "i": {
                    "templateId": str(FIT_AND_PROPER.id),
                    "recipientName": f"Recipient {d}",
                    "recipientEmail": email,
                }
            }
            body = json_answer(
                await client.post(
                    "/graphql",
                    json={"query": CREATE_DECLARATION, "variables": variables},
                    headers=member.headers,
                )
            )
            assert "errors" not in body, body
            tenant.declarations[body["data"]["createDeclaration"]["declaration"]["id"]] = email
        tenants.append(tenant)
    return tenants


class Soak:
    """Sends one request of a given kind for a tenant and checks the answer at once."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient, tenants: list[Tenant]) -> None:
        self.sessions = app.state.coverproof.sessions  # the app's own two-connection pool
        self.lane_pool = app.state.coverproof.lane_pool  # the read lane's two connections
        self.client = client
        self.tenants = tenants
        self.tables: list[str] = []
        self.done: Counter[str] = Counter()

    async def post(
        self, tenant: Tenant, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=tenant.member.headers
        )
        assert response.status_code == 200, response.text
        return json_answer(response)

    async def run(self, kind: str, tenant: Tenant, rng: random.Random) -> None:
        firm_id = str(tenant.member.firm_id)
        others = [t for t in self.tenants if t is not tenant]
        if kind == "list":
            body = await self.post(tenant, LIST)
            assert "errors" not in body, body
            assert body["data"]["firm"]["id"] == firm_id
            self.own_page(tenant, [e["node"] for e in body["data"]["declarations"]["edges"]])
        elif kind == "persisted_list":
            response = await self.client.post(
                "/graphql",
                json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": PAGE_ID}}},
                headers=tenant.member.headers,
            )
            body = json_answer(response)
            assert "errors" not in body, body
            self.own_page(tenant, [e["node"] for e in body["data"]["declarations"]["edges"]])
        elif kind == "persisted_create":
            email = f"{_prefix(tenant)}lane-{uuid.uuid4().hex}@example.test"
            variables = {
                "i": {
                    "templateId": str(FIT_AND_PROPER.id),
                    "recipientName": "Drafted",
                    "recipientEmail": email,
                }
            }
            response = await self.client.post(
                "/graphql",
                json={"extensions": _apq(DRAFT_ID), "variables": variables},
                headers=tenant.member.headers,
            )
            body = json_answer(response)
            assert "errors" not in body, body
            draft = body["data"]["createDeclaration"]["declaration"]
            assert draft["recipientEmail"] == email, body
            tenant.drafted[draft["id"]] = email
        elif kind == "firm":
            body = await self.post(tenant, FIRM)
            assert "errors" not in body, body
            assert body["data"]["firm"]["id"] == firm_id
        elif kind == "own":
            declaration_id = rng.choice(sorted(tenant.declarations))
            body = await self.post(tenant, ONE, {"id": declaration_id})
            assert body == {
                "data": {
                    "declaration": {
                        "id": declaration_id,
                        "recipientEmail": tenant.declarations[declaration_id],
                    }
                }
            }
        elif kind == "foreign":
            other = rng.choice(others)
            body = await self.post(tenant, ONE, {"id": rng.choice(sorted(other.declarations))})
            assert error_codes(body) == ["NOT_FOUND"], body
            assert body["data"] is None, body
        elif kind == "missing":
            body = await self.post(tenant, FIRM_THEN_MISSING, {"id": str(uuid.uuid4())})
            assert error_codes(body) == ["NOT_FOUND"], body
            assert body["data"] is None or body["data"]["firm"]["id"] == firm_id, body
        elif kind == "rename":
            name = f"Renamed {uuid.uuid4().hex}"
            body = await self.post(tenant, RENAME, {"n": name})
            assert "errors" not in body, body
            assert body["data"]["updateFirm"]["firm"] == {"id": firm_id, "name": name}
            tenant.renamed_to.append(name)
        elif kind == "bad_frn":
            body = await self.post(tenant, BAD_FRN)
            assert error_codes(body) == ["BAD_USER_INPUT"], body
            assert body["data"] is None, body
        elif kind == "rename_then_fail":
            name = f"Never stored {uuid.uuid4().hex}"
            body = await self.post(tenant, RENAME_THEN_FAIL, {"n": name})
            assert error_codes(body) == ["BAD_USER_INPUT"], body
            # The first field ran and answered; the whole transaction was rolled back after it.
            assert body["data"] is None or body["data"]["a"]["firm"]["id"] == firm_id, body
            tenant.rolled_back.append(name)
        elif kind == "forgot_tenant":
            await self.forgot_tenant()
        self.done[kind] += 1

    @staticmethod
    def own_page(tenant: Tenant, nodes: list[dict[str, Any]]) -> None:
        """Every row is the tenant's; its first declarations are there unless drafts made since
        filled the page (newest first)."""
        assert all(n["recipientEmail"].startswith(_prefix(tenant)) for n in nodes), nodes
        first = {n["id"]: n["recipientEmail"] for n in nodes if n["id"] in tenant.declarations}
        assert all(tenant.declarations[i] == email for i, email in first.items()), nodes
        if len(nodes) < PAGE_SIZE:
            assert first == tenant.declarations, nodes

    async def forgot_tenant(self) -> None:
        """A code path that opened a transaction on the app's pool and never bound a tenant."""
        async with transaction(self.sessions) as session:
            if not self.tables:
                self.tables = await firm_tables(session)
            counts = await visible_rows(session, self.tables)
        assert counts == dict.fromkeys(self.tables, 0), counts
        async with self.lane_pool.acquire() as conn, conn.transaction():
            for table in self.tables:
                quoted = '"' + table.replace('"', '""') + '"'
                assert await conn.fetchval(f"select count(*) from {quoted}") == 0, table


def _prefix(tenant: Tenant) -> str:
    """How every recipient address of this tenant's declarations begins."""
    return f"soak-{tenant.member.firm_id.hex[:8]}-"


def _apq(document: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document}}


async def _register(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Register PAGE and DRAFT as automatic persisted queries, as Apollo Client does on first
    use (the draft this makes is the tenant's too)."""
    response = await client.post(
        "/graphql",
        json={"query": PAGE, "extensions": _apq(PAGE_ID)},
        headers=tenant.member.headers,
    )
    assert "errors" not in json_answer(response), response.text
    email = f"{_prefix(tenant)}registered@example.test"
    variables = {
        "i": {"templateId": str(FIT_AND_PROPER.id), "recipientName": "R", "recipientEmail": email}
    }
    response = await client.post(
        "/graphql",
        json={"query": DRAFT, "extensions": _apq(DRAFT_ID), "variables": variables},
        headers=tenant.member.headers,
    )
    body = json_answer(response)
    assert "errors" not in body, body
    tenant.drafted[body["data"]["createDeclaration"]["declaration"]["id"]] = email


async def _audited(
    sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> tuple[chain.Verification, list[dict[str, Any]], str]:
    firm_id = tenant.member.firm_id
    async with tenant_transaction(sessions, firm_id, tenant.member.user_id) as session:
        verification = await chain.verify(session, firm_id)
        details = (
            await session.execute(
                select(AuditEntry.details)
                .where(AuditEntry.firm_id == firm_id, AuditEntry.action == "firm.updated")
                .order_by(AuditEntry.seq)
            )
        ).scalars()
        name = (await session.execute(select(Firm.name).where(Firm.id == firm_id))).scalar_one()
        return verification, list(details), name


async def _drafts(
    sessions: async_sessionmaker[AsyncSession], tenant: Tenant
) -> tuple[dict[str, str], list[str]]:
    """The firm's declarations (id -> recipient email) and the targets of its creation entries."""
    firm_id = tenant.member.firm_id
    async with tenant_transaction(sessions, firm_id, tenant.member.user_id) as session:
        rows = await session.execute(
            select(Declaration.id, Declaration.recipient_email).where(
                Declaration.firm_id == firm_id
            )
        )
        created = await session.execute(
            select(AuditEntry.target_id).where(
                AuditEntry.firm_id == firm_id, AuditEntry.action == "declaration.created"
            )
        )
        return {str(i): email for i, email in rows.all()}, list(created.scalars())


async def test_four_firms_over_two_pooled_connections_never_see_each_other(
    database: Database,
    members: Members,
    owner_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    seed = new_seed()
    rng = seeded(seed)
    settings = make_settings(database, tmp_path, db_pool_size=POOL, rate_limit_scale=UNLIMITED)
    async with serving(create_app(settings)) as app, http_client(app) as client:
        tenants = await _tenants(client, members)
        for tenant in tenants:
            await _register(client, tenant)
        soak = Soak(app, client, tenants)
        plan = [
            (rng.choices(KINDS, WEIGHTS)[0], rng.choice(tenants), rng.random() * 0.003)
            for _ in range(REQUESTS)
        ]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(kind: str, tenant: Tenant, delay: float, n: int) -> None:
            async with gate:
                await asyncio.sleep(delay)
                await soak.run(kind, tenant, seeded(seed + n))

        async with asyncio.timeout(sized(120, 900)):
            await asyncio.gather(*(one(*step, n) for n, step in enumerate(plan)))
        # Right after the traffic, on the same two connections: a transaction that forgot
        # its tenant, twice at once so that both pooled connections are checked.
        await asyncio.gather(soak.forgot_tenant(), soak.forgot_tenant())
        assert app.state.coverproof.engine.pool.size() == POOL
        assert app.state.coverproof.lane_pool.get_size() <= POOL
        assert app.state.coverproof.fast_path.lane >= soak.done["persisted_list"] > 0
        assert app.state.coverproof.fast_path.writes > 0  # some, at least: the lane's pool is 2

    assert sum(soak.done.values()) == REQUESTS, f"seed {seed}: {soak.done}"
    assert set(soak.done) == set(KINDS), f"seed {seed}: {soak.done}"
    assert {"firms", "declarations", "audit_log", "memberships", "sessions"} <= set(soak.tables)
    for tenant in tenants:
        verification, entries, name = await _audited(owner_sessions, tenant)
        assert verification.ok, (seed, verification)
        # Exactly the renames the API acknowledged are on the record, in the order applied;
        # nothing of a refused or half-failed document is.
        assert len(entries) == len(tenant.renamed_to), seed
        recorded = [entry["changes"]["name"]["to"] for entry in entries]
        assert sorted(recorded) == sorted(tenant.renamed_to), seed
        assert not set(recorded) & set(tenant.rolled_back), seed
        if recorded:
            assert name == recorded[-1], seed
        # Exactly the declarations it created, each with its one creation entry: none of
        # another firm's, none lost, wherever the write lane wrote them.
        rows, created = await _drafts(owner_sessions, tenant)
        assert rows == {**tenant.declarations, **tenant.drafted}, seed
        assert sorted(created) == sorted(rows), seed
