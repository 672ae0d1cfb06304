"""Faults: PostgreSQL backends terminated in the middle of mutations.

While members create counterparties, create declarations (persisted, so the fast path's write
lane writes them on its own pool) and rename their firms, a superuser connection keeps
terminating the app's backends (``pg_terminate_backend``), mostly while they are inside a
transaction. Every client still gets a well-formed JSON answer; afterwards no business row
exists without its audit entry nor an audit entry without its row, every change a client was
told had succeeded is there, each chain verifies, and the same app serves again without a
restart.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from app.audit import chain
from app.auth.actor import Role
from app.db.engine import create_engine, session_factory
from app.db.models import AuditEntry, Counterparty, Declaration, Firm
from app.db.tenant import tenant_transaction
from app.declarations.templates import load_builtins
from app.main import create_app
from app.partners.documents import document_id
from tests.conftest import Database, http_client, make_settings
from tests.factories import Member, Members
from tests.reliability.support import (
    UNLIMITED,
    error_codes,
    json_answer,
    new_seed,
    seeded,
    serving,
    sized,
)

KILLS = sized(30, 120)  # backends terminated inside a transaction
POOL = 4
WORKERS = 8
FIRMS = 2

CREATE = """mutation($i: CounterpartyCreateInput!) {
  createCounterparty(input: $i) { counterparty { id name } } }"""
RENAME = "mutation($n: String!) { updateFirm(input: {name: $n}) { firm { id name } } }"
FIRM = "{ firm { id name } }"
# A persisted page, which the fast path's read lane answers on a pool of its own.
PAGE = "query Page { declarations(first: 5) { edges { node { id } } } }"
APQ = {"persistedQuery": {"version": 1, "sha256Hash": document_id(PAGE)}}
# A persisted create, which the write lane answers on that pool.
DRAFT = (
    "mutation Draft($i: DeclarationCreateInput!) { createDeclaration(input: $i) "
    "{ declaration { id recipientName } } }"
)
DRAFT_APQ = {"persistedQuery": {"version": 1, "sha256Hash": document_id(DRAFT)}}
FIT = next(b for b in load_builtins() if b.key == "fit_and_proper")
# Backends of the app role in this database other than ours; those inside a transaction only,
# unless every one is asked for.
KILL = text(
    "select count(*) from (select pg_terminate_backend(pid) as killed from pg_stat_activity "
    "where usename = 'coverproof_app' and datname = current_database() "
    "and pid <> pg_backend_pid() and (:everyone or xact_start is not null)) k where killed"
)


@dataclass
class Ledger:
    member: Member
    created: set[str] = field(default_factory=set)  # counterparty ids acknowledged
    drafted: set[str] = field(default_factory=set)  # declaration ids acknowledged
    renamed_to: list[str] = field(default_factory=list)  # names acknowledged
    outcomes: Counter[str] = field(default_factory=Counter)


async def _mutate(
    client: httpx.AsyncClient, ledger: Ledger, rng: random.Random, draft: bool = False
) -> None:
    """One mutation (a persisted draft, if ``draft``); the answer must be JSON whatever
    happened to its backend."""
    draw = 0.0 if draft else rng.random()
    if draw < 0.3:
        name = f"Recipient {uuid.uuid4().hex}"
        variables = {
            "i": {"templateId": str(FIT.id), "recipientName": name, "recipientEmail": "r@e.test"}
        }
        response = await client.post(
            "/graphql",
            json={"extensions": DRAFT_APQ, "variables": variables},
            headers=ledger.member.headers,
        )
    elif draw < 0.7:
        name = f"Counterparty {uuid.uuid4().hex}"
        variables = {"i": {"name": name, "kind": "INTRODUCER"}}
        response = await client.post(
            "/graphql",
            json={"query": CREATE, "variables": variables},
            headers=ledger.member.headers,
        )
    else:
        name = f"Firm {uuid.uuid4().hex}"
        response = await client.post(
            "/graphql",
            json={"query": RENAME, "variables": {"n": name}},
            headers=ledger.member.headers,
        )
    body = json_answer(response)
    if response.status_code == 200 and "errors" not in body:
        if "createDeclaration" in body["data"]:
            declaration = body["data"]["createDeclaration"]["declaration"]
            assert declaration["recipientName"] == name, body
            ledger.drafted.add(declaration["id"])
        elif "createCounterparty" in body["data"]:
            counterparty = body["data"]["createCounterparty"]["counterparty"]
            assert counterparty["name"] == name, body
            ledger.created.add(counterparty["id"])
        else:
            assert body["data"]["updateFirm"]["firm"] == {
                "id": str(ledger.member.firm_id),
                "name": name,
            }
            ledger.renamed_to.append(name)
        ledger.outcomes["ok"] += 1
        return
    # A failure is clean: the masked internal error, no partial data, no stack trace.
    assert response.status_code in (200, 500), (response.status_code, body)
    assert error_codes(body) == ["INTERNAL_SERVER_ERROR"], body
    assert not body.get("data"), body
    assert "Traceback" not in response.text
    ledger.outcomes[f"{response.status_code} {error_codes(body)[0]}"] += 1


async def _killer(superuser: AsyncEngine, stop: asyncio.Event, rng: random.Random) -> int:
    """Terminate backends in a transaction until KILLS of them died; every tenth round, every
    backend (idle pooled ones too)."""
    killed, rounds = 0, 0
    async with superuser.connect() as conn:
        await conn.execute(text("set application_name = 'reliability-killer'"))
        while killed < KILLS:
            rounds += 1
            everyone = rounds % 10 == 0
            n = (await conn.execute(KILL, {"everyone": everyone})).scalar_one()
            await conn.commit()
            killed += 0 if everyone else n
            await asyncio.sleep(rng.uniform(0.005, 0.04))
        n = (await conn.execute(KILL, {"everyone": True})).scalar_one()
        await conn.commit()
    stop.set()
    return killed


async def _recovers(
    app: Starlette, client: httpx.AsyncClient, superuser: AsyncEngine, ledgers: list[Ledger]
) -> None:
    """Every pooled connection dies once more, idle. The first request to meet a dead one may
    fail (cleanly); that invalidates the whole pool, and the same app instance then serves
    every request. A read the lane meets a dead connection for never fails: it falls back."""
    for ledger in ledgers:  # each session registers its own (Apollo Client does, on first use)
        registered = await client.post(
            "/graphql", json={"query": PAGE, "extensions": APQ}, headers=ledger.member.headers
        )
        assert "errors" not in json_answer(registered), registered.text
    for ledger in ledgers * POOL:  # the lane's pool holds connections for the kill to find
        await client.post("/graphql", json={"extensions": APQ}, headers=ledger.member.headers)
    lane = app.state.coverproof.fast_path.lane
    async with superuser.connect() as conn:
        assert (await conn.execute(KILL, {"everyone": True})).scalar_one() >= 1
        await conn.commit()
    answers = []
    for ledger in ledgers * (2 * POOL):
        response = await client.post(
            "/graphql", json={"query": FIRM}, headers=ledger.member.headers
        )
        answers.append((ledger, json_answer(response)))
    first = answers[0][1]
    assert "errors" not in first or error_codes(first) == ["INTERNAL_SERVER_ERROR"], first
    for ledger, body in answers[1:]:
        assert "errors" not in body, body
        assert body["data"]["firm"]["id"] == str(ledger.member.firm_id)
    async with superuser.connect() as conn:  # the lane's connections die too
        assert (await conn.execute(KILL, {"everyone": True})).scalar_one() >= 1
        await conn.commit()
    for ledger in ledgers * (2 * POOL):
        response = await client.post(
            "/graphql", json={"extensions": APQ}, headers=ledger.member.headers
        )
        assert "errors" not in json_answer(response), response.text
    assert app.state.coverproof.fast_path.lane > lane  # and the lane serves again


async def _check_trail(owner_sessions: async_sessionmaker[AsyncSession], ledger: Ledger) -> None:
    """Rows and audit entries match one to one, acknowledged changes are there, the chain
    verifies."""
    firm_id = ledger.member.firm_id
    async with tenant_transaction(owner_sessions, firm_id, ledger.member.user_id) as s:
        verification = await chain.verify(s, firm_id)
        rows = (
            await s.execute(select(Counterparty.id).where(Counterparty.firm_id == firm_id))
        ).scalars()
        row_ids = {str(row) for row in rows}
        audited = (
            (
                await s.execute(
                    select(AuditEntry.target_id).where(
                        AuditEntry.firm_id == firm_id, AuditEntry.action == "counterparty.created"
                    )
                )
            )
            .scalars()
            .all()
        )
        renames = (
            (
                await s.execute(
                    select(AuditEntry.details)
                    .where(AuditEntry.firm_id == firm_id, AuditEntry.action == "firm.updated")
                    .order_by(AuditEntry.seq)
                )
            )
            .scalars()
            .all()
        )
        name = (await s.execute(select(Firm.name).where(Firm.id == firm_id))).scalar_one()
        drafts = (
            await s.execute(select(Declaration.id).where(Declaration.firm_id == firm_id))
        ).scalars()
        draft_ids = {str(row) for row in drafts}
        drafts_audited = (
            (
                await s.execute(
                    select(AuditEntry.target_id).where(
                        AuditEntry.firm_id == firm_id, AuditEntry.action == "declaration.created"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert verification.ok, verification
    assert len(drafts_audited) == len(set(drafts_audited))
    assert set(drafts_audited) == draft_ids  # the write lane's drafts too
    assert ledger.drafted <= draft_ids
    assert len(audited) == len(set(audited))  # one entry per counterparty
    assert set(audited) == row_ids  # no row without its entry, no entry without its row
    assert ledger.created <= row_ids  # every acknowledged creation is durable
    recorded = [d["changes"]["name"]["to"] for d in renames]
    assert set(ledger.renamed_to) <= set(recorded)
    assert name == (recorded[-1] if recorded else "Acme Advisers Ltd")


async def test_terminated_backends_leave_no_change_without_its_audit_entry(
    private_database: Database, tmp_path: Path
) -> None:
    seed = new_seed()
    rng = seeded(seed)
    db = private_database
    owner = create_engine(db.owner_url, pool_size=2)
    superuser = create_engine(db.superuser_url, pool_size=1)
    owner_sessions = session_factory(owner)
    settings = make_settings(db, tmp_path, db_pool_size=POOL, rate_limit_scale=UNLIMITED)
    stop = asyncio.Event()
    try:
        ledgers = [Ledger(await Members(owner_sessions).create(Role.OWNER)) for _ in range(FIRMS)]
        async with serving(create_app(settings)) as app, http_client(app) as client:
            for ledger in ledgers:  # registered once, the create is the write lane's to answer
                first = {
                    "templateId": str(FIT.id),
                    "recipientName": "First",
                    "recipientEmail": "f@e.test",
                }
                registered = await client.post(
                    "/graphql",
                    json={"query": DRAFT, "extensions": DRAFT_APQ, "variables": {"i": first}},
                    headers=ledger.member.headers,
                )
                body = json_answer(registered)
                ledger.drafted.add(body["data"]["createDeclaration"]["declaration"]["id"])

            async def worker(n: int) -> None:
                worker_rng = seeded(seed + n)
                while not stop.is_set():
                    await _mutate(client, worker_rng.choice(ledgers), worker_rng)

            started_at = time.monotonic()
            async with asyncio.timeout(sized(60, 300)):
                killed, *_ = await asyncio.gather(
                    _killer(superuser, stop, rng), *(worker(n) for n in range(WORKERS))
                )
            elapsed = time.monotonic() - started_at
            await _recovers(app, client, superuser, ledgers)
            for ledger in ledgers:
                ok = ledger.outcomes["ok"]
                await _mutate(client, ledger, rng)
                assert ledger.outcomes["ok"] == ok + 1, (seed, ledger.outcomes)
            fast_path = app.state.coverproof.fast_path
            # The kills may have met every lane write (each then fell back): tried, at least.
            assert fast_path.writes + fast_path.write_fallback > 0
            writes = fast_path.writes
            for ledger in ledgers:  # and the write lane writes again
                await _mutate(client, ledger, rng, draft=True)
            assert fast_path.writes == writes + len(ledgers), (seed, fast_path)
        outcomes = sum((ledger.outcomes for ledger in ledgers), Counter())
        print(f"seed {seed}: {killed} kills in {elapsed:.1f} s; outcomes {dict(outcomes)}")
        assert killed >= KILLS
        assert sum(v for k, v in outcomes.items() if k != "ok") > 0, outcomes  # kills did bite
        for ledger in ledgers:
            await _check_trail(owner_sessions, ledger)
    finally:
        await owner.dispose()
        await superuser.dispose()
