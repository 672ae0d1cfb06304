"""In-process measurements: the raw asyncpg floors (no HTTP, no GraphQL) and audit verification
of a 100,000-entry chain next to a bare hashlib chain over the same bytes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from xhtml2pdf import pisa

from app.audit import canonical, chain
from app.audit.signing import SigningKey
from app.auth.actor import Actor, ActorType, Role
from app.db import calls
from app.db.engine import create_engine, session_factory
from app.db.tenant import tenant_transaction
from app.evidence import document
from app.evidence.collect import collect
from app.evidence.render import _fonts, render_pdf, resource_policy
from app.evidence.schemas import PackCreate
from app.evidence.signature import pack_signer
from bench import floors
from bench.seed import Seeded

CONCURRENCY = 32
SELECT = (
    "select id, recipient_name, recipient_email, status, created_at from declarations "
    "order by created_at desc, id desc limit 50"
)
SET = "select set_config('app.firm_id', $1, true), set_config('app.actor_id', $2, true)"


async def _timed(work: Any, seconds: int) -> dict[str, Any]:
    done, stop = 0, time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        i = n
        while time.monotonic() < stop:
            await work(i)
            done, i = done + 1, i + CONCURRENCY

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    return {"ops": round(done / (time.monotonic() - started), 1)}


async def raw_read(pool: asyncpg.Pool, firms: list[str], seconds: int) -> dict[str, Any]:
    async def one(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(SET, firms[i % len(firms)], "")
            await conn.fetch(SELECT)

    return await _timed(one, seconds)


async def raw_write(pool: asyncpg.Pool, firms: list[str], seconds: int) -> dict[str, Any]:
    """The same insert and chained append createDeclaration does, with nothing else."""

    async def one(i: int) -> None:
        await floors.write(pool, firms[i % len(firms)])

    return await _timed(one, seconds)


def _peak_rss(stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        stop.wait(0.05)


CHAIN = "select prev_hash, canonical, hash from audit_log where firm_id = $1 order by seq"
CHAIN_PAGE = (
    "select seq, prev_hash, canonical, hash from audit_log "
    "where firm_id = $1 and seq >= $2 order by seq limit $3"
)


async def _streamed_floor(conn: asyncpg.Connection, firm_id: uuid.UUID) -> float:
    """The least any verification of a stored chain can do: stream the same bytes out of
    PostgreSQL (in pages by the chain's index, as chain.verify reads it, so memory stays flat)
    and hash them."""
    started, prev = time.monotonic(), canonical.GENESIS
    async for batch in calls.pages(conn, CHAIN_PAGE, (firm_id,), -(2**63)):
        for _, prev_hash, body, digest in batch:
            if prev_hash != prev or hashlib.sha256(prev_hash + body).digest() != digest:
                raise RuntimeError("the seeded chain does not verify")
            prev = digest
    return time.monotonic() - started


def _bare(data: list[tuple[bytes, bytes, bytes]]) -> float:
    started, prev = time.monotonic(), canonical.GENESIS
    for prev_hash, body, digest in data:
        if prev_hash != prev or hashlib.sha256(prev_hash + body).digest() != digest:
            raise RuntimeError("the seeded chain does not verify")
        prev = digest
    return time.monotonic() - started


async def verification(app_url: str, firm: str, rounds: int = 3) -> dict[str, Any]:
    """chain.verify over the whole chain (streamed), then the floors: a bare hashlib chain over
    the same bytes streamed from PostgreSQL, and over them held in memory; each the median of
    ``rounds`` interleaved runs (a single second-long run is at the mercy of the machine's
    drift); and the process's peak RSS growth while verifying, the first time."""
    engine = create_engine(app_url, pool_size=1)
    firm_id = uuid.UUID(firm)
    timings: dict[str, list[float]] = {"seconds": [], "streamed": [], "bare": []}
    try:
        conn = await asyncpg.connect(app_url)
        data: list[tuple[bytes, bytes, bytes]] = []
        for n in range(rounds):
            before = psutil.Process().memory_info().rss
            stop, peak = threading.Event(), [before]
            sampler = threading.Thread(target=_peak_rss, args=(stop, peak), daemon=True)
            sampler.start()
            started = time.monotonic()
            async with tenant_transaction(session_factory(engine), firm_id) as session:
                result = await chain.verify(session, firm_id)
            timings["seconds"].append(time.monotonic() - started)
            stop.set()
            sampler.join()
            if n == 0:
                growth = peak[0] - before
            async with conn.transaction():
                await conn.execute(SET, firm, "")
                timings["streamed"].append(await _streamed_floor(conn, firm_id))
                if not data:  # held only after the first verification, whose RSS is measured
                    rows = await conn.fetch(CHAIN, firm_id)
                    data = [(bytes(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]
            timings["bare"].append(_bare(data))
        await conn.close()
    finally:
        await engine.dispose()
    seconds, streamed, bare = (round(statistics.median(v), 3) for v in timings.values())
    return {
        "entries": result.entries_checked,
        "ok": result.ok,
        "seconds": seconds,
        "bare_seconds": bare,
        "streamed_floor_seconds": streamed,
        "rounds_seconds": [round(x, 3) for x in timings["seconds"]],
        "rounds_streamed_floor_seconds": [round(x, 3) for x in timings["streamed"]],
        "rss_growth_mb": round(growth / 2**20, 1),
    }


async def evidence_pack(app_url: str, seeded: Seeded) -> dict[str, Any]:
    """An evidence pack of 500 declarations rendered and signed as the app does it, next to a
    bare xhtml2pdf render of the same HTML (time, and the process's peak RSS growth)."""
    engine = create_engine(app_url, pool_size=1)
    firm_id, user_id = uuid.UUID(seeded.firms[3]), uuid.UUID(seeded.users[3])
    actor = Actor(ActorType.USER, user_id, firm_id, Role.OWNER)
    today = datetime.now(UTC).date()
    key = SigningKey(Ed25519PrivateKey.generate())
    try:
        async with tenant_transaction(session_factory(engine), firm_id, user_id) as session:
            ids = (
                (
                    await session.execute(
                        text("select id from declarations where recipient_name like 'Submitter %'")
                    )
                )
                .scalars()
                .all()
            )
            scope = {"from": today - timedelta(days=2), "to": today}
            data = PackCreate(title="Benchmark pack", declaration_ids=list(ids), **scope)
            pack = await collect(session, actor, uuid.uuid4(), data, key, 30)
    finally:
        await engine.dispose()

    def measured(work: Any) -> tuple[float, float]:
        before = psutil.Process().memory_info().rss
        stop, peak = threading.Event(), [before]
        sampler = threading.Thread(target=_peak_rss, args=(stop, peak), daemon=True)
        sampler.start()
        started = time.monotonic()
        work()
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
        return round(seconds, 2), round((peak[0] - before) / 2**20, 1)

    rendered: list[Any] = []
    # In a worker thread, as the app renders (the signing runs its own event loop).
    signer = pack_signer(key)
    pack_seconds, pack_rss = await asyncio.to_thread(
        measured, lambda: rendered.append(render_pdf(pack, signer))
    )
    font, mono, faces, _ = _fonts()
    html = document.build(pack, font, mono, faces)
    # What the app's render may read (the fonts), or the bare render would not embed them.
    policy = resource_policy()
    bare_seconds, bare_rss = measured(
        lambda: pisa.CreatePDF(html, dest=io.BytesIO(), encoding="utf-8", resource_policy=policy)
    )
    return {
        "declarations": len(pack.declarations),
        "pages": rendered[0].page_count,
        "seconds": pack_seconds,
        "rss_growth_mb": pack_rss,
        "bare_seconds": bare_seconds,
        "bare_rss_growth_mb": bare_rss,
    }


async def raw_floors(
    app_url: str, seeded: Seeded, seconds: int, names: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """The raw asyncpg floors named (``raw_read``, ``raw_write_spread``, ``raw_write_hot``), 32
    concurrent transactions on one pool, each after a 2 s warm-up as the HTTP loads have; run
    in the same rounds as the loads they are compared with, so the machine's drift cancels."""
    floors_by_name = {
        "raw_read": lambda pool, s: raw_read(pool, seeded.firms, s),
        "raw_write_spread": lambda pool, s: raw_write(pool, seeded.firms[2:], s),
        "raw_write_hot": lambda pool, s: raw_write(pool, seeded.firms[2:3], s),
    }
    pool = await asyncpg.create_pool(app_url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            await floors_by_name[name](pool, 2)
            measured = await floors_by_name[name](pool, seconds)
            results[name] = {**measured, "rps": measured["ops"]}
            print(f"  {'raw asyncpg, ' + name:<32} {measured['ops']:>9.1f} ops/s", flush=True)
    finally:
        await pool.close()
    return results


async def run(app_url: str, seeded: Seeded, seconds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print("audit verification of a 100,000-entry chain", flush=True)
    results["verify"] = await verification(app_url, seeded.chain_firm)
    print(f"  {results['verify']}", flush=True)
    print("evidence pack of 500 declarations", flush=True)
    results["pack"] = await evidence_pack(app_url, seeded)
    print(f"  {results['pack']}", flush=True)
    return results
